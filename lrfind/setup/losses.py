"""Losses by name or spec, and the check that a task's targets fit its loss (docs/rules.md).

    lrfind run --loss mse --dataset my_data.py:regression --model my_models.py:regressor
    lrfind run --loss my_losses.py:focal          # any callable (outputs, targets) -> loss

The names and their torch.nn classes are lrfind.settings.options.LOSSES. Regression losses
(mse, l1, huber, smooth-l1) and bce take float targets of the outputs' shape: integer targets
are converted and targets with as many values as the outputs are reshaped to them, so a
(batch,) target meets a (batch, 1) output instead of broadcasting to (batch, batch). A spec
names a function, used as the loss, or a class, built with no arguments
(`torch.nn:SmoothL1Loss`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lrfind.errors import SpecError
from lrfind.settings.options import CLASS_INDEX_LOSSES, LOSSES, SetupSettings
from lrfind.setup.batches import LossFunction
from lrfind.setup.factories import load_factory

# Class indices below 0 are ignored by cross-entropy and NLL only when they are this one.
IGNORE_INDEX = -100


class ShapedTargets(nn.Module):
    """A loss whose float targets are reshaped to the outputs when they hold as many values."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(targets, torch.Tensor) and isinstance(outputs, torch.Tensor):
            targets = targets.to(outputs.dtype)
            if targets.shape != outputs.shape and targets.numel() == outputs.numel():
                targets = targets.reshape(outputs.shape)
        result: torch.Tensor = self.loss(outputs, targets)
        return result


def build_loss(setup: SetupSettings) -> LossFunction:
    """The loss the setup names."""
    name = setup.loss
    if name == "cross-entropy":
        return nn.CrossEntropyLoss(label_smoothing=setup.label_smoothing)
    if name in CLASS_INDEX_LOSSES:
        return getattr(nn, LOSSES[name])()
    if name in LOSSES:
        return ShapedTargets(getattr(nn, LOSSES[name])())
    return _user_loss(name)


def check_loss_spec(spec: str) -> None:
    """Resolve a loss spec without running it, so a bad one fails before any data loads."""
    if spec not in LOSSES:
        _user_loss(spec)


def _user_loss(spec: str) -> LossFunction:
    target = load_factory(spec, "loss")
    if isinstance(target, type):
        try:
            built = target()
        except Exception as error:
            raise SpecError(
                f"loss {spec!r} is a class that cannot be built without arguments "
                f"({type(error).__name__}: {error}). Give a function of (outputs, targets), "
                "or a function that returns the configured loss."
            ) from None
        if not callable(built):
            raise SpecError(f"loss {spec!r} built a {type(built).__name__}, which is not callable.")
        return built
    return target


def output_count(
    loss: str, num_classes: int | None, target_shape: tuple[int, ...] | None
) -> int | None:
    """How many outputs per sample a built-in model needs for this loss: the class count for
    class-index losses, else the values of one target (1 for a scalar), else the class count."""
    if loss in CLASS_INDEX_LOSSES or target_shape is None:
        return num_classes
    size = 1
    for dimension in target_shape:
        size *= int(dimension)
    return size


def check_targets_fit(loss: str, outputs: Any, targets: Any, model_spec: str) -> None:
    """Refuse, before the sweep, targets the named loss cannot use, with the fix. `outputs`
    and `targets` are those of one batch, as the loss sees them. Spec losses are the user's:
    only the sweep's first step checks them."""
    if loss not in LOSSES or not isinstance(outputs, torch.Tensor):
        return
    if not isinstance(targets, torch.Tensor):
        raise SpecError(
            f"--loss {loss} needs tensor targets; the batch's targets are a "
            f"{type(targets).__name__}. Return the target as a tensor or number from the dataset."
        )
    if loss in CLASS_INDEX_LOSSES:
        _check_class_targets(loss, outputs, targets, model_spec)
        return
    if targets.numel() != outputs.numel():
        raise SpecError(
            f"--loss {loss} compares outputs and targets value by value, but model "
            f"{model_spec!r} gives outputs of shape {tuple(outputs.shape)} for targets of shape "
            f"{tuple(targets.shape)}. Make the model give one output per target value "
            "(--num-classes sets a built-in model's outputs); for class labels use "
            "--loss cross-entropy."
        )
    if loss == "bce" and len(targets) and (targets.min() < 0 or targets.max() > 1):
        raise SpecError(
            f"--loss bce needs targets between 0 and 1 (one per label, multi-hot); got values "
            f"from {float(targets.min()):g} to {float(targets.max()):g}. For class indices use "
            "--loss cross-entropy; for other numbers a regression loss such as --loss mse."
        )


def _check_probabilities(targets: torch.Tensor, model_spec: str) -> None:
    """Float targets of the outputs' shape are class probabilities only if they look it."""
    low, high = float(targets.min()), float(targets.max())
    sums = targets.sum(dim=1)
    if low < 0 or high > 1 or not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise SpecError(
            f"--loss cross-entropy reads float targets of the outputs' shape as class "
            f"probabilities, but these range from {low:g} to {high:g} and their rows sum to "
            f"{float(sums.min()):g}..{float(sums.max()):g}, not 1. For a regression target use "
            "--loss mse (or l1, huber, smooth-l1); for multi-label 0/1 targets, --loss bce."
        )


def _check_log_probabilities(outputs: torch.Tensor, model_spec: str) -> None:
    """NLL takes log-probabilities: exp of each row sums to 1."""
    sums = outputs.float().exp().sum(dim=1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-2):
        raise SpecError(
            f"--loss nll needs log-probabilities, but the outputs of model {model_spec!r} are "
            f"not (their exponentials sum to {float(sums.min()):.3g}..{float(sums.max()):.3g} "
            "per sample, not 1): raw logits? Use --loss cross-entropy, which applies "
            "log_softmax itself, or end the model with nn.LogSoftmax(dim=1)."
        )


def _check_class_targets(
    loss: str, outputs: torch.Tensor, targets: torch.Tensor, model_spec: str
) -> None:
    if outputs.dim() < 2:
        raise SpecError(
            f"--loss {loss} needs (batch, classes) outputs; model {model_spec!r} gives shape "
            f"{tuple(outputs.shape)}. For a regression task use --loss mse (or l1, huber)."
        )
    classes = int(outputs.shape[1])
    if loss == "nll":
        _check_log_probabilities(outputs, model_spec)
    if targets.dim() == outputs.dim() and targets.shape[1:2] == (1,) and classes > 1:
        raise SpecError(
            f"--loss {loss} takes class indices of shape {(targets.shape[0], *targets.shape[2:])}"
            f" for outputs of shape {tuple(outputs.shape)}; the targets have shape "
            f"{tuple(targets.shape)}, with an extra dimension of 1. Squeeze it in the dataset "
            "(`target.squeeze(0)` per sample, or `labels.squeeze(1)`)."
        )
    if targets.shape == outputs.shape and not targets.is_floating_point():
        raise SpecError(
            f"--loss {loss} got integer targets of the outputs' shape {tuple(outputs.shape)}: "
            "one-hot labels? Give class indices (`labels.argmax(1)`), or class probabilities "
            "as floats (`labels.float()`, cross-entropy only)."
        )
    if targets.is_floating_point():
        if loss == "cross-entropy" and targets.shape == outputs.shape:
            _check_probabilities(targets, model_spec)
            return  # class probabilities (soft labels), which cross-entropy takes
        if loss == "cross-entropy" and targets.dim() == outputs.dim() == 2:
            raise SpecError(
                f"--loss cross-entropy takes float targets as class probabilities, one per "
                f"output, but the targets have {targets.shape[1]} columns and model "
                f"{model_spec!r} gives {classes} outputs per sample. Make them agree (e.g. "
                "--num-classes), or use a regression loss such as --loss mse."
            )
        shown = ", ".join(f"{value:g}" for value in targets.flatten()[:3].tolist())
        raise SpecError(
            f"--loss {loss} needs class indices (integers from 0; the model gives {classes} "
            f"outputs per sample), but the targets are floats ({shown}, ...) of shape "
            f"{tuple(targets.shape)}. For a regression "
            "target use --loss mse (or l1, huber, smooth-l1); for class labels stored as "
            "floats, convert them to integers in the dataset (torch.long)."
        )
    if targets.dtype == torch.bool or targets.is_complex():
        raise SpecError(
            f"--loss {loss} needs integer class indices; the targets are {targets.dtype}. "
            "Convert them to torch.long, or use --loss bce for yes/no labels."
        )
    counted = targets[targets != IGNORE_INDEX]
    if not len(counted):
        return
    low, high = int(counted.min()), int(counted.max())
    if low < 0 or high >= classes:
        found = high if high >= classes else low
        raise SpecError(
            f"class index {found} in the targets is out of range for model {model_spec!r}, "
            f"which gives {classes} outputs per sample (indices 0..{classes - 1}). Give a "
            f"built-in model --num-classes {max(high + 1, classes)}, build your model with as many "
            "outputs as classes, or check the labels."
        )
