"""What an optimizer object's family asks of the sweep and of training (docs/optimizers.md).

    with evaluating(optimizer):      # schedule-free: its averaged weights, then back
        ...

Schedule-free optimizers keep two points: the one gradients are taken at (train mode) and the
average that is evaluated (eval mode); they step only in train mode and have their own
warm-up. LR-free ones (Prodigy, D-Adaptation, DoG, Mechanic) estimate their own step size,
so their lr is a multiplier that a sweep would misread. The names are in
lrfind.settings.optimizers, the one table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from lrfind.errors import ConfigError
from lrfind.settings.optimizers import is_schedule_free, lr_free_statement
from lrfind.setup.several import OptimizerSet

SCHEDULE_FREE = "schedule-free"
LR_FREE = "lr-free"
# A schedule-free warm-up over this share of the training run: a convention (the authors
# recommend a warm-up without fixing its length), not yet measured by lrfind.
WARMUP_SHARE = 0.05


def members(optimizer: torch.optim.Optimizer) -> list[torch.optim.Optimizer]:
    """The optimizers `optimizer` steps: a set's members, else itself."""
    if isinstance(optimizer, OptimizerSet):
        return list(optimizer.optimizers.values())
    return [optimizer]


def family(optimizer: torch.optim.Optimizer) -> str | None:
    """SCHEDULE_FREE, LR_FREE or None (a rate a sweep can read), by the first member that
    belongs to one; a class is known by its own name or any base class's."""
    for member in members(optimizer):
        for kind in type(member).__mro__:
            if lr_free_statement(kind.__name__) is not None:
                return LR_FREE
            if is_schedule_free(kind.__module__, kind.__name__) and _switches(member):
                return SCHEDULE_FREE
    return None


def _switches(optimizer: torch.optim.Optimizer) -> bool:
    return callable(getattr(optimizer, "train", None)) and callable(
        getattr(optimizer, "eval", None)
    )


def schedule_free_members(optimizer: torch.optim.Optimizer) -> list[torch.optim.Optimizer]:
    return [member for member in members(optimizer) if family(member) == SCHEDULE_FREE]


def set_mode(optimizer: torch.optim.Optimizer, training: bool) -> None:
    """A schedule-free optimizer's train or eval mode (no other optimizer has one)."""
    for member in schedule_free_members(optimizer):
        member.train() if training else member.eval()  # type: ignore[attr-defined]


@contextlib.contextmanager
def evaluating(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Schedule-free optimizers in eval mode (their averaged weights) for the block, then
    back in train mode; nothing for any other optimizer."""
    set_mode(optimizer, False)
    try:
        yield
    finally:
        set_mode(optimizer, True)


def schedule_free_answer(max_lr: float, training_steps: int | None) -> dict[str, Any]:
    """What a schedule-free optimizer is given: one constant `lr` (the sweep's `max_lr`: its
    averaging does what a one-cycle schedule's decay does) and `warmup_steps`."""
    warmup = None if training_steps is None else max(1, round(WARMUP_SHARE * training_steps))
    return {
        "lr": max_lr,
        "warmup_steps": warmup,
        "meaning": (
            "the optimizer's own constant lr, the sweep's max_lr: the highest rate at which "
            "the loss still falls steadily, kept a margin below divergence; schedule-free "
            "averaging takes the place of a schedule's decay, so use no scheduler. "
            f"warmup_steps is {WARMUP_SHARE:.0%} of the training run (a convention)."
        ),
    }


def _lr_free_member(
    optimizer: torch.optim.Optimizer,
) -> tuple[torch.optim.Optimizer, str] | None:
    """The first LR-free member and its statement (lrfind.settings.optimizers.LR_FREE)."""
    for member in members(optimizer):
        for kind in type(member).__mro__:
            statement = lr_free_statement(kind.__name__)
            if statement is not None:
                return member, statement
    return None


def lr_free_note(optimizer: torch.optim.Optimizer) -> str | None:
    """What a forced sweep of an LR-free optimizer measured, for result.json."""
    found = _lr_free_member(optimizer)
    if found is None:
        return None
    return (
        f"{found[1]}. The sweep was forced (--force-sweep): its rates are multipliers of "
        "the optimizer's own estimate, not step sizes."
    )


def check_lr_free(optimizer: torch.optim.Optimizer, force_sweep: bool) -> None:
    """Refuse an LR-free optimizer, with what its lr means and what to tune instead, unless
    the caller forces the sweep."""
    found = _lr_free_member(optimizer)
    if found is not None and not force_sweep:
        raise ConfigError(
            f"optimizer {type(found[0]).__name__} sets its own step size, so a range test "
            f"over its lr would not measure a rate. {found[1]}. To sweep its lr multiplier "
            "anyway, pass --force-sweep (force_sweep=True in Python)."
        )


def prepare_for_sweep(optimizer: torch.optim.Optimizer) -> None:
    """Schedule-free optimizers in train mode with their warm-up off, so that every step
    trains at the rate the sweep records; the caller's snapshot restores their settings."""
    for member in schedule_free_members(optimizer):
        for group in member.param_groups:
            if "warmup_steps" in group:
                group["warmup_steps"] = 0
    set_mode(optimizer, True)
