"""Shared fixtures: real-format IDX files built on the spot, and the real Fashion-MNIST."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrfind.setup import data

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array in the IDX format (big-endian header, then the raw values)."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, IDX_TYPE_CODES[np.dtype(dtype)], array.ndim])
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def learnable_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images whose class is a bright 7x7 block at one of ten places, in noise.

    A small network learns this in a few dozen steps, so sweeps over it have real structure:
    a flat start, a descent, and divergence at high rates.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count).astype(np.uint8)
    images = rng.integers(0, 60, size=(count, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        row, column = divmod(int(label), 5)
        top, left = 3 + row * 12, 1 + column * 5
        images[index, top : top + 7, left : left + 5] = 200
    return images, labels


def write_mnist_files(folder: Path, train: int = 600, test: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train, 0), ("test", test, 1)):
        images, labels = learnable_images(count, seed)
        images_name, labels_name = data.idx_filenames(split)
        write_idx(folder / f"{images_name}.gz", images)
        write_idx(folder / f"{labels_name}.gz", labels)
    return folder


def write_python(
    path: Path, body: str, imports: str = "import torch\nfrom torch import nn\n"
) -> Path:
    """A user factory file: the imports, then `body`. Returns the path for a spec."""
    path.write_text(f"{imports}\n{body}")
    return path


def run_training_script(folder: Path, script: str) -> tuple[dict[str, Any], str]:
    """Run `script` (a test module's SCRIPT, its `{tests}` filled with this folder) as a
    process in `folder` on one torch thread, the repository importable; return the JSON
    its last stdout line prints and its stderr. Fails the test with the stderr when the
    script does."""
    path = folder / "train.py"
    path.write_text(textwrap.dedent(script.format(tests=str(Path(__file__).parent))))
    completed = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": _with_repository()},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


def _with_repository() -> str:
    """PYTHONPATH with the repository first, so that a script importing a test module finds
    the `tests` package that module imports from."""
    root = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))


@pytest.fixture
def isolated_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No dataset anywhere: empty cache, no $LRFIND_DATA_DIR, no system folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LRFIND_DATA_DIR", raising=False)
    for name, dataset in list(data.BUILTIN_DATASETS.items()):
        monkeypatch.setitem(
            data.BUILTIN_DATASETS,
            name,
            data.BuiltinDataset(
                name=dataset.name,
                torchvision_class=dataset.torchvision_class,
                num_classes=dataset.num_classes,
                system_dirs=(str(tmp_path / "system" / name),),
                apt_package=dataset.apt_package,
            ),
        )
    return tmp_path


@pytest.fixture
def mnist_dir(isolated_data: Path) -> Path:
    """A small learnable dataset in real MNIST IDX format (MNIST has no offline source)."""
    return write_mnist_files(isolated_data / "mnist-files")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The real Fashion-MNIST files. Missing them fails under CI and skips elsewhere."""
    if (REAL_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return REAL_FASHION_MNIST
    message = (
        f"real Fashion-MNIST not found in {REAL_FASHION_MNIST}; "
        "install it with `apt-get install dataset-fashion-mnist`"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
