"""Datasets: the built-in Fashion-MNIST and MNIST.

    lrfind run --dataset fashion-mnist --data-dir ~/data

Built-in datasets are read from gzipped or raw IDX files, found in order in --data-dir,
$LRFIND_DATA_DIR, the user cache (~/.cache/lrfind) and system folders such as Debian's
/usr/share/datasets/fashion-mnist. Only when none holds them, and downloading is allowed,
torchvision downloads them (into a temporary folder, moved into the cache when complete).
They are loaded once into memory as uint8 tensors and batched without per-sample work.
Every other dataset is in lrfind.setup.userdata.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import stat
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrfind.errors import ConfigError, DataError
from lrfind.settings.paths import os_refusal

IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    torchvision_class: str  # the class in torchvision.datasets that can download it
    num_classes: int
    system_dirs: tuple[str, ...]  # where distribution packages install the files
    apt_package: str | None


BUILTIN_DATASETS = {
    "fashion-mnist": BuiltinDataset(
        name="fashion-mnist",
        torchvision_class="FashionMNIST",
        num_classes=10,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist",
    ),
    "mnist": BuiltinDataset(
        name="mnist",
        torchvision_class="MNIST",
        num_classes=10,
        system_dirs=("/usr/share/datasets/mnist",),
        apt_package=None,
    ),
}

SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


def idx_filenames(split: str) -> tuple[str, str]:
    prefix = SPLIT_PREFIXES[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


# ---------------------------------------------------------------------------------------------
# IDX files


def read_idx(path: Path, prefetched: FilePrefetch | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or raw, told apart by content), checking every length.
    Its bytes come from `prefetched` when that read them."""
    path = Path(path)
    raw = prefetched.contents(path) if prefetched is not None else None
    return parse_idx(raw if raw is not None else idx_file_bytes(path), path)


def idx_file_bytes(path: Path) -> bytes:
    """An IDX file's bytes, decompressed when it is gzip data."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}.") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(
                f"{path} is a damaged or truncated gzip file ({error}). Delete it and fetch "
                "the dataset again."
            ) from None
    elif path.suffix == ".gz":
        raise DataError(
            f"{path} is named .gz but is not gzip data. Delete it and fetch the dataset again, "
            "or store it uncompressed without the .gz suffix."
        )
    return raw


class FilePrefetch:
    """IDX files read and decompressed in a background thread, for a caller with other work
    to do first: reading and zlib release the GIL, so this runs beside imports (`lrfind run`
    checks the optimizer meanwhile, which imports torch._dynamo). A file that
    fails to read is left out, and `read_idx` then reads it itself and reports the error."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._contents: dict[Path, bytes] = {}
        self._thread = threading.Thread(target=self._read, args=(list(paths),), daemon=True)
        self._thread.start()

    def _read(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                self._contents[path] = idx_file_bytes(path)
            except Exception:
                return

    def contents(self, path: Path) -> bytes | None:
        """The bytes of `path` (once: they are handed over), after the thread is done."""
        self._thread.join()
        return self._contents.pop(path, None)


def prefetch_builtin(name: str, data_dir: Path | None, split: str = "train") -> FilePrefetch | None:
    """Start reading a built-in split's local files, or None where there are none."""
    found = locate(BUILTIN_DATASETS[name], data_dir, split) if name in BUILTIN_DATASETS else None
    return FilePrefetch(found) if found is not None else None


def parse_idx(raw: bytes, path: Path) -> np.ndarray:
    if len(raw) < 4:
        raise DataError(
            f"{path} is {'empty' if not raw else 'too short'} ({len(raw)} bytes), not an IDX "
            "file. Delete it and fetch the dataset again."
        )
    zero1, zero2, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path} has a wrong magic number ({raw[:4].hex()}); it is not an IDX file. "
            "Delete it and fetch the dataset again."
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{path} is truncated inside its header. Fetch the dataset again.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(raw) - header_end
    if found != expected:
        state = "truncated" if found < expected else "longer than its header says"
        raise DataError(
            f"{path} is {state}: its header promises {shape} values ({expected} bytes) but "
            f"{found} bytes follow. Delete it and fetch the dataset again."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Finding files


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lrfind"


def search_roots(dataset: BuiltinDataset, data_dir: Path | None) -> list[Path]:
    """Folders searched, in order: --data-dir, $LRFIND_DATA_DIR, the cache, system folders."""
    roots = []
    if data_dir is not None:
        roots.append(_folder_or_absent(Path(data_dir).expanduser(), "--data-dir"))
    from_environment = os.environ.get("LRFIND_DATA_DIR")
    if from_environment:
        roots.append(_folder_or_absent(Path(from_environment).expanduser(), "LRFIND_DATA_DIR"))
    roots.append(cache_dir())
    roots.extend(Path(folder) for folder in dataset.system_dirs)
    return roots


def _folder_or_absent(root: Path, what: str) -> Path:
    """A folder given to search (or to download into when it does not exist yet); a file, or
    a path the OS refuses, is refused by `what` gave it."""
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        return root
    except OSError as error:
        raise ConfigError(os_refusal(error, what, root)) from None
    if not stat.S_ISDIR(mode):
        raise ConfigError(
            f"{what} {root} is a file, not a folder. Pass the folder that holds the dataset's "
            f"IDX files (for a file in it, its folder: {what} {root.parent})."
        )
    return root


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def locate(
    dataset: BuiltinDataset, data_dir: Path | None, split: str = "train"
) -> tuple[Path, Path] | None:
    """The (images, labels) files of a split, or None. Each root is tried as the folder
    itself, `<root>/<name>` and torchvision's `<root>/<Class>/raw`."""
    images_name, labels_name = idx_filenames(split)
    for root in search_roots(dataset, data_dir):
        for folder in (root, root / dataset.name, root / dataset.torchvision_class / "raw"):
            images = _find_file(folder, images_name)
            labels = _find_file(folder, labels_name)
            if images is not None and labels is not None:
                return images, labels
    return None


def download(dataset: BuiltinDataset, target: Path) -> None:
    """Download through torchvision into a temporary folder, then move the files into
    `target/<name>`, so an interrupted download never leaves half a file where we look."""
    import torchvision.datasets

    target = Path(target) / dataset.name
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset_class = getattr(torchvision.datasets, dataset.torchvision_class)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as scratch:
        for train in (True, False):
            dataset_class(root=scratch, train=train, download=True)
        raw = Path(scratch) / dataset.torchvision_class / "raw"
        target.mkdir(exist_ok=True)
        for split in SPLIT_PREFIXES:
            for name in idx_filenames(split):
                source = raw / f"{name}.gz"
                if not source.is_file():
                    source = raw / name
                shutil.move(str(source), str(target / source.name))


def _missing_message(dataset: BuiltinDataset, data_dir: Path | None, reason: str) -> str:
    images, labels = idx_filenames("train")
    searched = ", ".join(str(root) for root in search_roots(dataset, data_dir))
    ways = [
        f"put {images}.gz and {labels}.gz (or the uncompressed files) in a folder and pass "
        "--data-dir FOLDER or set LRFIND_DATA_DIR",
    ]
    if dataset.apt_package:
        ways.append(
            f"on Debian/Ubuntu, `apt-get install {dataset.apt_package}` (installs into "
            f"{dataset.system_dirs[0]})"
        )
    ways.append(f"when online, pass --download to let torchvision fetch it into {cache_dir()}")
    numbered = "; ".join(f"({number}) {way}" for number, way in enumerate(ways, 1))
    return f"{dataset.name} {reason}. Searched: {searched}. To get it: {numbered}."


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class ImageData:
    """A whole split in memory: uint8 images (N, C, H, W), int64 labels."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: float  # pixel mean on the 0..255 scale, used to normalise each batch
    std: float
    source: str  # where the files were read from

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, channels, height, width = self.images.shape
        return int(channels), int(height), int(width)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _find_or_download(
    dataset: BuiltinDataset, data_dir: Path | None, allow_download: bool, split: str
) -> tuple[Path, Path]:
    """The split's files on disk, downloaded first when nowhere and allowed."""
    found = locate(dataset, data_dir, split)
    if found is None:
        if not allow_download:
            raise DataError(
                _missing_message(dataset, data_dir, "was not found and --no-download is set")
            )
        try:
            download(dataset, Path(data_dir) if data_dir is not None else cache_dir())
        except Exception as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise DataError(
                _missing_message(
                    dataset,
                    data_dir,
                    f"was not found locally and downloading failed "
                    f"({type(error).__name__}: {first_line})",
                )
            ) from None
        found = locate(dataset, data_dir, split)
        if found is None:
            raise DataError(_missing_message(dataset, data_dir, "was downloaded but not found"))
    return found


def load_builtin(
    name: str,
    data_dir: Path | None = None,
    allow_download: bool = True,
    split: str = "train",
    prefetched: FilePrefetch | None = None,
) -> ImageData:
    """A split of a built-in dataset in memory, every file checked against the others
    (`prefetched`: what `prefetch_builtin` started reading)."""
    dataset = BUILTIN_DATASETS[name]
    images_path, labels_path = _find_or_download(dataset, data_dir, allow_download, split)
    images = read_idx(images_path, prefetched)
    labels = read_idx(labels_path, prefetched)
    if images.ndim != 3:
        raise DataError(
            f"{images_path} holds an array of shape {images.shape}; image files must be "
            "(count, height, width). Is it a labels file under an images name?"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds an array of shape {labels.shape}; label files must be "
            "(count,). Is it an images file under a labels name?"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} "
            "labels; they must come from the same split. Fetch the dataset again."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= dataset.num_classes):
        raise DataError(
            f"{labels_path} has labels outside 0..{dataset.num_classes - 1} "
            f"(found {labels.min()}..{labels.max()}). Fetch the dataset again."
        )
    pixels = torch.from_numpy(images.astype(np.uint8, copy=True))
    mean, std = pixel_statistics(images, pixels)
    return ImageData(
        name=name,
        images=pixels.unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=dataset.num_classes,
        mean=mean,
        std=std or 1.0,
        source=str(images_path.parent),
    )


def pixel_statistics(images: np.ndarray, pixels: torch.Tensor) -> tuple[float, float]:
    """The mean and (population) standard deviation of every value in `images`; `pixels` is
    the same values as a uint8 tensor. uint8 files, every built-in one, are counted by value:
    the sums are exact integers, so the mean is numpy's float64 mean to the bit and the
    variance is the exact one, correctly rounded (numpy's float64 pass gives the same deviation
    within an ulp, but holds the whole split as doubles; docs/speed.md)."""
    if images.dtype != np.uint8 or images.size == 0:
        return float(images.mean(dtype=np.float64)), float(images.std(dtype=np.float64))
    counts = torch.bincount(pixels.reshape(-1), minlength=256).tolist()
    total = sum(counts)
    values = sum(value * count for value, count in enumerate(counts))
    squares = sum(value * value * count for value, count in enumerate(counts))
    variance = Fraction(total * squares - values * values, total * total)
    return values / total, math.sqrt(variance)


class TensorBatches:
    """Shuffled mini-batches from in-memory uint8 images, normalised one batch at a time.

    Every pass is a new permutation from a seeded generator, so a sweep is reproducible.
    Incomplete last batches are dropped: every recorded loss averages the same batch size.
    """

    def __init__(self, data: ImageData, batch_size: int, seed: int, device: torch.device):
        if batch_size > len(data):
            raise DataError(
                f"batch_size {batch_size} is larger than the dataset ({len(data)} samples). "
                f"Use --batch-size {len(data)} or smaller."
            )
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size = batch_size
        self.mean = data.mean
        self.std = data.std
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.labels), generator=self.generator)
        order = order.to(self.images.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.normalize(self.images[index]), self.labels[index]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels to zero-mean, unit-variance floats (dataset statistics)."""
        return images.float().sub_(self.mean).div_(self.std)
