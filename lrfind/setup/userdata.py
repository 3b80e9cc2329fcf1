"""Datasets that are not built in: user factories, torchvision datasets by name and image
folders, map-style or iterable, with their classes counted and their held-out samples.

    lrfind run --dataset my_data.py:train_set --model my_models.py:build
    lrfind run --dataset torchvision:CIFAR10 --data-dir ~/data --model torchvision:resnet18
    lrfind run --dataset folder:photos/ --model cnn

Every one goes through a DataLoader: samples get tensors for leaves (lrfind.setup.samples),
the first ones are checked for one shape, and the classes are counted by the rules of
docs/models-and-data.md ("Datasets of your own").
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lrfind.errors import DataError, SpecError, noted
from lrfind.setup.data import BUILTIN_DATASETS, cache_dir
from lrfind.setup.factories import (
    TORCHVISION_PREFIX,
    call_factory,
    is_factory_spec,
    load_factory,
)
from lrfind.setup.samples import Collate, SampleShapes, as_tensors, inputs_part, target_part

FOLDER_PREFIX = "folder:"
# Samples read at most to count classes from their labels or to compare image sizes: all of
# them up to this many (so that a dataset written in Python is scanned quickly), else this many,
# evenly spaced from the first to the last.
SCAN_LIMIT = 10_000
# The first samples whose shapes are compared before the sweep, whatever else is read.
SHAPE_CHECKED = 8


@dataclass(frozen=True)
class UserData:
    """A dataset that is not built in, with what lrfind read from its first samples."""

    spec: str
    dataset: Any  # map-style (__len__ and __getitem__) or a torch IterableDataset
    source: str  # where it comes from, in words
    input_shape: tuple[int, ...]  # of one sample's inputs; () when they are a mapping
    target_shape: tuple[int, ...] | None  # of one sample's targets; None when it has none
    num_classes: int | None
    num_classes_from: str | None  # where the class count came from, in words
    collate: Callable[[list[Any]], Any]  # a list of samples to a batch, as the loader gives it

    @property
    def iterable(self) -> bool:
        """Read in order, without a length: no shuffling, no steps per epoch."""
        return isinstance(self.dataset, torch.utils.data.IterableDataset)


def load_user_dataset(
    spec: str,
    *,
    data_dir: Path | None = None,
    allow_download: bool = True,
    num_classes: int | None = None,
    classification: bool = True,
) -> UserData:
    """A factory, `torchvision:<Class>` or `folder:PATH` dataset, its first samples checked
    and its classes counted. `num_classes` (--num-classes) overrides what the data says;
    labels are read from the samples only for a `classification` loss (class indices)."""
    if spec.startswith(TORCHVISION_PREFIX):
        dataset = load_torchvision(spec, data_dir, allow_download)
        source = f"torchvision.datasets in {torchvision_root(data_dir)}"
    elif spec.startswith(FOLDER_PREFIX):
        dataset = load_image_folder(spec)
        source = str(dataset.root)
    else:
        dataset = _from_factory(spec)
        source = spec
    return describe_dataset(spec, dataset, source, num_classes, classification)


def _from_factory(spec: str) -> Any:
    dataset = call_factory(load_factory(spec, "dataset"), spec, "dataset")
    map_style = hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    if isinstance(dataset, str | bytes | Mapping) or not (
        isinstance(dataset, torch.utils.data.Dataset) or map_style
    ):
        raise SpecError(
            f"dataset factory {spec!r} returned a {type(dataset).__name__}, not a "
            "torch.utils.data.Dataset. Return a map-style Dataset (with __len__ and "
            "__getitem__) or an IterableDataset, whose items are (input, target) pairs or "
            "mappings (with a `labels` key for the targets)."
        )
    return dataset


def describe_dataset(
    spec: str, dataset: Any, source: str, num_classes: int | None, classification: bool
) -> UserData:
    """Check the first samples (their form, and that they share one shape) and count the
    classes: --num-classes, else the dataset's attributes, else a TensorDataset's label
    tensor, else (for a classification loss) the labels of up to SCAN_LIMIT samples."""
    size = dataset_size(dataset, spec)
    first = list(_samples(dataset, spec, size, SHAPE_CHECKED, spread=False))
    if not first:
        raise SpecError(f"dataset {spec!r} is empty: it has no samples to sweep on.")
    sample = first[0][1]
    if not (isinstance(sample, Mapping) or (isinstance(sample, tuple | list) and len(sample) >= 2)):
        raise SpecError(
            f"dataset {spec!r}: items must be (input, target) pairs, longer tuples or mappings "
            f"(with a `labels` key for the targets); item 0 is a {type(sample).__name__}."
        )
    own_collate = callable(getattr(dataset, "collate_fn", None))
    shapes = None if own_collate else SampleShapes(spec, first[0])
    for indexed in first[1:]:
        if shapes is not None:
            shapes.check(indexed)
    count: int | None = num_classes
    origin: str | None = "--num-classes"
    if count is None:
        count, origin = _classes_from_attributes(dataset)
        if count is None and classification:
            count, origin = _classes_from_labels(dataset, spec, size, shapes)
    inputs, target = inputs_part(sample), target_part(sample)
    return UserData(
        spec=spec,
        dataset=dataset,
        source=source,
        input_shape=tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else (),
        target_shape=tuple(target.shape) if isinstance(target, torch.Tensor) else None,
        num_classes=count,
        num_classes_from=origin,
        collate=Collate(dataset, spec),
    )


def dataset_size(dataset: Any, spec: str) -> int | None:
    """The number of samples of a map-style dataset; None for an iterable one."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return None
    try:
        with noted(f"while lrfind asked dataset {spec!r} for its length"):
            return len(dataset)
    except TypeError:
        raise SpecError(
            f"dataset {spec!r} has no length. Return a map-style Dataset (with __len__ and "
            "__getitem__), or a torch.utils.data.IterableDataset, which lrfind reads in order."
        ) from None


def read_sample(dataset: Any, index: int, spec: str) -> Any:
    """Item `index` of a map-style dataset, as it gives it; an error in its code carries a
    note naming the item."""
    with noted(f"while reading item {index} of dataset {spec!r}"):
        return dataset[index]


def _samples(
    dataset: Any, spec: str, size: int | None, count: int, *, spread: bool
) -> Iterator[tuple[int, Any]]:
    """(index, sample) pairs with tensors for leaves (`as_tensors`): of a map-style dataset
    the first `count`, or with `spread` all of them up to `count` and else `count` evenly
    spaced; of an iterable dataset the first `count` items."""
    if size is None:
        for index, item in _raw_items(dataset, spec, count):
            yield index, as_tensors(item)
        return
    indices = spread_indices(size, count) if spread else range(min(size, count))
    for index in indices:
        yield index, as_tensors(read_sample(dataset, index, spec))


_END = object()


def spread_indices(size: int, count: int) -> list[int]:
    """All of 0..size-1 when `count` covers them, else `count` of them evenly spaced, the
    first and the last included."""
    if size <= count:
        return list(range(size))
    return sorted({round(step * (size - 1) / (count - 1)) for step in range(count)})


# ---------------------------------------------------------------------------------------------
# Class counts


def _dataset_parts(dataset: Any) -> list[Any]:
    """The dataset and, through Subset and ConcatDataset, the datasets it is made of."""
    parts = [dataset]
    if isinstance(dataset, torch.utils.data.Subset):
        parts += _dataset_parts(dataset.dataset)
    elif isinstance(dataset, torch.utils.data.ConcatDataset):
        for part in dataset.datasets:
            parts += _dataset_parts(part)
    return parts


def _classes_from_attributes(dataset: Any) -> tuple[int | None, str | None]:
    """From torchvision's conventions (`classes`, `class_to_idx`, `num_classes`, integer
    `targets`), then a TensorDataset's integer label tensor (its second), on the dataset or
    the datasets a Subset or ConcatDataset is made of (the largest count)."""
    found: list[tuple[int, str]] = []
    for part in _dataset_parts(dataset):
        counted = _attribute_count(part)
        if counted is not None:
            found.append(counted)
    if not found:
        return None, None
    return max(found)


def _attribute_count(dataset: Any) -> tuple[int, str] | None:
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, Sized) and not isinstance(classes, str) and len(classes):
        return len(classes), "the dataset's `classes` attribute"
    class_to_idx = getattr(dataset, "class_to_idx", None)
    if isinstance(class_to_idx, Mapping) and class_to_idx:
        return len(class_to_idx), "the dataset's `class_to_idx` attribute"
    num_classes = getattr(dataset, "num_classes", None)
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes > 0:
        return num_classes, "the dataset's `num_classes` attribute"
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        count = _index_count(targets)
        if count is not None:
            return count, "the dataset's `targets` attribute"
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) >= 2:
        count = _index_count(dataset.tensors[1])
        if count is not None:
            return count, f"the label tensor of the TensorDataset ({len(dataset)} labels)"
    return None


def _index_count(labels: Any) -> int | None:
    """max + 1 of a one-dimensional sequence of non-negative integer labels, else None."""
    try:
        values = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        return None
    if values.ndim != 1 or not len(values) or values.dtype.is_floating_point:
        return None
    if values.dtype == torch.bool or values.is_complex() or int(values.min()) < 0:
        return None
    return int(values.max()) + 1


def _classes_from_labels(
    dataset: Any, spec: str, size: int | None, shapes: SampleShapes | None
) -> tuple[int | None, str | None]:
    """max + 1 of the labels of up to SCAN_LIMIT samples (all of them when there are no more;
    of an iterable dataset its first items), when every one is a single integer class index.
    The samples read are checked for ragged shapes on the way, at no extra cost."""
    highest, read = -1, 0
    for indexed in _samples(dataset, spec, size, SCAN_LIMIT, spread=True):
        if shapes is not None:
            shapes.check(indexed)
        target = target_part(indexed[1])
        if not isinstance(target, torch.Tensor) or target.numel() != 1 or target.ndim > 1:
            return None, None
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            return None, None  # not class indices: the loss check says what fits
        highest, read = max(highest, int(target)), read + 1
    if highest < 0:
        return None, None
    if size is None:
        scope = f"the first {read} items" if read == SCAN_LIMIT else f"all {read} items"
    else:
        scope = (
            f"all {read} samples" if read == size else f"{read} of {size} samples, evenly spaced"
        )
    return highest + 1, f"the labels of {scope} (the highest label + 1)"


# ---------------------------------------------------------------------------------------------
# Held-out samples and loaders


class WithoutFirst(torch.utils.data.IterableDataset[Any]):
    """An iterable dataset without its first `count` items (held out from training)."""

    def __init__(self, dataset: Any, count: int) -> None:
        self.dataset = dataset
        self.count = count

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.dataset), self.count, None)


def hold_out(data: UserData, count: int) -> tuple[UserData, list[Any]]:
    """The data without `count` held-out samples, and those samples as the dataset gives them:
    the last `count` of a map-style dataset, the first `count` items of an iterable one (whose
    end is unknown). Training never sees them (validation batches for a sweep, the test set
    for `lrfind train`)."""
    if data.iterable:
        held = [sample for _, sample in _raw_items(data.dataset, data.spec, count)]
        return dataclasses.replace(data, dataset=WithoutFirst(data.dataset, count)), held
    total = len(data.dataset)
    kept = torch.utils.data.Subset(data.dataset, range(total - count))
    held = [read_sample(data.dataset, index, data.spec) for index in range(total - count, total)]
    return dataclasses.replace(data, dataset=kept), held


def first_items(data: UserData, count: int) -> list[Any]:
    """The first `count` samples (fewer if it has fewer), as the dataset gives them."""
    if data.iterable:
        return [sample for _, sample in _raw_items(data.dataset, data.spec, count)]
    size = len(data.dataset)
    return [read_sample(data.dataset, index, data.spec) for index in range(min(count, size))]


def _raw_items(dataset: Any, spec: str, count: int) -> Iterator[tuple[int, Any]]:
    iterator = iter(dataset)
    for index in range(count):
        with noted(f"while reading item {index} of dataset {spec!r}"):
            item = next(iterator, _END)
        if item is _END:
            return
        yield index, item


def user_loader(data: UserData, batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    """Batches of `batch_size`, the incomplete last one dropped: of a map-style dataset in the
    seed's shuffled order, of an iterable dataset in its own order (the seed cannot change it)."""
    if data.iterable:
        return torch.utils.data.DataLoader(
            data.dataset, batch_size=batch_size, drop_last=True, collate_fn=data.collate
        )
    if batch_size > len(data.dataset):
        raise DataError(
            f"batch_size {batch_size} is larger than the dataset {data.spec!r} "
            f"({len(data.dataset)} samples). Use --batch-size {len(data.dataset)} or smaller."
        )
    return torch.utils.data.DataLoader(
        data.dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=data.collate,
    )


# ---------------------------------------------------------------------------------------------
# torchvision datasets by name, image folders


def torchvision_root(data_dir: Path | None) -> Path:
    """Where torchvision datasets live: --data-dir, else $LRFIND_DATA_DIR, else the cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_environment = os.environ.get("LRFIND_DATA_DIR")
    return Path(from_environment).expanduser() if from_environment else cache_dir()


def torchvision_dataset_names() -> list[str]:
    import torchvision.datasets

    return sorted(
        name
        for name in torchvision.datasets.__all__
        if inspect.isclass(getattr(torchvision.datasets, name, None))
        and issubclass(getattr(torchvision.datasets, name), torch.utils.data.Dataset)
    )


def torchvision_dataset_class(spec: str) -> Any:
    """The class `torchvision:<Class>` names, or SpecError with the close names."""
    import torchvision.datasets

    name = spec[len(TORCHVISION_PREFIX) :]
    available = torchvision_dataset_names()
    if name not in available:
        by_lower = {known.lower(): known for known in available}
        close = [by_lower[match] for match in difflib.get_close_matches(name.lower(), by_lower)]
        hint = f" Did you mean {', '.join(TORCHVISION_PREFIX + known for known in close)}?"
        raise SpecError(
            f"torchvision has no dataset {name!r}.{hint if close else ''} The names are the "
            f"classes of torchvision.datasets, e.g. {TORCHVISION_PREFIX}CIFAR10, "
            f"{TORCHVISION_PREFIX}FashionMNIST; all of them: {', '.join(available)}."
        )
    return getattr(torchvision.datasets, name)


def load_torchvision(
    spec: str, data_dir: Path | None, allow_download: bool, train: bool = True
) -> Any:
    """`torchvision:<Class>` built with the arguments it takes among `root` (torchvision_root),
    `train` or `split` ('train' or 'test'), `download` and no transform. Read from disk first;
    downloaded only when that fails and downloading is allowed. None when `train` is False
    and the class has no test split."""
    dataset_class = torchvision_dataset_class(spec)
    parameters = inspect.signature(dataset_class).parameters
    root = torchvision_root(data_dir)
    arguments: dict[str, Any] = {"root": str(root)} if "root" in parameters else {}
    if "train" in parameters:
        arguments["train"] = train
    elif "split" in parameters:
        arguments["split"] = "train" if train else "test"
    elif not train:
        return None
    split = "train" if train else "test"
    try:
        return _built(dataset_class, arguments, parameters, download=False)
    except Exception as error:
        missing = _error_text(error)
    can_download = "download" in parameters
    if not (allow_download and can_download):
        reason = "--no-download is set" if can_download else "torchvision cannot download it"
        raise DataError(_torchvision_missing(spec, root, split, missing, reason, can_download))
    try:
        return _built(dataset_class, arguments, parameters, download=True)
    except Exception as error:
        reason = f"downloading it failed ({_error_text(error)})"
        raise DataError(_torchvision_missing(spec, root, split, missing, reason, False)) from None


def _built(
    dataset_class: Any, arguments: dict[str, Any], parameters: Mapping[str, Any], download: bool
) -> Any:
    extra = {"download": download} if "download" in parameters else {}
    with torch.random.fork_rng(devices=[]):  # some draw samples at random; leave no trace
        return dataset_class(**arguments, **extra)


def _error_text(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else '(no message)'}"


def _torchvision_missing(
    spec: str, root: Path, split: str, found: str, reason: str, offer_download: bool
) -> str:
    name = spec[len(TORCHVISION_PREFIX) :]
    layout = ""
    if torchvision_dataset_class(spec).__module__.endswith(".mnist"):
        layout = f" (for {name}: the uncompressed IDX files in FOLDER/{name}/raw/)"
    ways = [
        f"put its files, laid out as torchvision's {name} expects{layout}, in a folder and pass "
        "--data-dir FOLDER (or set LRFIND_DATA_DIR)",
    ]
    if offer_download:
        ways.insert(0, f"when online, pass --download and torchvision fetches it into {root}")
    numbered = "; ".join(f"({number}) {way}" for number, way in enumerate(ways, 1))
    return (
        f"{spec} ({split} split) was not found in {root} ({found}), and {reason}. "
        f"To get it: {numbered}."
    )


def _folder_path(spec: str) -> Path:
    path = Path(spec[len(FOLDER_PREFIX) :]).expanduser()
    if not path.is_dir():
        raise SpecError(
            f"dataset {spec!r}: {path} is not a folder. Give folder:PATH where PATH holds one "
            "subfolder of images per class (PATH/cat/1.png, PATH/dog/2.png, ...)."
        )
    return path


def load_image_folder(spec: str) -> Any:
    """`folder:PATH` through torchvision's ImageFolder (one subfolder per class, images read
    as RGB), its images checked to share one size."""
    import torchvision.datasets

    path = _folder_path(spec)
    try:
        dataset = torchvision.datasets.ImageFolder(str(path))
    except OSError as error:
        raise DataError(
            f"dataset {spec!r}: {error} An image folder holds one subfolder per class with its "
            f"images: {path}/cat/1.png, {path}/dog/2.png, ..."
        ) from None
    _check_image_sizes([file for file, _ in dataset.samples], spec)
    return dataset


def _check_image_sizes(files: list[str], spec: str) -> None:
    """Every image of a folder (up to SCAN_LIMIT, evenly spaced) has the size of the first:
    only image headers are read."""
    from PIL import Image

    first: tuple[int, str, tuple[int, int]] | None = None
    for index in spread_indices(len(files), SCAN_LIMIT):
        try:
            with Image.open(files[index]) as image:
                size = image.size
        except OSError as error:
            raise DataError(
                f"dataset {spec!r}: image {index} ({files[index]}) cannot be read ({error}). "
                "Remove or replace it."
            ) from None
        if first is None:
            first = (index, files[index], size)
        elif size != first[2]:
            raise DataError(
                f"dataset {spec!r}: image {index} ({files[index]}) is {size[0]}x{size[1]} pixels "
                f"but image {first[0]} ({first[1]}) is {first[2][0]}x{first[2][1]}; images of "
                "different sizes cannot be stacked into one batch. Resize them all to one size "
                "first (e.g. Pillow's Image.resize, or ImageMagick's `mogrify -resize 64x64!`), "
                "or use a dataset factory (file.py:fn) that applies torchvision's Resize."
            )


def check_dataset_spec(spec: str) -> None:
    """Resolve a dataset spec without loading it, so a bad one fails first."""
    if spec in BUILTIN_DATASETS:
        return
    if spec.startswith(TORCHVISION_PREFIX):
        torchvision_dataset_class(spec)
    elif spec.startswith(FOLDER_PREFIX):
        _folder_path(spec)
    elif not is_factory_spec(spec):
        raise SpecError(
            f"unknown dataset {spec!r}. Built-in datasets: {', '.join(BUILTIN_DATASETS)}; "
            f"also {TORCHVISION_PREFIX}<Class> (a torchvision dataset, e.g. "
            f"{TORCHVISION_PREFIX}CIFAR10), {FOLDER_PREFIX}PATH (an image folder, one subfolder "
            "per class), or a factory as path/to/file.py:function or package.module:function "
            "that returns a torch Dataset."
        )
