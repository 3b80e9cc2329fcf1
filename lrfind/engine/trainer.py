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

from lrfind.engine.loop import LossFunction


class SizedBatches(Iterable[tuple[torch.Tensor, torch.Tensor]], Sized, Protocol):
    pass


@dataclass(frozen=True)
class EvaluationSet:
    """Held-out inputs, already normalised like the training batches, and their labels."""

    inputs: torch.Tensor
    labels: torch.Tensor
    batch_size: int = 1000  # large batches: evaluation has no gradients to keep


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    lr: float  # the LR of the last step of the epoch
    train_loss: float  # mean over the epoch's batches, as trained (not re-evaluated)
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None


def evaluate(
    model: torch.nn.Module, loss_fn: LossFunction, data: EvaluationSet
) -> tuple[float, float]:
    """Mean loss and accuracy on `data`, in eval mode and without gradients."""
    was_training = model.training
    model.eval()
    total_loss = 0.0
    correct = 0
    count = len(data.labels)
    with torch.no_grad():
        for start in range(0, count, data.batch_size):
            inputs = data.inputs[start : start + data.batch_size]
            labels = data.labels[start : start + data.batch_size]
            outputs = model(inputs)
            total_loss += float(loss_fn(outputs, labels)) * len(labels)
            correct += int((outputs.argmax(dim=1) == labels).sum())
    model.train(was_training)
    return total_loss / count, correct / count


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
    model.train()
    step = 0
    lr = float(optimizer.param_groups[0]["lr"])
    for epoch in range(1, epochs + 1):
        total_loss = 0.0
        correct = 0
        seen = 0
        finite = True
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            outputs = model(inputs)
            loss = loss_fn(outputs, labels)
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
            total_loss += value * len(labels)
            correct += int((outputs.detach().argmax(dim=1) == labels).sum())
            seen += len(labels)
        test_loss, test_accuracy = (None, None) if test is None else evaluate(model, loss_fn, test)
        record = EpochRecord(
            epoch=epoch,
            lr=lr,
            train_loss=total_loss / seen if finite and seen else float("nan"),
            train_accuracy=correct / seen if seen else 0.0,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if not finite:
            break
    return history
