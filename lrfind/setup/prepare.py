"""A setup's data, ready to train on: the one place `lrfind run` and `lrfind train` load it.

    prepared = prepare_data(config, torch.device("cpu"), held_out_samples=lambda total: 0)
    batches = prepared.loader_for(seed=0)

Built-in datasets are loaded into memory once and moved to the device once; user datasets are
wrapped in a seeded DataLoader. Held-out samples never reach training: for a sweep, the tail
of the training split (`--val-batches`); for `lrfind train`, the built-in test split or the
tail of a user dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrfind.settings.options import SetupSettings
from lrfind.setup import data as datasets
from lrfind.setup import models


@dataclass(frozen=True)
class PreparedData:
    loader_for: Callable[[int], Any]  # sized training batches, in the order of a seed
    held_out_inputs: torch.Tensor | None  # on the device, prepared like the training inputs
    held_out_labels: torch.Tensor | None
    held_out_source: str  # where the held-out samples come from, in words
    sample_inputs: torch.Tensor  # two inputs, on the device, for the shape check
    input_shape: tuple[int, ...]
    num_classes: int | None
    steps_per_epoch: int
    description: dict[str, Any]  # the `data` block of result.json

    def held_out_batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The held-out samples in batches of `batch_size` (the last may be smaller)."""
        if self.held_out_inputs is None or self.held_out_labels is None:
            return []
        return [
            (
                self.held_out_inputs[start : start + batch_size],
                self.held_out_labels[start : start + batch_size],
            )
            for start in range(0, len(self.held_out_labels), batch_size)
        ]


def prepare_data(
    setup: SetupSettings,
    device: torch.device,
    *,
    held_out_samples: Callable[[int], int],
    test_split: bool = False,
) -> PreparedData:
    """The setup's training batches and held-out samples. `held_out_samples(total)` says how
    many samples to hold out from the end of the training data; with `test_split`, built-in
    datasets hold out their test split instead."""
    if setup.dataset in datasets.BUILTIN_DATASETS:
        return _builtin(setup, device, held_out_samples, test_split)
    return _user(setup, device, held_out_samples)


def _builtin(
    setup: SetupSettings,
    device: torch.device,
    held_out_samples: Callable[[int], int],
    test_split: bool,
) -> PreparedData:
    image_data = datasets.load_builtin(setup.dataset, setup.data_dir, setup.download)
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
    return PreparedData(
        loader_for=lambda seed: datasets.TensorBatches(training, setup.batch_size, seed, device),
        held_out_inputs=batches.normalize(inputs.to(device)) if len(labels) else None,
        held_out_labels=labels.to(device) if len(labels) else None,
        held_out_source=source,
        sample_inputs=batches.normalize(batches.images[:2]),
        input_shape=image_data.input_shape,
        num_classes=image_data.num_classes,
        steps_per_epoch=len(batches),
        description={
            "dataset": setup.dataset,
            "source": image_data.source,
            "samples": len(image_data),
            "held_out_samples": held_out,
            "input_shape": list(image_data.input_shape),
            "num_classes": image_data.num_classes,
            "pixel_mean": image_data.mean,
            "pixel_std": image_data.std,
        },
    )


def _user(
    setup: SetupSettings, device: torch.device, held_out_samples: Callable[[int], int]
) -> PreparedData:
    user_data = datasets.load_user_dataset(setup.dataset)
    total = len(user_data.dataset)
    held_out = held_out_samples(total)
    training_data, _ = datasets.split_tail(user_data, held_out)
    loader = datasets.user_loader(training_data, setup.batch_size, setup.seed)
    sample = torch.stack(
        [
            torch.as_tensor(datasets.read_sample(user_data.dataset, index, setup.dataset)[0])
            for index in range(min(2, total))
        ]
    ).to(device)
    inputs = labels = None
    if held_out:
        inputs, labels = torch.utils.data.default_collate(
            [
                datasets.read_sample(user_data.dataset, total - held_out + index, setup.dataset)
                for index in range(held_out)
            ]
        )[:2]
    return PreparedData(
        loader_for=lambda seed: datasets.user_loader(training_data, setup.batch_size, seed),
        held_out_inputs=None if inputs is None else inputs.to(device),
        held_out_labels=None if labels is None else labels.to(device),
        held_out_source=f"the last {held_out} of {total} samples of {setup.dataset}",
        sample_inputs=sample,
        input_shape=user_data.input_shape,
        num_classes=user_data.num_classes,
        steps_per_epoch=len(loader),
        description={
            "dataset": setup.dataset,
            "source": setup.dataset,
            "samples": total,
            "held_out_samples": held_out,
            "input_shape": list(user_data.input_shape),
            "num_classes": user_data.num_classes,
        },
    )


def seeded_model(
    setup: SetupSettings, prepared: PreparedData, seed: int, weights: Path | None = None
) -> nn.Module:
    """The model as a sweep or a schedule starts from: seeded initial weights, or the `weights`
    checkpoint (then every repeat starts from it and differs only in data order)."""
    model = models.seeded_model(setup.model, prepared.input_shape, prepared.num_classes or 0, seed)
    if weights is not None:
        models.load_weights(model, weights)
    return model


def check_specs(setup: SetupSettings) -> None:
    """Resolve the model and dataset specs without building them: a bad one fails first."""
    datasets.check_dataset_spec(setup.dataset)
    models.check_model_spec(setup.model)
