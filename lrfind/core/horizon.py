"""The training run an answer is for, and how the optimizer's own step size changes over it.

    horizon = Horizon(training_steps=1170, source="5 epochs of 234 steps", multipliers=measured)
    recommendation = scaled(recommendation, horizon.described(reading_steps=[21, 24, 19]))

At a constant rate, some optimizers take steps whose size changes as their state fills:
RMSprop, Adagrad and Adamax start with large steps (their squared-gradient statistics start
at zero and are not bias-corrected), RAdam with tiny ones (its rectification warms up over
thousands of steps); SGD and Adam keep theirs after a few steps. A sweep reads its bottom a
few dozen steps into a fresh run, while training reaches its peak rate much later, so the
rate the sweep read is scaled by the ratio of the two step sizes: training's peak then takes
the step the sweep's bottom took. `multipliers` is the optimizer's step size per step at a
constant rate (lrfind.engine.probe measures it on synthetic gradients); without it nothing is
scaled. docs/quality.md has the measurements behind this rule.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lrfind.core.analysis import Recommendation
from lrfind.errors import ConfigError

# The training length assumed when none is given: the order of the bench's runs
# (docs/quality.md), and where the optimizers above have mostly settled.
DEFAULT_TRAINING_STEPS = 1000
# Where a one-cycle schedule reaches its peak (torch's OneCycleLR pct_start); a warm-up
# schedule peaks earlier, where an optimizer's transient is larger still.
PEAK_FRACTION = 0.3
# An optimizer whose step size changes more than this factor between the sweeps' reading and
# training's peak gives an answer that leans on the correction: a level less confidence.
LARGE_CORRECTION = 2.0
# Beyond this factor either way the probe is not measuring a state that fills (an optimizer
# whose step follows the parameters' size, as Adafactor's does): the answer is left as read.
MOST_CORRECTION = 20.0
# Steps measured at most: the slowest transients (RAdam's rectification, beta2 = 0.999)
# have settled within a few thousand steps; later steps are taken as the last one measured.
PROBE_STEPS_LIMIT = 10_000
# Steps measured at least: past where the repeats read their bottom (tens to hundreds of steps).
PROBE_STEPS_LEAST = 1000


@dataclass(frozen=True)
class Horizon:
    """The training run the answer is for (`training_steps`, and how it was known) and the
    optimizer's step size per step at a constant rate (None: not measured, nothing scaled)."""

    training_steps: int
    source: str  # "default", "5 epochs of 234 steps", "777 training steps"
    multipliers: np.ndarray | None = None

    @property
    def peak_step(self) -> int:
        return max(1, round(PEAK_FRACTION * self.training_steps))

    @staticmethod
    def steps_to_measure(training_steps: int) -> int:
        return min(PROBE_STEPS_LIMIT, max(PROBE_STEPS_LEAST, round(PEAK_FRACTION * training_steps)))

    def factor(self, reading_step: float) -> float:
        """The optimizer's step size where the sweep read its answer over the one at training's
        peak (1.0 when not measured)."""
        if self.multipliers is None or not len(self.multipliers):
            return 1.0
        last = len(self.multipliers) - 1
        read = self.multipliers[min(last, max(0, round(reading_step) - 1))]
        peak = self.multipliers[min(last, self.peak_step - 1)]
        if not (math.isfinite(read) and math.isfinite(peak)) or read <= 0 or peak <= 0:
            return 1.0
        return float(read / peak)

    def described(self, reading_steps: Sequence[int]) -> dict[str, object]:
        """How the answer is scaled for this run (result.json's `recommendation.horizon`), given
        `reading_steps`: the step of each answering sweep's bottom, counted from its first."""
        reading = statistics.median(reading_steps) if reading_steps else None
        factor = 1.0 if reading is None else self.factor(reading)
        described: dict[str, object] = {
            "training_steps": self.training_steps,
            "source": self.source,
            "peak_step": self.peak_step,
            "reading_step": reading,
            "optimizer_factor": factor,
            "measured": self.multipliers is not None,
        }
        if not 1 / MOST_CORRECTION <= factor <= MOST_CORRECTION:
            shown = max(factor, 1 / factor) if factor > 0 else factor
            described.update(optimizer_factor=1.0, unscaled=_UNSCALED.format(factor=shown))
        return described


_UNSCALED = (
    "the optimizer's measured step size changes {factor:.3g}x between the sweeps' reading and "
    f"training's peak, beyond the {MOST_CORRECTION:g}x lrfind scales by, so the answer is as read"
)


def training_length(
    *,
    epochs: float | None = None,
    training_steps: int | None = None,
    batches_per_epoch: int | None = None,
    accumulate: int = 1,
    epochs_name: str = "epochs",
) -> tuple[int | None, str]:
    """The optimizer steps of the training run the answer is for, and how they were known:
    `training_steps`, or `epochs` of `batches_per_epoch` batches at `accumulate` batches a
    step; (None, "default") when neither is given. `epochs_name` is how the caller spells it."""
    if training_steps is not None and epochs is not None:
        raise ConfigError(
            f"Give the training run's length once: {epochs_name} {epochs:g} and training_steps "
            f"{training_steps} were both given. Keep training_steps (optimizer steps) or epochs."
        )
    if training_steps is not None:
        return training_steps, f"{training_steps:,} training steps"
    if epochs is None:
        return None, "default"
    if not batches_per_epoch:
        raise ConfigError(
            f"{epochs_name} {epochs:g} needs data with a length, and this dataset has none (an "
            "iterable one). Pass training_steps, the optimizer steps of the training run, or "
            "leave the length out (1,000 steps)."
        )
    per_epoch = max(1, batches_per_epoch // max(1, accumulate))
    steps = round(epochs * per_epoch)
    if steps < 1:
        raise ConfigError(
            f"{epochs_name} {epochs:g} is less than one optimizer step ({per_epoch:,} steps an "
            "epoch). Give the number of epochs the training run takes, e.g. 5."
        )
    return steps, f"{epochs:g} epochs of {per_epoch:,} steps"


def scaled(recommendation: Recommendation, horizon: dict[str, object]) -> Recommendation:
    """`recommendation` with every rate times `horizon["optimizer_factor"]`, and `horizon`
    kept with it (result.json's `recommendation.horizon`). A factor beyond
    LARGE_CORRECTION either way costs a level of confidence: the answer then leans on it."""
    factor = float(horizon["optimizer_factor"])  # type: ignore[arg-type]
    interval = recommendation.interval
    confidence, reasons = recommendation.confidence, list(recommendation.confidence_reasons)
    reason = horizon.get("unscaled")
    if abs(math.log10(factor)) > math.log10(LARGE_CORRECTION):
        reason = (
            f"the optimizer's step size changes {max(factor, 1 / factor):.3g}x between the "
            "sweeps' reading and training's peak, and the answer leans on that correction"
        )
    if isinstance(reason, str):
        reasons = [reason] if confidence == "high" else [*reasons, reason]
        confidence = {"high": "medium", "medium": "low"}.get(confidence, confidence)
    return dataclasses.replace(
        recommendation,
        confidence=confidence,
        confidence_reasons=reasons,
        base_lr=recommendation.base_lr * factor,
        max_lr=recommendation.max_lr * factor,
        lr=recommendation.lr * factor,
        suggestions=[value * factor for value in recommendation.suggestions],
        interval=None if interval is None else (interval[0] * factor, interval[1] * factor),
        horizon=dict(horizon),
    )


def stored_horizon(value: object) -> dict[str, object] | None:
    """A result.json's `recommendation.horizon` when it is one lrfind could have written (a
    factor within MOST_CORRECTION either way, a whole number of training steps), else None."""
    if not isinstance(value, dict):
        return None
    factor, steps = value.get("optimizer_factor"), value.get("training_steps")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        return None
    if not (math.isfinite(factor) and 1 / MOST_CORRECTION <= factor <= MOST_CORRECTION):
        return None
    return value
