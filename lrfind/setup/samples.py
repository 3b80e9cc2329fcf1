"""Samples and batches of datasets that are not built in: tensors for leaves, the inputs and
targets of a sample, one shape for all, and the collate that makes batches.

    batch = Collate(dataset, spec)([dataset[0], dataset[1]])

The rules are in docs/models-and-data.md ("Datasets of your own"); where the model and the
loss find their parts of a batch is lrfind.setup.batches.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from lrfind.errors import DataError, noted
from lrfind.setup.batches import TARGET_KEYS


def as_tensors(value: Any, in_mapping: bool = False) -> Any:
    """A sample (or a batch) with tensors for its leaves: a PIL image becomes float
    (channels, height, width), 8-bit pixels scaled to [0, 1]; a numpy array or scalar a tensor
    (floating ones float32); a Python int int64, a float float32; a list of numbers inside a
    mapping (a tokenizer's `input_ids`) one tensor. Tuples, lists and mappings keep their
    form; tensors and anything else (strings) are left as they are."""
    if isinstance(value, torch.Tensor):
        return value
    pil = sys.modules.get("PIL.Image")  # no PIL image can exist before PIL.Image is imported
    if pil is not None and isinstance(value, pil.Image):
        return pil_to_tensor(value)
    if isinstance(value, np.ndarray | np.generic):
        return _from_numpy(np.asarray(value))
    if isinstance(value, bool):
        return torch.tensor(value)
    if isinstance(value, int):
        return torch.tensor(value, dtype=torch.int64)
    if isinstance(value, float):
        return torch.tensor(value, dtype=torch.float32)
    if isinstance(value, Mapping):
        return {key: as_tensors(item, in_mapping=True) for key, item in value.items()}
    if isinstance(value, tuple):
        items = [as_tensors(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        numbers = all(
            isinstance(item, int | float) and not isinstance(item, bool) for item in value
        )
        if in_mapping and value and numbers:
            return torch.tensor(value)
        return [as_tensors(item) for item in value]
    return value


def pil_to_tensor(image: Any) -> torch.Tensor:
    """A PIL image as float (channels, height, width): 8-bit pixels scaled to [0, 1], 16- and
    32-bit ones ('I;16', 'I', 'F') kept on their own scale; palette images as RGB."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGB")
    elif image.mode == "1":
        image = image.convert("L")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    pixels = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))
    return pixels.div_(scale) if scale != 1.0 else pixels


def _from_numpy(array: np.ndarray) -> Any:
    # np.ascontiguousarray turns a 0-d array (a numpy scalar label) into shape (1,): keep
    # the shape the sample had, so a batch of scalar labels is (batch,), not (batch, 1)
    if array.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(array.shape)
    if array.dtype.kind in "iub":
        native = array.dtype.newbyteorder("=")
        if array.dtype.kind == "u" and array.dtype.itemsize > 1:
            native = np.dtype(np.int64)  # torch has little use for wide unsigned integers
        return torch.from_numpy(np.ascontiguousarray(array, dtype=native)).reshape(array.shape)
    return array  # strings and objects: the default collate keeps them as lists


def inputs_part(sample: Any) -> Any:
    """What the model is given: item 0 of a tuple, or the whole of a mapping (its keys are
    the model's keyword arguments)."""
    return sample if isinstance(sample, Mapping) else sample[0]


def target_part(sample: Any) -> Any:
    """What the loss compares with (lrfind.setup.batches): item 1 of a tuple, or the value of
    a mapping's first target key (`labels`, `label`, ...), None when it has none."""
    if isinstance(sample, Mapping):
        return next((sample[key] for key in TARGET_KEYS if key in sample), None)
    return sample[1]


def _leaf_shapes(value: Any, path: str) -> Iterator[tuple[str, tuple[int, ...]]]:
    if isinstance(value, torch.Tensor):
        yield path, tuple(value.shape)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaf_shapes(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, tuple | list):
        for position, item in enumerate(value):
            yield from _leaf_shapes(item, f"{path}[{position}]")


def _part_name(path: str) -> str:
    """A leaf's path in words: `[0]` is the inputs, `[1]` the targets; keys stay as they are."""
    for prefix, name in (("[0]", "inputs"), ("[1]", "targets")):
        if path.startswith(prefix):
            return name + path[len(prefix) :]
    return f"item {path}" if path.startswith("[") else path


class SampleShapes:
    """The shapes of one sample's tensors; other samples must match them to be stacked."""

    def __init__(self, spec: str, first: tuple[int, Any]) -> None:
        self.spec = spec
        self.index, sample = first
        self.shapes = dict(_leaf_shapes(sample, ""))

    def check(self, indexed: tuple[int, Any]) -> None:
        index, sample = indexed
        shapes = dict(_leaf_shapes(sample, ""))
        if shapes == self.shapes:
            return
        for path in [*self.shapes, *shapes]:
            if self.shapes.get(path) != shapes.get(path):
                break
        mine, theirs = shapes.get(path), self.shapes.get(path)
        raise DataError(
            f"dataset {self.spec!r}: sample {index} has {_part_name(path)} of shape "
            f"{_shape_text(mine)} but sample {self.index} has {_shape_text(theirs)}; samples "
            f"of different shapes cannot be stacked into one batch. {RAGGED_FIX}"
        )


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "(none)" if shape is None else str(tuple(shape))


RAGGED_FIX = (
    "Pad or crop them to one shape in the dataset (for images, a Resize transform), or give "
    "the dataset a `collate_fn` attribute that batches a list of samples (lrfind uses it)."
)


class Collate:
    """A list of samples to a batch, as the loader gives it: the dataset's own `collate_fn`
    attribute when it has one (given the samples as the dataset returns them), else torch's
    default collate of the samples with tensors for leaves (`as_tensors`)."""

    def __init__(self, dataset: Any, spec: str) -> None:
        own = getattr(dataset, "collate_fn", None)
        self.own: Callable[[list[Any]], Any] | None = own if callable(own) else None
        self.spec = spec

    def __call__(self, samples: list[Any]) -> Any:
        if self.own is not None:
            with noted(f"while the collate_fn of dataset {self.spec!r} batched samples"):
                return as_tensors(self.own(samples))
        converted = [as_tensors(sample) for sample in samples]
        try:
            return torch.utils.data.default_collate(converted)
        except (RuntimeError, TypeError) as error:
            text = str(error).strip()
            raise DataError(
                f"dataset {self.spec!r}: {len(samples)} samples cannot be stacked into one "
                f"batch ({text.splitlines()[0] if text else type(error).__name__}). {RAGGED_FIX}"
            ) from None
