"""A recommended rate put into a training run that is already set up: its optimizer and the
schedulers built on it.

    factor = rescale_rates(optimizer, [scheduler], recommendation.max_lr)

The training-stack callbacks (lrfind.lightning, lrfind.huggingface) meet an optimizer whose
schedulers already exist. Setting `lr` on its groups would not last: a scheduler computes the
rate from the base rates it read when it was built. So every rate of the run is multiplied by
one factor, the recommended rate over the configured one: each group's `lr` and the rates
schedulers keep in it (`initial_lr`, and OneCycleLR's `max_lr` and `min_lr`), and each
scheduler's `base_lrs` (CyclicLR's `max_lrs` too; SequentialLR and ChainedScheduler: theirs).
The schedule keeps its shape and the groups their ratios; the configured rate of the first
group with a positive rate becomes the recommended one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from lrfind.errors import SweepError

GROUP_RATE_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")
SCHEDULER_RATE_LISTS = ("base_lrs", "max_lrs")


def configured_rate(optimizer: torch.optim.Optimizer) -> float | None:
    """The rate the run was configured with: that of the first group with a positive one, or
    None when every group is at 0. A scheduler may have changed `lr` already: OneCycleLR keeps
    the peak it was given as `max_lr`, the others the starting rate as `initial_lr`."""
    for group in optimizer.param_groups:
        rate = float(group.get("max_lr", group.get("initial_lr", group["lr"])))
        if rate > 0:
            return rate
    return None


def rescale_rates(
    optimizer: torch.optim.Optimizer, schedulers: Iterable[Any], rate: float
) -> float:
    """Scale every rate of the run so that its configured rate becomes `rate`; the factor."""
    configured = configured_rate(optimizer)
    if configured is None:
        raise SweepError(
            "every parameter group of the optimizer has learning rate 0, so there is no "
            "configured rate to replace with the recommended one. Give the groups to train a "
            "positive rate."
        )
    factor = rate / configured
    for group in optimizer.param_groups:
        for key in GROUP_RATE_KEYS:
            if isinstance(group.get(key), (int, float)):
                group[key] = group[key] * factor
    for scheduler in _with_nested(schedulers):
        for name in SCHEDULER_RATE_LISTS:
            rates = getattr(scheduler, name, None)
            if isinstance(rates, list):
                setattr(scheduler, name, [value * factor for value in rates])
    return factor


def _with_nested(schedulers: Iterable[Any]) -> list[Any]:
    """The schedulers and those SequentialLR or ChainedScheduler hold, each once."""
    found: list[Any] = []
    pending = list(schedulers)
    while pending:
        scheduler = pending.pop(0)
        if any(scheduler is seen for seen in found):
            continue
        found.append(scheduler)
        pending.extend(getattr(scheduler, "_schedulers", None) or ())
    return found
