"""The schedule kinds a user trains with after the sweep: one registry, one class per kind.

    from lrfind.core.schedules import Bounds, schedule_section
    schedule_section("onecycle", Bounds(base_lr=0.045, max_lr=0.26, lr=0.085), steps_per_epoch=234)

Each kind says, in one place, everything lrfind knows about it:
- `section`: a recommendation (base, max, lr) as the flat parameter mapping of the kind, named
  as torch names them. It is what `lrfind apply` writes into a training config, what
  `lrfind run --emit` prints and what result.json lists (pure, no torch).
- `required` and `optional`: the keys a training config's section must and may hold.
- `scheduler`: the torch scheduler for such a section. It is handed torch's `lr_scheduler`
  module by `lrfind.engine.schedulers`, so this module never imports torch.
- `snippet` and `paste_line`: the Python lines that build the same scheduler.
Adding a kind is one class here and one entry in `KINDS`. Every kind counts iterations, not
epochs: step the scheduler once per optimizer step.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lrfind.errors import ConfigError

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
ONECYCLE_DIV_FACTOR = 25.0  # torch's default, for a section that does not say
# Warm-up over one epoch (Goyal et al. 2017), at most a fifth of training, then decay.
WARMUP_EPOCHS = 1
WARMUP_MAX_SHARE = 0.2
WARMUP_START_FACTOR = 1.0 / 3  # torch's LinearLR default, for a section that does not say
WARMUP_SHAPES = ("linear", "constant")
# Multistep decay: divide by 10 at half and at three quarters of training (the ResNet recipe).
MULTISTEP_MILESTONE_FRACTIONS = (0.5, 0.75)
MULTISTEP_GAMMA = 0.1
# Cosine decay ends a decade below base_lr, far enough down to settle.
COSINE_FLOOR_DIVISOR = 10.0
# Keys whose values are not rates or lengths (every other key must be a positive number).
NON_NUMERIC_KEYS = ("kind", "warmup", "milestone_fractions")


@dataclass(frozen=True)
class Bounds:
    """The three rates of a recommendation that schedules are built from."""

    base_lr: float
    max_lr: float
    lr: float

    @classmethod
    def of(cls, recommendation: Any) -> Bounds:
        """From a `Recommendation`, a loaded result.json, or its `recommendation` block."""
        if recommendation is None:
            raise ConfigError(
                "the recommendation is None: the sweep found no rate to build a schedule from "
                "(its `no_recommendation` says why). Check `outcome.recommendation is not "
                "None` before building a schedule, and do what the reasons say."
            )
        if isinstance(recommendation, Mapping):
            block = recommendation.get("recommendation", recommendation)
            if block is None:
                raise _no_rates(recommendation.get("no_recommendation"))
            values = {key: block.get(key) for key in ("base_lr", "max_lr", "lr")}
        elif all(hasattr(recommendation, key) for key in ("base_lr", "max_lr", "lr")):
            values = {key: getattr(recommendation, key) for key in ("base_lr", "max_lr", "lr")}
        else:
            shown = repr(recommendation)[:60]
            raise ConfigError(
                f"the recommendation must be lrfind's Recommendation, a result.json (its path "
                f"or its loaded content) or its recommendation block; got {shown} (a "
                f"{type(recommendation).__name__}). Pass outcome.recommendation."
            )
        for key, value in values.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value <= 0:
                raise ConfigError(
                    f"the recommendation has no usable {key} (got {value!r}); the sweep found "
                    "no rate to build a schedule from. Rerun `lrfind run` (see its diagnostics)."
                )
        base_lr, max_lr, lr = (float(values[key]) for key in ("base_lr", "max_lr", "lr"))
        if not lr <= max_lr:
            raise ConfigError(
                f"the recommendation's lr ({lr!r}) is above its max_lr ({max_lr!r}), the "
                "highest rate that still trains well. The result was edited or is damaged; "
                "rerun `lrfind run`."
            )
        if not base_lr < max_lr:
            raise ConfigError(
                f"the recommendation's base_lr ({base_lr:g}) is not below its max_lr "
                f"({max_lr:g}), so no schedule can span them. The result was edited or is "
                "damaged; rerun `lrfind run`."
            )
        return cls(base_lr, max_lr, lr)


def _no_rates(reasons: Any) -> ConfigError:
    """The error for a result whose curve held no answer: there is nothing to write."""
    listed = "; ".join(str(reason) for reason in reasons) if isinstance(reasons, list) else ""
    return ConfigError(
        f"the result holds no recommendation ({listed or 'no reasons recorded'}), so there is "
        "no rate to write; --force cannot turn a missing number into one. Do what the reasons "
        "say and rerun `lrfind run`."
    )


def readable(rate: float) -> float:
    """Four significant digits: a range test does not resolve a rate more finely, and a config
    reads better with 0.2561 than with 0.25613870211."""
    return float(f"{rate:.4g}")


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


def multistep_milestones(fractions: list[float], total: int, warmup_iters: int) -> list[int]:
    """Milestones counted from the end of the warm-up, as the decay scheduler sees them."""
    return [max(1, round(fraction * total) - warmup_iters) for fraction in fractions]


@dataclass(frozen=True)
class Training:
    """What a torch scheduler is built for: the optimizer, the length of training and each
    parameter group's rate relative to the first group's (a section's rates are the first's)."""

    optimizer: Any  # torch.optim.Optimizer
    steps_per_epoch: int
    epochs: int
    ratios: tuple[float, ...]

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def scaled(self, rate: float) -> list[float]:
        return [rate * ratio for ratio in self.ratios]


class ScheduleKind:
    """One kind of schedule. Subclasses set `name`, `required` and `optional` and implement
    the three methods; `KINDS` lists them."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]

    def section(
        self, bounds: Bounds, steps_per_epoch: int | None, epochs: int | None
    ) -> dict[str, Any]:
        """The parameters after `kind`, as plain JSON/YAML/TOML values."""
        raise NotImplementedError

    def scheduler(
        self, torch_schedulers: Any, section: Mapping[str, Any], training: Training
    ) -> Any:
        """The torch scheduler; `torch_schedulers` is `torch.optim.lr_scheduler`."""
        raise NotImplementedError

    def snippet(self, section: Mapping[str, Any]) -> list[str]:
        """Python lines that build the scheduler from `optimizer`, `epochs`, `steps_per_epoch`."""
        raise NotImplementedError

    def paste_line(self, section: Mapping[str, Any]) -> str | None:
        """The constructor on one line, for the run summary, where it reads at a glance."""
        return None


class Cyclic(ScheduleKind):
    """torch's CyclicLR between base_lr and max_lr: triangular, triangular2 or exp_range."""

    required = ("base_lr", "max_lr")
    optional = ("step_size_up", "step_size_up_epochs", "gamma")

    def __init__(self, mode: str) -> None:
        self.name = mode

    def section(
        self, bounds: Bounds, steps_per_epoch: int | None, epochs: int | None
    ) -> dict[str, Any]:
        section: dict[str, Any] = {
            "base_lr": readable(bounds.base_lr),
            "max_lr": readable(bounds.max_lr),
        }
        if steps_per_epoch:
            section["step_size_up"] = cycle_half_steps(steps_per_epoch, epochs)
        else:
            section["step_size_up_epochs"] = CYCLE_HALF_EPOCHS
        if self.name == "exp_range":
            section["gamma"] = EXP_RANGE_GAMMA
        return section

    def scheduler(
        self, torch_schedulers: Any, section: Mapping[str, Any], training: Training
    ) -> Any:
        half = int(
            section.get("step_size_up")
            or section.get("step_size_up_epochs", CYCLE_HALF_EPOCHS) * training.steps_per_epoch
        )
        return torch_schedulers.CyclicLR(
            training.optimizer,
            base_lr=training.scaled(section["base_lr"]),
            max_lr=training.scaled(section["max_lr"]),
            step_size_up=half,
            mode=self.name,
            gamma=section.get("gamma", EXP_RANGE_GAMMA),
            cycle_momentum=False,
        )

    def _step_size(self, section: Mapping[str, Any]) -> Any:
        return section.get("step_size_up") or (
            f"{section.get('step_size_up_epochs')} * steps_per_epoch"
        )

    def snippet(self, section: Mapping[str, Any]) -> list[str]:
        gamma = f", gamma={section['gamma']!r}" if self.name == "exp_range" else ""
        return [
            "scheduler = lr_scheduler.CyclicLR(",
            f"    optimizer, base_lr={section['base_lr']!r}, max_lr={section['max_lr']!r}, "
            f"step_size_up={self._step_size(section)},",
            f'    mode="{self.name}"{gamma}, cycle_momentum=False,',
            ")",
        ]

    def paste_line(self, section: Mapping[str, Any]) -> str:
        return (
            f"CyclicLR(optimizer, base_lr={section['base_lr']!r}, "
            f"max_lr={section['max_lr']!r}, step_size_up={self._step_size(section)}, "
            f"mode='{self.name}', cycle_momentum=False)"
        )


class OneCycle(ScheduleKind):
    """torch's OneCycleLR peaking at max_lr, starting at base_lr (div_factor = max / base)."""

    name = "onecycle"
    required = ("max_lr",)
    optional = ("div_factor", "final_div_factor", "pct_start")

    def section(
        self, bounds: Bounds, steps_per_epoch: int | None, epochs: int | None
    ) -> dict[str, Any]:
        max_lr = readable(bounds.max_lr)
        return {
            "max_lr": max_lr,
            "div_factor": readable(max_lr / readable(bounds.base_lr)),
            "final_div_factor": ONECYCLE_FINAL_DIV_FACTOR,
            "pct_start": ONECYCLE_PCT_START,
        }

    def scheduler(
        self, torch_schedulers: Any, section: Mapping[str, Any], training: Training
    ) -> Any:
        return torch_schedulers.OneCycleLR(
            training.optimizer,
            max_lr=training.scaled(section["max_lr"]),
            total_steps=training.total_steps,
            pct_start=section.get("pct_start", ONECYCLE_PCT_START),
            div_factor=section.get("div_factor", ONECYCLE_DIV_FACTOR),
            final_div_factor=section.get("final_div_factor", ONECYCLE_FINAL_DIV_FACTOR),
            cycle_momentum=False,
        )

    def snippet(self, section: Mapping[str, Any]) -> list[str]:
        return [
            "scheduler = lr_scheduler.OneCycleLR(",
            f"    optimizer, max_lr={section['max_lr']!r}, total_steps=epochs * steps_per_epoch,",
            f"    div_factor={section['div_factor']!r}, "
            f"final_div_factor={section['final_div_factor']!r},",
            f"    pct_start={section['pct_start']!r}, cycle_momentum=False,",
            ")",
        ]

    def paste_line(self, section: Mapping[str, Any]) -> str:
        return (
            f"OneCycleLR(optimizer, max_lr={section['max_lr']!r}, "
            f"div_factor={section['div_factor']!r}, pct_start={section['pct_start']}, "
            "total_steps=..., cycle_momentum=False)"
        )


def _set_rates(training: Training, rate: float) -> None:
    for group, scaled in zip(training.optimizer.param_groups, training.scaled(rate), strict=True):
        group["lr"] = scaled


def _constant_rate_lines(section: Mapping[str, Any]) -> list[str]:
    return ["for group in optimizer.param_groups:", f'    group["lr"] = {section["lr"]!r}']


class Constant(ScheduleKind):
    """One rate for all of training: the recommended `lr`, the baseline of `lrfind train`."""

    name = "constant"
    required = ("lr",)
    optional = ()

    def section(
        self, bounds: Bounds, steps_per_epoch: int | None, epochs: int | None
    ) -> dict[str, Any]:
        return {"lr": readable(bounds.lr)}

    def scheduler(
        self, torch_schedulers: Any, section: Mapping[str, Any], training: Training
    ) -> Any:
        _set_rates(training, section["lr"])
        return torch_schedulers.LambdaLR(training.optimizer, lambda step: 1.0)

    def snippet(self, section: Mapping[str, Any]) -> list[str]:
        return _constant_rate_lines(section)


class Warmup(ScheduleKind):
    """A linear (or constant) warm-up from start_factor x lr, then a decay: cosine or
    multistep."""

    required = ("lr",)
    optional = (
        "warmup",
        "start_factor",
        "warmup_iters",
        "warmup_epochs",
        "eta_min",
        "milestone_fractions",
        "gamma",
    )

    def __init__(self, decay: str) -> None:
        self.decay = decay
        self.name = f"warmup-{decay}"

    def section(
        self, bounds: Bounds, steps_per_epoch: int | None, epochs: int | None
    ) -> dict[str, Any]:
        base_lr = readable(bounds.base_lr)
        # Cosine spends little time near its peak, like one-cycle, so it peaks at max_lr;
        # multistep holds its peak for half of training, like a constant rate, so it uses lr.
        peak = readable(bounds.max_lr if self.decay == "cosine" else bounds.lr)
        section: dict[str, Any] = {
            "lr": peak,
            "warmup": "linear",
            "start_factor": readable(min(1.0, base_lr / peak)),
        }
        if steps_per_epoch:
            section["warmup_iters"] = warmup_steps(steps_per_epoch, epochs)
        else:
            section["warmup_epochs"] = WARMUP_EPOCHS
        if self.decay == "cosine":
            section["eta_min"] = readable(base_lr / COSINE_FLOOR_DIVISOR)
        else:
            section["milestone_fractions"] = list(MULTISTEP_MILESTONE_FRACTIONS)
            section["gamma"] = MULTISTEP_GAMMA
        return section

    def scheduler(
        self, torch_schedulers: Any, section: Mapping[str, Any], training: Training
    ) -> Any:
        _set_rates(training, section["lr"])
        total = training.total_steps
        warmup_iters = int(
            section.get("warmup_iters")
            or section.get("warmup_epochs", WARMUP_EPOCHS) * training.steps_per_epoch
        )
        if warmup_iters >= total:
            raise ConfigError(
                f"the warm-up ({warmup_iters} iterations) is as long as training ({total}); "
                "train for more epochs or shorten warmup_iters."
            )
        optimizer = training.optimizer
        start_factor = section.get("start_factor", WARMUP_START_FACTOR)
        if section.get("warmup", "linear") == "linear":
            warmup = torch_schedulers.LinearLR(
                optimizer, start_factor, 1.0, total_iters=warmup_iters
            )
        else:
            warmup = torch_schedulers.ConstantLR(optimizer, start_factor, total_iters=warmup_iters)
        if self.decay == "cosine":
            decay = torch_schedulers.LambdaLR(
                optimizer,
                _cosine_factor(section.get("eta_min", 0.0) / section["lr"], total - warmup_iters),
            )
        else:
            fractions = section.get("milestone_fractions", list(MULTISTEP_MILESTONE_FRACTIONS))
            decay = torch_schedulers.MultiStepLR(
                optimizer,
                milestones=multistep_milestones(fractions, total, warmup_iters),
                gamma=section.get("gamma", MULTISTEP_GAMMA),
            )
        return torch_schedulers.SequentialLR(optimizer, [warmup, decay], milestones=[warmup_iters])

    def snippet(self, section: Mapping[str, Any]) -> list[str]:
        warmup_iters = section.get("warmup_iters") or (
            f"{section['warmup_epochs']} * steps_per_epoch"
        )
        shape = "LinearLR" if section["warmup"] == "linear" else "ConstantLR"
        factor = "start_factor" if shape == "LinearLR" else "factor"
        lines = [
            *_constant_rate_lines(section),
            f"warmup_iters = {warmup_iters}",
            f"warmup = lr_scheduler.{shape}(",
            f"    optimizer, {factor}={section['start_factor']!r}, total_iters=warmup_iters",
            ")",
        ]
        if self.decay == "cosine":
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
        return lines


def _cosine_factor(floor: float, span: int) -> Callable[[int], float]:
    """CosineAnnealingLR's curve as a factor of each group's peak, down to `floor` x peak:
    its eta_min is one rate for all groups, a factor keeps the groups' ratio too."""
    return lambda step: floor + (1 - floor) * (1 + math.cos(math.pi * min(step, span) / span)) / 2


KINDS: dict[str, ScheduleKind] = {
    kind.name: kind
    for kind in (
        OneCycle(),
        Cyclic("triangular"),
        Cyclic("triangular2"),
        Cyclic("exp_range"),
        Warmup("cosine"),
        Warmup("multistep"),
        Constant(),
    )
}
SCHEDULE_KINDS = tuple(KINDS)
DEFAULT_KIND = "onecycle"  # the schedule most users train with after a range test
# Every key a schedule section may hold, of any kind: what `lrfind apply` replaces.
SCHEDULE_KEYS = frozenset(
    {"kind"} | {key for kind in KINDS.values() for key in (*kind.required, *kind.optional)}
)


def check_kind(kind: str) -> ScheduleKind:
    """The registered kind of that name, or a ConfigError with the closest name."""
    if not isinstance(kind, str) or kind not in KINDS:
        close = difflib.get_close_matches(str(kind), SCHEDULE_KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown schedule kind {kind!r}.{hint} Choose one of: {', '.join(SCHEDULE_KINDS)}."
        )
    return KINDS[kind]


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
    return {"kind": kind, **check_kind(kind).section(bounds, steps_per_epoch, epochs)}


def schedule_parameters(bounds: Bounds, steps_per_epoch: int | None) -> dict[str, dict[str, Any]]:
    """Every kind's section, keyed by kind: the `schedules` block of result.json."""
    return {kind: schedule_section(kind, bounds, steps_per_epoch) for kind in SCHEDULE_KINDS}


def check_section(section: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A schedule mapping from a config file, checked: kind known, needed keys present,
    numbers positive, unknown keys refused. Raises ConfigError naming the key and the fix."""
    kind = section.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(
            f"{where} has no schedule kind; add `kind: onecycle` (or another of "
            f"{', '.join(SCHEDULE_KINDS)}), or write it with `lrfind apply`."
        )
    registered = check_kind(kind)
    unknown = sorted(set(section) - SCHEDULE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown schedule key(s) {', '.join(unknown)}; valid keys are "
            f"{', '.join(sorted(SCHEDULE_KEYS))}."
        )
    own = {"kind", *registered.required, *registered.optional}
    others = sorted(set(section) - own)
    if others:
        raise ConfigError(
            f"{where} is a {kind} schedule with key(s) {', '.join(others)}, which a {kind} "
            f"schedule does not use (it takes {', '.join(sorted(own - {'kind'}))}). Remove "
            f"them, or rewrite the section with `lrfind apply RESULT.json CONFIG --schedule "
            f"{kind}`."
        )
    missing = [key for key in registered.required if key not in section]
    if missing:
        raise ConfigError(
            f"{where} is a {kind} schedule without {', '.join(missing)}. Write the bounds in "
            f"with `lrfind apply RESULT.json CONFIG --schedule {kind}`, or pass --result."
        )
    for key, value in section.items():
        if key in NON_NUMERIC_KEYS:
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
    return dict(section)


def python_snippet(section: Mapping[str, Any], steps_per_epoch: int) -> str:
    """Lines that build the scheduler a section describes, for users who paste code.

    They expect `optimizer` to exist and set `epochs` to a placeholder the user edits.
    """
    kind = check_kind(section["kind"])
    lines = [
        f"# lrfind: {kind.name} schedule; call scheduler.step() after every optimizer.step()",
        "from torch.optim import lr_scheduler",
        "",
        f"steps_per_epoch = {steps_per_epoch}  # batches per epoch at the sweep's batch size",
        "epochs = 10  # your training length",
        *kind.snippet(section),
    ]
    return "\n".join(lines) + "\n"
