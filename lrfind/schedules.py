"""Learning-rate schedules as tiny pure functions (no torch).

    from lrfind.schedules import sweep_lrs, schedule_parameters
    sweep_lrs(1e-7, 10.0, 100, "exp")[:3]

`sweep_lrs` is the ramp the range test follows; `schedule_parameters` turns a recommendation
into ready-to-paste parameters for the schedules a user trains with next.
"""

from __future__ import annotations

from typing import Any

# Smith (2017) found half-cycles of 2 to 10 epochs work; 4 gives a full cycle every 8 epochs.
CYCLE_HALF_EPOCHS = 4
# exp_range shrinks the cycle's amplitude by gamma**iteration; Smith's value for CIFAR-10.
EXP_RANGE_GAMMA = 0.99994
# One-cycle: torch's defaults for the share of warm-up and the final division.
ONECYCLE_PCT_START = 0.3
ONECYCLE_FINAL_DIV_FACTOR = 1e4
# Warm-up over one epoch (Goyal et al. 2017), then decay.
WARMUP_EPOCHS = 1
MULTISTEP_MILESTONE_FRACTIONS = (0.5, 0.75)
MULTISTEP_GAMMA = 0.1


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
        raise ValueError(f"unknown mode {mode!r}; choose exp or linear")
    lrs[-1] = end_lr  # exact, whatever the floating-point power gave
    return lrs


def schedule_parameters(
    base_lr: float, max_lr: float, lr: float, steps_per_epoch: int | None
) -> dict[str, Any]:
    """Parameters for cyclic, one-cycle and warm-up schedules, named as torch names them.

    Step counts need `steps_per_epoch`; without it they are given in epochs only.
    """
    half_cycle: dict[str, Any] = {"step_size_up_epochs": CYCLE_HALF_EPOCHS}
    warmup_length: dict[str, Any] = {"warmup_epochs": WARMUP_EPOCHS}
    if steps_per_epoch:
        half_cycle["step_size_up"] = CYCLE_HALF_EPOCHS * steps_per_epoch
        warmup_length["warmup_iters"] = WARMUP_EPOCHS * steps_per_epoch
    cyclic = {
        mode: {"base_lr": base_lr, "max_lr": max_lr, "mode": mode, **half_cycle}
        for mode in ("triangular", "triangular2", "exp_range")
    }
    cyclic["exp_range"]["gamma"] = EXP_RANGE_GAMMA
    return {
        "cyclic": cyclic,
        "onecycle": {
            "max_lr": max_lr,
            "div_factor": max_lr / base_lr,
            "final_div_factor": ONECYCLE_FINAL_DIV_FACTOR,
            "pct_start": ONECYCLE_PCT_START,
        },
        "warmup": {
            "lr": lr,
            "start_factor": min(1.0, base_lr / lr),
            **warmup_length,
            "multistep": {
                "milestone_fractions": list(MULTISTEP_MILESTONE_FRACTIONS),
                "gamma": MULTISTEP_GAMMA,
            },
            "cosine": {"eta_min": base_lr / 10.0},
        },
    }
