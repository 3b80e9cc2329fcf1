"""Learning-rate schedules: the sweep's ramp, and the schedules a user trains with next.

    from lrfind.schedules import build_scheduler
    scheduler = build_scheduler(optimizer, "runs/lenet/result.json", "onecycle",
                                steps_per_epoch=234, epochs=5)

Three layers, each usable alone:
- `sweep_lrs`: the ramp the range test follows (pure).
- `schedule_section`: a recommendation (base, max, lr) becomes the flat parameter mapping of one
  schedule kind, named as torch names them. It is what `lrfind apply` writes into a training
  config, what `lrfind run --emit` prints and what result.json lists (pure, no torch).
- `scheduler_from_section` / `build_scheduler`: torch scheduler objects from such a mapping.
  Step the scheduler once per optimizer step (every kind here counts iterations, not epochs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrfind.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from lrfind.analysis import Recommendation

SCHEDULE_KINDS = (
    "onecycle",
    "triangular",
    "triangular2",
    "exp_range",
    "warmup-cosine",
    "warmup-multistep",
    "constant",
)
CYCLIC_KINDS = ("triangular", "triangular2", "exp_range")
WARMUP_KINDS = ("warmup-cosine", "warmup-multistep")
WARMUP_SHAPES = ("linear", "constant")

# Smith (2017): a half-cycle of 2 to 10 epochs works; 4 gives a full cycle every 8 epochs.
# When the training length is known, the cycles are fitted so that training ends where a
# cycle ends (at base_lr), as Smith recommends.
CYCLE_HALF_EPOCHS = 4
# exp_range shrinks the cycle's amplitude by gamma**iteration; Smith's value for CIFAR-10.
EXP_RANGE_GAMMA = 0.99994
# One-cycle: torch's share of warm-up and final division. Momentum is not cycled: the sweep
# measured the bounds at the optimizer's own momentum, and cycling it would change them.
ONECYCLE_PCT_START = 0.3
ONECYCLE_FINAL_DIV_FACTOR = 1e4
# Warm-up over one epoch (Goyal et al. 2017), at most a fifth of training, then decay.
WARMUP_EPOCHS = 1
WARMUP_MAX_SHARE = 0.2
# Multistep decay: divide by 10 at half and at three quarters of training (the ResNet recipe).
MULTISTEP_MILESTONE_FRACTIONS = (0.5, 0.75)
MULTISTEP_GAMMA = 0.1
# Cosine decay ends a decade below base_lr, far enough down to settle.
COSINE_FLOOR_DIVISOR = 10.0


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


@dataclass(frozen=True)
class Bounds:
    """The three rates of a recommendation that schedules are built from."""

    base_lr: float
    max_lr: float
    lr: float

    @classmethod
    def of(cls, recommendation: Recommendation | Mapping[str, Any] | str | Path) -> Bounds:
        """From a `Recommendation`, result.json (path or loaded), or its `recommendation` block."""
        if isinstance(recommendation, (str, Path)):
            from lrfind.export import read_result

            recommendation = read_result(Path(recommendation))
        if isinstance(recommendation, Mapping):
            block = recommendation.get("recommendation", recommendation)
            values = {key: block.get(key) for key in ("base_lr", "max_lr", "lr")}
        else:
            values = {
                "base_lr": recommendation.base_lr,
                "max_lr": recommendation.max_lr,
                "lr": recommendation.lr,
            }
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(
                    f"the recommendation has no usable {key} (got {value!r}); the sweep found "
                    "no rate to build a schedule from. Rerun `lrfind run` (see its diagnostics)."
                )
        return cls(float(values["base_lr"]), float(values["max_lr"]), float(values["lr"]))


def cycle_half_steps(steps_per_epoch: int, epochs: int | None = None) -> int:
    """Iterations per half-cycle: CYCLE_HALF_EPOCHS epochs, or, with the training length known,
    the nearest whole number of cycles (at least one) that ends exactly at the last step."""
    if epochs is None:
        return CYCLE_HALF_EPOCHS * steps_per_epoch
    total = steps_per_epoch * epochs
    cycles = max(1, round(epochs / (2 * CYCLE_HALF_EPOCHS)))
    return max(1, total // (2 * cycles))


def warmup_steps(steps_per_epoch: int, epochs: int | None = None) -> int:
    steps = WARMUP_EPOCHS * steps_per_epoch
    if epochs is not None:
        steps = min(steps, int(WARMUP_MAX_SHARE * steps_per_epoch * epochs))
    return max(1, steps)


def schedule_section(
    kind: str,
    bounds: Bounds,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """The parameters of one schedule kind, `kind` first, as plain JSON/YAML/TOML values.

    Lengths are in iterations when `steps_per_epoch` is known, else in epochs
    (`step_size_up_epochs`, `warmup_epochs`); multistep milestones are fractions of training.
    """
    check_kind(kind)
    base_lr, max_lr, lr = (readable(rate) for rate in (bounds.base_lr, bounds.max_lr, bounds.lr))
    section: dict[str, Any] = {"kind": kind}
    if kind == "constant":
        section["lr"] = lr
    elif kind in CYCLIC_KINDS:
        section.update(base_lr=base_lr, max_lr=max_lr)
        if steps_per_epoch:
            section["step_size_up"] = cycle_half_steps(steps_per_epoch, epochs)
        else:
            section["step_size_up_epochs"] = CYCLE_HALF_EPOCHS
        if kind == "exp_range":
            section["gamma"] = EXP_RANGE_GAMMA
    elif kind == "onecycle":
        section.update(
            max_lr=max_lr,
            div_factor=readable(max_lr / base_lr),
            final_div_factor=ONECYCLE_FINAL_DIV_FACTOR,
            pct_start=ONECYCLE_PCT_START,
        )
    else:
        # Cosine spends little time near its peak, like one-cycle, so it peaks at max_lr;
        # multistep holds its peak for half of training, like a constant rate, so it uses lr.
        peak = max_lr if kind == "warmup-cosine" else lr
        section.update(lr=peak, warmup="linear", start_factor=readable(min(1.0, base_lr / peak)))
        if steps_per_epoch:
            section["warmup_iters"] = warmup_steps(steps_per_epoch, epochs)
        else:
            section["warmup_epochs"] = WARMUP_EPOCHS
        if kind == "warmup-cosine":
            section["eta_min"] = readable(base_lr / COSINE_FLOOR_DIVISOR)
        else:
            section.update(milestone_fractions=list(MULTISTEP_MILESTONE_FRACTIONS))
            section["gamma"] = MULTISTEP_GAMMA
    return section


def readable(rate: float) -> float:
    """Four significant digits: a range test does not resolve a rate more finely, and a config
    reads better with 0.2561 than with 0.25613870211."""
    return float(f"{rate:.4g}")


def schedule_parameters(
    base_lr: float, max_lr: float, lr: float, steps_per_epoch: int | None
) -> dict[str, dict[str, Any]]:
    """Every kind's section, keyed by kind: the `schedules` block of result.json."""
    bounds = Bounds(base_lr, max_lr, lr)
    return {kind: schedule_section(kind, bounds, steps_per_epoch) for kind in SCHEDULE_KINDS}


def check_kind(kind: str) -> None:
    if kind not in SCHEDULE_KINDS:
        import difflib

        close = difflib.get_close_matches(kind, SCHEDULE_KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown schedule kind {kind!r}.{hint} Choose one of: {', '.join(SCHEDULE_KINDS)}."
        )


# Keys each kind needs, and the optional ones with their defaults: what a config must hold.
_REQUIRED = {
    "constant": ("lr",),
    "onecycle": ("max_lr",),
    "triangular": ("base_lr", "max_lr"),
    "triangular2": ("base_lr", "max_lr"),
    "exp_range": ("base_lr", "max_lr"),
    "warmup-cosine": ("lr",),
    "warmup-multistep": ("lr",),
}
SCHEDULE_KEYS = frozenset(
    {
        "kind",
        "lr",
        "base_lr",
        "max_lr",
        "step_size_up",
        "step_size_up_epochs",
        "gamma",
        "div_factor",
        "final_div_factor",
        "pct_start",
        "warmup",
        "start_factor",
        "warmup_iters",
        "warmup_epochs",
        "eta_min",
        "milestone_fractions",
    }
)


def check_section(section: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A schedule mapping from a config file, checked: kind known, needed keys present,
    numbers positive, unknown keys refused. Raises ConfigError naming the key and the fix."""
    kind = section.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(
            f"{where} has no schedule kind; add `kind: onecycle` (or another of "
            f"{', '.join(SCHEDULE_KINDS)}), or write it with `lrfind apply`."
        )
    check_kind(kind)
    unknown = sorted(set(section) - SCHEDULE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown schedule key(s) {', '.join(unknown)}; valid keys are "
            f"{', '.join(sorted(SCHEDULE_KEYS))}."
        )
    missing = [key for key in _REQUIRED[kind] if key not in section]
    if missing:
        raise ConfigError(
            f"{where} is a {kind} schedule without {', '.join(missing)}. Write the bounds in "
            f"with `lrfind apply RESULT.json CONFIG --schedule {kind}`, or pass --result."
        )
    checked = dict(section)
    for key, value in section.items():
        if key in ("kind", "warmup", "milestone_fractions"):
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ConfigError(f"{where}.{key} must be a positive number; got {value!r}.")
        if not math.isfinite(value):
            raise ConfigError(f"{where}.{key} must be finite; got {value!r}.")
    if section.get("warmup", "linear") not in WARMUP_SHAPES:
        raise ConfigError(
            f"{where}.warmup must be linear or constant; got {section.get('warmup')!r}."
        )
    fractions = section.get("milestone_fractions", [])
    if not isinstance(fractions, list) or not all(
        isinstance(value, (int, float)) and 0 < value < 1 for value in fractions
    ):
        raise ConfigError(
            f"{where}.milestone_fractions must be a list of fractions of training in (0, 1), "
            f"e.g. [0.5, 0.75]; got {fractions!r}."
        )
    if "base_lr" in section and section["base_lr"] >= section["max_lr"]:
        raise ConfigError(
            f"{where}.base_lr must be below max_lr; got {section['base_lr']:g} >= "
            f"{section['max_lr']:g}."
        )
    for key in ("start_factor", "pct_start"):
        if key in section and section[key] > 1:
            raise ConfigError(f"{where}.{key} must be at most 1; got {section[key]:g}.")
    return checked


# ---------------------------------------------------------------------------------------------
# torch schedulers


def scheduler_from_section(
    optimizer: torch.optim.Optimizer,
    section: Mapping[str, Any],
    steps_per_epoch: int,
    epochs: int,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The torch scheduler a section describes, for `epochs` of `steps_per_epoch` iterations.

    Several parameter groups keep the ratio of their current LRs to the first group's: the
    section's rates are those of the first group.
    """
    from torch.optim import lr_scheduler

    section = check_section(section, "schedule")
    kind = section["kind"]
    total = steps_per_epoch * epochs
    ratios = _group_ratios(optimizer)

    def scaled(rate: float) -> list[float]:
        return [rate * ratio for ratio in ratios]

    if kind in CYCLIC_KINDS:
        half = int(
            section.get("step_size_up")
            or section.get("step_size_up_epochs", CYCLE_HALF_EPOCHS) * steps_per_epoch
        )
        return lr_scheduler.CyclicLR(
            optimizer,
            base_lr=scaled(section["base_lr"]),
            max_lr=scaled(section["max_lr"]),
            step_size_up=half,
            mode=kind,
            gamma=section.get("gamma", EXP_RANGE_GAMMA),
            cycle_momentum=False,
        )
    if kind == "onecycle":
        return lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=scaled(section["max_lr"]),
            total_steps=total,
            pct_start=section.get("pct_start", ONECYCLE_PCT_START),
            div_factor=section.get("div_factor", 25.0),
            final_div_factor=section.get("final_div_factor", ONECYCLE_FINAL_DIV_FACTOR),
            cycle_momentum=False,
        )
    for group, rate in zip(optimizer.param_groups, scaled(section["lr"]), strict=True):
        group["lr"] = rate
    if kind == "constant":
        return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    warmup_iters = int(
        section.get("warmup_iters") or section.get("warmup_epochs", WARMUP_EPOCHS) * steps_per_epoch
    )
    if warmup_iters >= total:
        raise ConfigError(
            f"the warm-up ({warmup_iters} iterations) is as long as training ({total}); "
            "train for more epochs or shorten warmup_iters."
        )
    start_factor = section.get("start_factor", 1.0 / 3)
    warmup: lr_scheduler.LRScheduler
    if section.get("warmup", "linear") == "linear":
        warmup = lr_scheduler.LinearLR(optimizer, start_factor, 1.0, total_iters=warmup_iters)
    else:
        warmup = lr_scheduler.ConstantLR(optimizer, start_factor, total_iters=warmup_iters)
    decay: lr_scheduler.LRScheduler
    if kind == "warmup-cosine":
        # CosineAnnealingLR's eta_min is one rate for all groups; as a factor of each group's
        # peak, the floor keeps the groups' ratio too. Same curve as CosineAnnealingLR.
        floor = section.get("eta_min", 0.0) / section["lr"]
        span = total - warmup_iters
        decay = lr_scheduler.LambdaLR(
            optimizer,
            lambda step: floor + (1 - floor) * (1 + math.cos(math.pi * min(step, span) / span)) / 2,
        )
    else:
        fractions = section.get("milestone_fractions", list(MULTISTEP_MILESTONE_FRACTIONS))
        decay = lr_scheduler.MultiStepLR(
            optimizer,
            milestones=multistep_milestones(fractions, total, warmup_iters),
            gamma=section.get("gamma", MULTISTEP_GAMMA),
        )
    return lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[warmup_iters])


def multistep_milestones(fractions: list[float], total: int, warmup_iters: int) -> list[int]:
    """Milestones counted from the end of the warm-up, as the decay scheduler sees them."""
    return [max(1, round(fraction * total) - warmup_iters) for fraction in fractions]


def rate_ratios(rates: list[float]) -> tuple[float, ...]:
    """Each parameter group's rate over the first group's: the ratios a sweep or a schedule
    keeps, so that the first group's rate is the one recommended. All 1 when it is 0."""
    reference = rates[0]
    return tuple(rate / reference if reference > 0 else 1.0 for rate in rates)


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
) -> torch.optim.lr_scheduler.LRScheduler:
    """A torch scheduler of `kind` from lrfind's recommendation, for the whole training run.

    `recommendation`: a `Recommendation`, a result.json path or its loaded content. Cyclic
    kinds fit whole cycles into the run; step the scheduler after every optimizer step.
    """
    for name, value in (("steps_per_epoch", steps_per_epoch), ("epochs", epochs)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    section = schedule_section(kind, Bounds.of(recommendation), steps_per_epoch, epochs)
    return scheduler_from_section(optimizer, section, steps_per_epoch, epochs)


def python_snippet(section: Mapping[str, Any], steps_per_epoch: int) -> str:
    """Lines that build the scheduler a section describes, for users who paste code.

    They expect `optimizer` to exist and set `epochs` to a placeholder the user edits.
    """
    kind = section["kind"]
    lines = [
        f"# lrfind: {kind} schedule; call scheduler.step() after every optimizer.step()",
        "from torch.optim import lr_scheduler",
        "",
        f"steps_per_epoch = {steps_per_epoch}  # batches per epoch at the sweep's batch size",
        "epochs = 10  # your training length",
    ]
    if kind in CYCLIC_KINDS:
        gamma = f", gamma={section['gamma']!r}" if kind == "exp_range" else ""
        step_size = section.get("step_size_up") or (
            f"{section['step_size_up_epochs']} * steps_per_epoch"
        )
        lines += [
            "scheduler = lr_scheduler.CyclicLR(",
            f"    optimizer, base_lr={section['base_lr']!r}, max_lr={section['max_lr']!r}, "
            f"step_size_up={step_size},",
            f'    mode="{kind}"{gamma}, cycle_momentum=False,',
            ")",
        ]
    elif kind == "onecycle":
        lines += [
            "scheduler = lr_scheduler.OneCycleLR(",
            f"    optimizer, max_lr={section['max_lr']!r}, total_steps=epochs * steps_per_epoch,",
            f"    div_factor={section['div_factor']!r}, "
            f"final_div_factor={section['final_div_factor']!r},",
            f"    pct_start={section['pct_start']!r}, cycle_momentum=False,",
            ")",
        ]
    else:
        lines += [
            "for group in optimizer.param_groups:",
            f'    group["lr"] = {section["lr"]!r}',
        ]
    if kind in WARMUP_KINDS:
        warmup_iters = section.get("warmup_iters") or (
            f"{section['warmup_epochs']} * steps_per_epoch"
        )
        shape = "LinearLR" if section["warmup"] == "linear" else "ConstantLR"
        factor = "start_factor" if shape == "LinearLR" else "factor"
        lines += [
            f"warmup_iters = {warmup_iters}",
            f"warmup = lr_scheduler.{shape}(",
            f"    optimizer, {factor}={section['start_factor']!r}, total_iters=warmup_iters",
            ")",
        ]
        if kind == "warmup-cosine":
            lines += [
                "decay = lr_scheduler.CosineAnnealingLR(",
                "    optimizer, T_max=epochs * steps_per_epoch - warmup_iters, "
                f"eta_min={section['eta_min']!r}",
                ")",
            ]
        else:
            fractions = [float(value) for value in section["milestone_fractions"]]
            lines += [
                "milestones = [",
                "    max(1, round(fraction * epochs * steps_per_epoch) - warmup_iters)",
                f"    for fraction in {fractions!r}",
                "]",
                "decay = lr_scheduler.MultiStepLR(",
                f"    optimizer, milestones=milestones, gamma={section['gamma']!r}",
                ")",
            ]
        lines.append(
            "scheduler = lr_scheduler.SequentialLR(optimizer, [warmup, decay], "
            "milestones=[warmup_iters])"
        )
    return "\n".join(lines) + "\n"
