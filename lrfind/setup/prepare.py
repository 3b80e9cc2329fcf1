"""A setup's data, ready to train on: the one place `lrfind run` and `lrfind train` load it.

    prepared = prepare_data(config, torch.device("cpu"), held_out_samples=lambda total: 0)
    batches = prepared.loader_for(seed=0)

Built-in datasets are loaded into memory once and moved to the device once; other datasets
(factories, `torchvision:<Class>`, `folder:PATH`) are wrapped in a seeded DataLoader, or for an
iterable dataset a DataLoader that reads it in order. Held-out samples never reach training:
for a sweep, the tail of the training split (`--val-batches`; the first items of an iterable
dataset); for `lrfind train`, the test split of a built-in or torchvision dataset, or the tail
of another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrfind.errors import DataError
from lrfind.settings.options import CLASS_INDEX_LOSSES, SetupSettings
from lrfind.setup import data as datasets
from lrfind.setup import losses, models, userdata
from lrfind.setup.batches import map_tensors
from lrfind.setup.optimizers import check_optimizer
from lrfind.setup.samples import inputs_part


@dataclass(frozen=True)
class PreparedData:
    loader_for: Callable[[int], Any]  # training batches, in the order of a seed
    held_out_for: Callable[[int], list[Any]]  # held-out batches of a size, as the loader's
    held_out_inputs: torch.Tensor | None  # all held-out inputs, when samples are tensor pairs
    held_out_labels: torch.Tensor | None
    held_out_source: str  # where the held-out samples come from, in words
    # A batch of two samples as the loader would give it, its inputs part (item 0 of a tuple
    # batch, the whole of a mapping batch), on the device.
    sample_inputs: Any
    input_shape: tuple[int, ...]  # of one sample's inputs; () when they are not one tensor
    target_shape: tuple[int, ...] | None  # of one sample's targets; None when it has none
    num_classes: int | None  # None: nothing says it (a regression, or only the model knows)
    steps_per_epoch: int | None  # None: an iterable dataset, whose length is unknown
    description: dict[str, Any]  # the `data` block of result.json

    def held_out_batches(self, batch_size: int) -> list[Any]:
        """The held-out samples in batches of `batch_size` (the last may be smaller), on the
        device, in the form the training batches have."""
        return self.held_out_for(batch_size)


def prepare_data(
    setup: SetupSettings,
    device: torch.device,
    *,
    held_out_samples: Callable[[int | None], int],
    test_split: bool = False,
    prefetched: datasets.FilePrefetch | None = None,
) -> PreparedData:
    """The setup's training batches and held-out samples. `held_out_samples(total)` says how
    many samples to hold out from the end of the training data (from the start of an
    iterable dataset, whose total is None); with `test_split`, built-in and torchvision
    datasets hold out their test split instead. `prefetched`: a built-in training split's
    files, already being read (lrfind.setup.data.prefetch_builtin)."""
    if setup.dataset in datasets.BUILTIN_DATASETS:
        return _builtin(setup, device, held_out_samples, test_split, prefetched)
    return _user(setup, device, held_out_samples, test_split)


def _builtin(
    setup: SetupSettings,
    device: torch.device,
    held_out_samples: Callable[[int | None], int],
    test_split: bool,
    prefetched: datasets.FilePrefetch | None,
) -> PreparedData:
    image_data = datasets.load_builtin(
        setup.dataset, setup.data_dir, setup.download, prefetched=prefetched
    )
    held_out = 0 if test_split else held_out_samples(len(image_data))
    kept = len(image_data) - held_out
    training = dataclasses.replace(  # moved to the device once, not once per repeat
        image_data,
        images=image_data.images[:kept].to(device),
        labels=image_data.labels[:kept].to(device),
    )
    batches = datasets.TensorBatches(training, setup.batch_size, setup.seed, device)
    if test_split:
        test = datasets.load_builtin(setup.dataset, setup.data_dir, setup.download, split="test")
        inputs, labels = test.images, test.labels
        source = f"{test.source} (test split, {len(test)} samples)"
    else:
        inputs, labels = image_data.images[kept:], image_data.labels[kept:]
        source = f"the last {held_out} of {len(image_data)} training samples"
    held_inputs = batches.normalize(inputs.to(device)) if len(labels) else None
    held_labels = labels.to(device) if len(labels) else None
    num_classes, origin = image_data.num_classes, "the built-in dataset"
    if setup.num_classes is not None:
        num_classes, origin = setup.num_classes, "--num-classes"
    return PreparedData(
        loader_for=lambda seed: datasets.TensorBatches(training, setup.batch_size, seed, device),
        held_out_for=lambda size: _tensor_batches(held_inputs, held_labels, size),
        held_out_inputs=held_inputs,
        held_out_labels=held_labels,
        held_out_source=source,
        sample_inputs=batches.normalize(batches.images[:2]),
        input_shape=image_data.input_shape,
        target_shape=(),
        num_classes=num_classes,
        steps_per_epoch=len(batches),
        description={
            "dataset": setup.dataset,
            "source": image_data.source,
            "samples": len(image_data),
            "held_out_samples": held_out,
            "input_shape": list(image_data.input_shape),
            "target_shape": [],
            "num_classes": num_classes,
            "num_classes_from": origin,
            "pixel_mean": image_data.mean,
            "pixel_std": image_data.std,
        },
    )


def _tensor_batches(
    inputs: torch.Tensor | None, labels: torch.Tensor | None, batch_size: int
) -> list[Any]:
    if inputs is None or labels is None:
        return []
    return [
        (inputs[start : start + batch_size], labels[start : start + batch_size])
        for start in range(0, len(labels), batch_size)
    ]


def _user(
    setup: SetupSettings,
    device: torch.device,
    held_out_samples: Callable[[int | None], int],
    test_split: bool,
) -> PreparedData:
    spec = setup.dataset
    user_data = userdata.load_user_dataset(
        spec,
        data_dir=setup.data_dir,
        allow_download=setup.download,
        num_classes=setup.num_classes,
        classification=setup.loss in CLASS_INDEX_LOSSES,
    )
    if test_split and user_data.iterable:
        raise DataError(
            f"dataset {spec!r} is an iterable dataset (it has no length), and `lrfind train` "
            "counts its epochs and schedule lengths in batches of a known number. Give it a "
            "map-style dataset (with __len__ and __getitem__); `lrfind run` sweeps this one."
        )
    size = None if user_data.iterable else len(user_data.dataset)
    test_set = None
    if test_split and spec.startswith(userdata.TORCHVISION_PREFIX):
        test_set = userdata.load_torchvision(spec, setup.data_dir, setup.download, train=False)
    if test_set is not None:
        held_out = 0
        training = user_data
        held = [userdata.read_sample(test_set, index, spec) for index in range(len(test_set))]
        source = f"the test split of {spec} ({len(held)} samples)"
    else:
        held_out = held_out_samples(size)
        training, held = userdata.hold_out(user_data, held_out)
        source = (
            f"the first {held_out} items of {spec} (an iterable dataset: its end is unknown)"
            if size is None
            else f"the last {held_out} of {size} samples of {spec}"
        )
    loader = userdata.user_loader(training, setup.batch_size, setup.seed)
    collate = user_data.collate
    first = userdata.first_items(user_data, 2)
    if not first:
        raise DataError(
            f"dataset {spec!r} gave no items when lrfind read it again: an iterable dataset "
            "must start over each time it is iterated. Make __iter__ return a new iterator "
            "(a generator function), not one it keeps."
        )
    pair = collate(first)
    inputs, labels = _tensor_pair(_on(device, collate(held))) if held else (None, None)
    description: dict[str, Any] = {
        "dataset": spec,
        "source": user_data.source,
        "samples": size,
        "held_out_samples": held_out,
        "input_shape": list(user_data.input_shape),
        "target_shape": None if user_data.target_shape is None else list(user_data.target_shape),
        "num_classes": user_data.num_classes,
        "num_classes_from": user_data.num_classes_from,
        "iterable": user_data.iterable,
    }
    if user_data.iterable:
        description["steps_per_epoch_note"] = (
            "unknown: an iterable dataset has no length, so schedule lengths are given in "
            "epochs; it is read in its own order, the same for every repeat"
        )
    return PreparedData(
        loader_for=lambda seed: userdata.user_loader(training, setup.batch_size, seed),
        held_out_for=lambda size: _batched(held, collate, size, device),
        held_out_inputs=inputs,
        held_out_labels=labels,
        held_out_source=source,
        sample_inputs=_on(device, inputs_part(pair)),
        input_shape=user_data.input_shape,
        target_shape=user_data.target_shape,
        num_classes=user_data.num_classes,
        steps_per_epoch=None if user_data.iterable else len(loader),
        description=description,
    )


def _on(device: torch.device, value: Any) -> Any:
    return map_tensors(lambda tensor: tensor.to(device), value)


def _batched(
    samples: Sequence[Any], collate: Callable[[list[Any]], Any], size: int, device: torch.device
) -> list[Any]:
    return [
        _on(device, collate(list(samples[start : start + size])))
        for start in range(0, len(samples), size)
    ]


def _tensor_pair(batch: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(inputs, targets) of a batch of (tensor, tensor) samples; (None, None) for others."""
    if isinstance(batch, tuple | list) and all(
        isinstance(part, torch.Tensor) for part in batch[:2]
    ):
        return batch[0], batch[1]
    return None, None


def seeded_model(
    setup: SetupSettings, prepared: PreparedData, seed: int, weights: Path | None = None
) -> nn.Module:
    """The model as a sweep or a schedule starts from: seeded initial weights, or the `weights`
    checkpoint (then every repeat starts from it and differs only in data order)."""
    outputs = setup.num_classes or losses.output_count(
        setup.loss, prepared.num_classes, prepared.target_shape
    )
    model = models.seeded_model(setup.model, prepared.input_shape, outputs, seed)
    if weights is not None:
        models.load_weights(model, weights)
    return model


def check_specs(setup: SetupSettings) -> None:
    """Resolve the model and dataset specs without building them: a bad one fails first."""
    userdata.check_dataset_spec(setup.dataset)
    models.check_model_spec(setup.model)
    losses.check_loss_spec(setup.loss)
    check_optimizer(setup)
