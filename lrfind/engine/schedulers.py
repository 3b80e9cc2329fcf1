"""torch schedulers from lrfind's schedule sections (lrfind.core.schedules has the kinds).

    from lrfind.engine.schedulers import build_scheduler
    scheduler = build_scheduler(optimizer, "runs/lenet/result.json", "onecycle",
                                steps_per_epoch=234, epochs=5)

Step the scheduler once per optimizer step (every kind here counts iterations, not epochs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.optim import lr_scheduler

from lrfind.core.analysis import Recommendation
from lrfind.core.arguments import integer, shown
from lrfind.core.ramp import rate_ratios
from lrfind.core.schedules import Bounds, Training, check_kind, check_section, schedule_section
from lrfind.errors import ConfigError
from lrfind.outputs.documents import read_result


def scheduler_from_section(
    optimizer: torch.optim.Optimizer,
    section: Mapping[str, Any],
    steps_per_epoch: int,
    epochs: int,
) -> lr_scheduler.LRScheduler:
    """The torch scheduler a section describes, for `epochs` of `steps_per_epoch` iterations.

    Several parameter groups keep the ratio of their current LRs to the first group's: the
    section's rates are those of the first group.
    """
    section = check_section(section, "schedule")
    training = Training(optimizer, steps_per_epoch, epochs, _group_ratios(optimizer))
    scheduler: lr_scheduler.LRScheduler = check_kind(section["kind"]).scheduler(
        lr_scheduler, section, training
    )
    return scheduler


def _group_ratios(optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
    """The groups' ratios (from `initial_lr` when a scheduler set one), clearing `initial_lr`
    so that the new scheduler starts from the rates it is given."""
    return rate_ratios(
        [float(group.pop("initial_lr", group["lr"])) for group in optimizer.param_groups]
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    recommendation: Recommendation | Mapping[str, Any] | str | Path,
    kind: str,
    steps_per_epoch: int,
    epochs: int,
) -> lr_scheduler.LRScheduler:
    """A torch scheduler of `kind` from lrfind's recommendation, for the whole training run.
    Cyclic kinds fit whole cycles into the run; step the scheduler after every optimizer step.

    Args:
        optimizer: The optimizer to schedule. Several parameter groups keep the ratios of
            their current rates to the first group's, whose rate the schedule sets.
        recommendation: A `Recommendation`, the path of a result.json, or its loaded content
            (the whole document or its `recommendation` block).
        kind: A schedule kind, as `lrfind apply` takes (lrfind.core.schedules.KINDS:
            onecycle, triangular, cosine, ...).
        steps_per_epoch: Optimizer steps per epoch, a positive integer.
        epochs: Epochs of the whole run, a positive integer.

    Returns:
        A torch `LRScheduler` over `steps_per_epoch * epochs` optimizer steps.

    Raises:
        ConfigError: `steps_per_epoch` or `epochs` is not a positive integer, `kind` is
            unknown, the result file is missing, unreadable or not an lrfind result, or the
            recommendation has no usable rates (the curve held no answer, or base_lr,
            max_lr and lr are not positive and in order).
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer; got {shown(optimizer)}. Pass the "
            "optimizer that trains the model."
        )
    for name, value in (("steps_per_epoch", steps_per_epoch), ("epochs", epochs)):
        if integer(name, value, "100") < 1:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    if isinstance(recommendation, (str, Path)):
        recommendation = read_result(Path(recommendation))
    section = schedule_section(kind, Bounds.of(recommendation), steps_per_epoch, epochs)
    return scheduler_from_section(optimizer, section, steps_per_epoch, epochs)
