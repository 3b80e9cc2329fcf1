"""The learning rate of every step of a sweep, and how parameter groups share it.

sweep_lrs(1e-7, 10.0, 100, "exp")[:3]   # [1e-07, 1.2e-07, 1.4e-07]
"""

from __future__ import annotations

from lrfind.core.settings import MODES
from lrfind.errors import ConfigError


def sweep_lrs(start_lr: float, end_lr: float, steps: int, mode: str) -> list[float]:
    """The LR of every step: first exactly start_lr, last exactly end_lr.

    `exp` multiplies by a constant factor each step (equal steps per decade); `linear` adds a
    constant, which spends nearly all steps in the top decade.
    """
    last = steps - 1
    if mode == "exp":
        ratio = end_lr / start_lr
        lrs = [start_lr * ratio ** (step / last) for step in range(steps)]
    elif mode == "linear":
        lrs = [start_lr + (end_lr - start_lr) * step / last for step in range(steps)]
    else:
        raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}.")
    lrs[-1] = end_lr  # exact, whatever the floating-point power gave
    return lrs


def rate_ratios(rates: list[float]) -> tuple[float, ...]:
    """Each parameter group's rate over the first group's with a positive rate: the ratios a
    sweep or a schedule keeps, so that this group's rate is the one recommended and a group
    frozen at rate 0 stays frozen. All 1 when no group has a positive rate."""
    reference = next((rate for rate in rates if rate > 0), None)
    if reference is None:
        return tuple(1.0 for _ in rates)
    return tuple(max(rate, 0.0) / reference for rate in rates)
