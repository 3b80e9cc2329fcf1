"""The knobs of a sweep and of the plan of sweeps, each declared once with its default, the
reason for it and its help; the CLI, config files and the API all read these declarations.

    SweepSettings(start_lr=1e-6, steps=200)   # every field checked on construction
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lrfind.core.arguments import typed_fields
from lrfind.errors import ConfigError

# The panels `--help` groups options in, in this order.
PANELS = ("Model and data", "Optimizer", "Sweep", "Recommendation", "Performance", "Output")


def option(
    default: Any,
    help: str,
    *,
    panel: str,
    metavar: str | None = None,
    choices: Sequence[str] = (),
    flag: str | None = None,
    unset: str | None = None,
) -> Any:
    """A settings field that is also a command-line option: its default, its help, the
    `--help` panel it is shown in, its value's name, the choices the shell completes, the
    flag's spelling for a switch (e.g. "--refine/--no-refine") and, for a default of None,
    what leaving it unset means."""
    metadata = {
        "help": help,
        "panel": panel,
        "metavar": metavar,
        "choices": choices,
        "flag": flag,
        "unset": unset,
    }
    return field(default=default, metadata=metadata)


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Refuse a value outside `choices`, listing them."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}.")


def check_positive(name: str, value: float) -> None:
    """Refuse a rate that is not a positive, finite number, naming the flag that sets it."""
    if not (value > 0 and math.isfinite(value)):
        flag = "--" + name.replace("_", "-")
        raise ConfigError(
            f"{name} must be a positive, finite number; got {value:g}. Pass e.g. {flag} 1e-3."
        )


# The largest float32: a rate above it overflows the update of a float32 weight.
FLOAT32_MAX = 3.4028234663852886e38
MODES = ("exp", "linear")  # how the rate grows from step to step (lrfind.core.ramp)
MAX_STEPS = 1_000_000  # steps of one sweep at most
# Fewer usable points than this and a curve is too coarse to analyse: the shortest sweep,
# the shortest curve `lrfind analyze` reads, and the least a sweep must keep to be focused on.
MIN_USABLE_POINTS = 10
# The most focused repeats of the default plan; they stop as soon as their median is pinned
# (lrfind.core.plan). A cap well above the usual count lets some repeats find no answer.
REPEATS = 11


@dataclass(frozen=True)
class SweepSettings:
    """The knobs of one LR range test, shared by the CLI and `lrfind.range_test`."""

    # below any useful rate for common models, so the flat start is seen
    start_lr: float = option(1e-7, "First LR of the sweep.", panel="Sweep", metavar="FLOAT")
    # above where SGD and Adam diverge on common models
    end_lr: float = option(10.0, "Last LR of the sweep.", panel="Sweep", metavar="FLOAT")
    # enough points for a readable curve, few enough to take seconds on a small model
    steps: int = option(100, "Number of mini-batches (LR steps).", panel="Sweep", metavar="INTEGER")
    # an exponential ramp spends equal steps on every decade
    mode: str = option("exp", "How the LR grows.", panel="Sweep", metavar="NAME", choices=MODES)
    # EMA beta: about 10 steps of memory, a tenth of the default sweep
    smoothing: float = option(
        0.9, "EMA factor in [0, 1) for the loss.", panel="Recommendation", metavar="FLOAT"
    )
    # a rise of 4 batch-noise deviations is no longer noise
    divergence_factor: float = option(
        4.0,
        "Smallest rise (in batch-noise deviations) that counts as divergence.",
        panel="Recommendation",
        metavar="FLOAT",
    )

    def __post_init__(self) -> None:
        typed_fields(self, SweepSettings)  # a Python caller's values; the CLI's arrive coerced
        check_positive("start_lr", self.start_lr)
        check_positive("end_lr", self.end_lr)
        if self.start_lr >= self.end_lr:
            raise ConfigError(
                f"start_lr must be below end_lr; got {self.start_lr:g} >= {self.end_lr:g}. "
                "Swap them or widen the range (e.g. --start-lr 1e-7 --end-lr 10)."
            )
        if not math.isfinite(self.end_lr / self.start_lr):
            raise ConfigError(
                f"the range from start_lr {self.start_lr:g} to end_lr {self.end_lr:g} spans "
                "more decades than a float can hold, so the sweep's rates would overflow. "
                "Narrow it to the rates a model can train at, e.g. --start-lr 1e-7 --end-lr 10."
            )
        if self.end_lr > FLOAT32_MAX:
            raise ConfigError(
                f"end_lr {self.end_lr:g} is beyond the largest float32 ({FLOAT32_MAX:.3g}): "
                "a float32 weight's update at that rate overflows in the optimizer, whatever "
                "the model. Sweep the rates a model can train at, e.g. --end-lr 10."
            )
        if not MIN_USABLE_POINTS <= self.steps <= MAX_STEPS:
            raise ConfigError(
                f"steps must be between {MIN_USABLE_POINTS} and {MAX_STEPS}; got {self.steps}. A "
                f"curve needs at least {MIN_USABLE_POINTS} points to analyse; 100 is a good "
                "default (--steps 100)."
            )
        check_choice("mode", self.mode, MODES)
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(
                f"smoothing is an EMA factor in [0, 1); got {self.smoothing:g}. "
                "Use 0 for no smoothing or e.g. --smoothing 0.9."
            )
        if not self.divergence_factor > 1.0 or not math.isfinite(self.divergence_factor):
            raise ConfigError(
                f"divergence_factor must be a finite number above 1; got "
                f"{self.divergence_factor:g}. It is the smallest rise of the smoothed loss, "
                "in batch-noise deviations, that counts as divergence; 4 is typical "
                "(--divergence-factor 4)."
            )

    def sweep_settings(self) -> SweepSettings:
        """These knobs alone, as the engine takes them (a subclass carries more)."""
        return _only(SweepSettings, self)


@dataclass(frozen=True)
class SearchSettings:
    """How many sweeps one recommendation takes (lrfind.core.plan)."""

    repeats: int = option(
        REPEATS,
        "Most focused sweeps after the full one; they stop once their median is pinned.",
        panel="Recommendation",
        metavar="INTEGER",
    )
    # repeats sweep just below the divergence point; False: the full range
    refine: bool = option(
        True,
        "Repeats sweep just below the divergence point (refine) or the full range.",
        panel="Recommendation",
        flag="--refine/--no-refine",
    )
    # the least that costs no bench config quality (docs/quality.md): a hard curve's plan
    # stops at a known cost instead of running to --repeats
    budget: float = option(
        5.0,
        "Most training steps of the whole plan, in full sweeps (those of the full sweep kept).",
        panel="Recommendation",
        metavar="FLOAT",
    )
    # the rate for a run of this length: optimizers whose step size changes as their state
    # fills (RMSprop, Adagrad, RAdam) are read at the sweep's age and trained at this one
    epochs: float | None = option(
        None,
        "Length of the training run the answer is for, in epochs (lrfind.core.horizon).",
        panel="Recommendation",
        metavar="FLOAT",
        unset="1,000 steps",
    )
    # widen or narrow the range and retry when it was wrong
    auto_range: bool = option(
        False,
        "Widen or narrow the LR range and rerun when it was wrong.",
        panel="Sweep",
        flag="--auto-range",
    )

    def __post_init__(self) -> None:
        typed_fields(self, SearchSettings)
        if not 0 <= self.repeats <= 100:
            raise ConfigError(
                f"repeats must be between 0 and 100; got {self.repeats}. Use --repeats 0 for a "
                "single sweep; repeats stop once their median is pinned (default: at most "
                f"{REPEATS})."
            )

        if self.epochs is not None and not (0 < self.epochs <= 1e6):
            raise ConfigError(
                f"epochs must be a positive number of epochs (at most 1e6); got {self.epochs!r}. "
                "It is the length of the training run the answer is for (--epochs 5)."
            )
        if not (1.0 <= self.budget <= 1000.0):
            raise ConfigError(
                f"budget must be between 1 and 1000 full sweeps; got {self.budget!r}. It bounds "
                "the steps of the whole plan (the full sweep, its reruns and the repeats); "
                "5 is the default (--budget 5)."
            )

    def search_settings(self) -> SearchSettings:
        """These knobs alone, as the plan takes them (a subclass carries more)."""
        return _only(SearchSettings, self)


Settings = TypeVar("Settings")


def _only(kind: type[Settings], value: Any) -> Settings:
    """`value` (an instance of `kind` or of a subclass) as a plain `kind`."""
    if type(value) is kind:
        return value
    return kind(**{name: getattr(value, name) for name in kind.__dataclass_fields__})  # type: ignore[attr-defined]


SWEEP_FIELDS = tuple(SweepSettings.__dataclass_fields__)
