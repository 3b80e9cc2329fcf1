"""Train under a schedule: the loop that verifies recommended bounds.

    history = train_epochs(model, optimizer, loss_fn, batches, epochs=5, scheduler=scheduler)

Used by `lrfind train` (lrfind.commands.train) and `scripts/bench_quality.py`; the scheduler is
stepped once per optimizer step, as cyclic and one-cycle schedules expect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from lrfind.setup.batches import BatchRule, LossFunction, batch_loss, map_tensors
from lrfind.setup.families import evaluating, set_mode


class SizedBatches(Iterable[tuple[torch.Tensor, torch.Tensor]], Sized, Protocol):
    pass


@dataclass(frozen=True)
class EvaluationSet:
    """Held-out inputs, already normalised like the training batches, and their targets; or
    `given`, batches ready in the loader's own form (dict samples, several inputs)."""

    inputs: Any = None
    labels: torch.Tensor | None = None
    batch_size: int = 1000  # large batches: evaluation has no gradients to keep
    given: tuple[Any, ...] = ()

    def batches(self) -> list[Any]:
        if self.given or self.labels is None:
            return list(self.given)
        rows = [
            slice(start, start + self.batch_size)
            for start in range(0, len(self.labels), self.batch_size)
        ]
        return [(_rows(self.inputs, part), self.labels[part]) for part in rows]


def _rows(value: Any, part: slice) -> Any:
    return map_tensors(lambda tensor: tensor[part], value)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    lr: float  # the LR of the last step of the epoch
    train_loss: float  # mean over the epoch's batches, as trained (not re-evaluated)
    train_accuracy: float | None  # None where the task has no classes (regression)
    test_loss: float | None
    test_accuracy: float | None


def correct_count(outputs: Any, targets: Any) -> int | None:
    """How many samples the outputs classify right, or None when the task is not one of class
    indices: (batch, classes) outputs and (batch,) integer targets."""
    if (
        not isinstance(outputs, torch.Tensor)
        or not isinstance(targets, torch.Tensor)
        or outputs.dim() != 2
        or targets.dim() != 1
        or targets.is_floating_point()
        or len(targets) != len(outputs)
    ):
        return None
    return int((outputs.detach().argmax(dim=1) == targets).sum())


def evaluate(
    model: torch.nn.Module, loss_fn: LossFunction, data: EvaluationSet
) -> tuple[float, float | None]:
    """Mean loss and accuracy (None without classes) on `data`, in eval mode and without
    gradients."""
    was_training = model.training
    model.eval()
    rule = BatchRule(model)
    total_loss = 0.0
    correct: int | None = 0
    count = 0
    with torch.no_grad():
        for raw in data.batches():
            batch = rule.split(raw)
            loss, outputs = batch_loss(model, batch, loss_fn)
            size = len(batch.targets)
            total_loss += float(loss) * size
            count += size
            right = correct_count(outputs, batch.targets)
            correct = None if right is None or correct is None else correct + right
    model.train(was_training)
    return total_loss / count, None if correct is None else correct / count


def train_epochs(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFunction,
    batches: SizedBatches,
    *,
    epochs: int,
    scheduler: Any = None,
    test: EvaluationSet | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
) -> list[EpochRecord]:
    """Train for `epochs` passes over `batches`; a non-finite loss ends training early.

    A run that blew up is reported, not raised: its remaining epochs are not trained and its
    test metrics are those of the broken model (chance accuracy), which is the honest score
    of the rate that caused it. `on_step(step, lr, loss)` sees the LR each step trained with.
    """
    history: list[EpochRecord] = []
    rule = BatchRule(model)
    model.train()
    set_mode(optimizer, True)  # schedule-free: steps in train mode, is evaluated in eval mode
    step = 0
    lr = float(optimizer.param_groups[0]["lr"])
    for epoch in range(1, epochs + 1):
        total_loss = 0.0
        correct: int | None = 0
        seen = 0
        finite = True
        for raw in batches:
            batch = rule.split(raw)
            optimizer.zero_grad(set_to_none=True)
            loss, outputs = batch_loss(model, batch, loss_fn)
            loss.backward()
            lr = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            value = float(loss.detach())
            if on_step is not None:
                on_step(step, lr, value)
            step += 1
            if not math.isfinite(value):
                finite = False
                break
            size = len(batch.targets)
            total_loss += value * size
            right = correct_count(outputs, batch.targets)
            correct = None if right is None or correct is None else correct + right
            seen += size
        with evaluating(optimizer):
            test_loss, test_accuracy = (
                (None, None) if test is None else evaluate(model, loss_fn, test)
            )
        record = EpochRecord(
            epoch=epoch,
            lr=lr,
            train_loss=total_loss / seen if finite and seen else float("nan"),
            train_accuracy=None if correct is None else correct / seen if seen else 0.0,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if not finite:
            break
    return history
