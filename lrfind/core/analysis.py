"""Turn a loss-vs-LR curve into a recommendation. Pure numpy: no torch, no plotting.

    from lrfind.core.analysis import analyze
    analysis = analyze(lrs, losses, smoothing=0.9, divergence_factor=4.0, method="bottom")
    analysis.recommendation.max_lr

Pipeline: find where the sweep diverged (the same causal rule the engine stops on), smooth
the usable part without lag, ask a suggestion method for the schedule's peak (`max_lr`), derive
`base_lr` and a constant `lr` from the curve, then say in plain sentences what looks wrong.

Suggestion methods share one signature, `method(curve) -> Suggestion | None`, and are
registered by name in `METHODS`; `None` means the curve holds no answer for that method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lrfind.core.arguments import checked_curve, integer, text
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.methods import METHODS as METHOD_NAMES
from lrfind.core.settings import MIN_USABLE_POINTS, SweepSettings, check_choice
from lrfind.errors import ConfigError, SweepError

# A cycle needs amplitude: base_lr is never above this fraction of max_lr.
MAX_BASE_FRACTION = 0.25
# The loss "starts to fall" once this share of its total fall (start to minimum) is done.
ONSET_FRACTION = 0.1
# A constant rate sits this factor below the schedule's peak, which is only touched briefly.
CONSTANT_LR_DIVISOR = 3.0
# The sweep has collapsed once the smoothed loss has given back this share of its fall.
COLLAPSE_SHARE = 0.5
# Steps whose loss differences estimate the batch noise: the divergence rule waits for the
# first NOISE_WINDOW; the estimate keeps improving up to NOISE_SAMPLES.
NOISE_WINDOW = 10
NOISE_SAMPLES = 200
# Relative float resolution: differences of losses below this share of their size are rounding.
RESOLUTION = 1e-12
# Before the noise is known, a loss this many times larger than any before it is divergence.
EARLY_EXPLOSION = 100.0
EARLY_REFERENCE = 3  # losses it is compared with, at least: one loss near zero is no scale
# Repeated sweeps pin their median when the middle suggestions (middle_suggestions) lie
# within this many decades.
AGREEMENT_DECADES = 0.25
# Middle suggestions this far apart (decades) or more leave the peak uncertain by a factor of
# three, enough to cost a one-cycle run points of accuracy: never better than low confidence.
WIDE_DECADES = 0.5
# Two groups of repeats' suggestions this far apart (decades) are two answers, not one with
# noise (lrfind.core.plan.split_answers).
SPLIT_DECADES = 1.0
# bottom: how far below the loss minimum a schedule's peak should sit.
BOTTOM_DIVISOR = 3.0
# knee: the descent ends where the smoothed loss first comes within this share of its fall
# (from its starting level to its minimum) of the minimum; read on the steep part of the
# curve, where batch noise moves it least (docs/quality.md).
KNEE_SHARE = 0.1
# knee: a schedule's peak stays at least this factor below the last rate before divergence,
# for curves whose descent ends right at the cliff (plain SGD on a fresh LeNet).
DIVERGENCE_MARGIN = 5.0
# A loss minimum this many decades or more below the divergence is a flat bottom: the knee is
# read loosely there (confidence at most medium; docs/quality.md's calibration table).
FLAT_BOTTOM_DECADES = 1.0
# A fall of at most this many batch-noise deviations is no descent at all, measured on a causal
# EMA of this smoothing whatever the curve's own (see _evidence_fall).
NO_DESCENT_NOISE_RATIO = 4.0
EVIDENCE_SMOOTHING = 0.9
# A recommendation needs this many points before divergence to tell a descent from noise;
# below SURE_NOISE_POINTS the noise estimate itself is uncertain, and the bar for a clear
# descent rises as 1/sqrt(points).
MIN_EVIDENCE_POINTS = MIN_USABLE_POINTS
SURE_NOISE_POINTS = 20
# Below this many steps per decade (at the minimum) the rate climbs faster than the loss can
# follow: the curve is read late, shifted to higher rates, and a shorter sweep no longer agrees
# with the 100-step one (scripts/bench_short.py; docs/quality.md).
MIN_STEPS_PER_DECADE = 8.0
# A curve whose last tenth still does this share of its fall has not reached its bottom.
STILL_FALLING_SHARE = 0.02


class OnlineEMA:
    """Bias-corrected exponential moving average, one value at a time.

    After n values it equals pandas' `ewm(alpha=1 - beta, adjust=True).mean()`; the bias
    correction keeps the first values from being pulled towards zero.
    """

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self._average = 0.0
        self._count = 0

    def update(self, value: float) -> float:
        self._count += 1
        self._average = self.beta * self._average + (1.0 - self.beta) * value
        return self._average / (1.0 - self.beta**self._count)


def ema(values: Sequence[float] | np.ndarray, beta: float) -> np.ndarray:
    """Causal smoothing: what the engine sees while sweeping. Lags by about 1/(1-beta) steps.

    Bit for bit what `OnlineEMA` gives one value at a time: the recurrence runs over Python
    floats with the same operations in the same order (a numpy scan would round differently),
    while the weighting and the bias correction, which need no order, are numpy's.
    """
    weighted = ((1.0 - beta) * np.asarray(values, dtype=float)).tolist()
    smoothed = np.fromiter(_averages(weighted, beta), dtype=np.float64, count=len(weighted))
    corrections = _bias_corrections(beta, len(smoothed))
    smoothed[: len(corrections)] /= corrections
    return smoothed


def _averages(weighted: list[float], beta: float) -> Iterator[float]:
    """OnlineEMA's running average before its bias correction; `weighted` holds (1-beta)*x."""
    average = 0.0
    for value in weighted:
        average = beta * average + value
        yield average


def _bias_corrections(beta: float, count: int) -> np.ndarray:
    """`1 - beta**n` for n = 1, 2, ... as OnlineEMA computes it, up to `count` terms or until
    beta**n is far below float resolution: from there on every term is exactly 1.0."""
    corrections = []
    for n in range(1, count + 1):
        power = beta**n
        if power < 2.0**-60:
            break
        corrections.append(1.0 - power)
    return np.array(corrections, dtype=float)


def zero_lag_smooth(values: Sequence[float] | np.ndarray, beta: float) -> np.ndarray:
    """EMA forwards, then backwards over the result: the same smoothing, with no shift in LR.

    The causal EMA places every feature about 1/(1-beta) steps too late, which moves a
    suggestion towards larger (riskier) rates; running it back again cancels that delay.
    """
    forward = ema(values, beta)
    return ema(forward[::-1], beta)[::-1]


class DivergenceDetector:
    """The one divergence rule, fed one loss at a time by the engine and by re-analysis.

    The sweep has diverged at the first step where the loss is NaN or infinite, or where the
    causal EMA has risen above its best value by more than the larger of
    - COLLAPSE_SHARE of its fall (from where it started to that best): a model that gives
      back half of what it learned has left the useful range, whether its loss explodes or
      returns to chance (dead ReLUs: log(classes), where a ratio rule never fires), and
    - `divergence_factor` batch-noise standard deviations, so that noise on a curve that has
      not fallen (yet) is never taken for a rise.
    Against the noise alone, a single bad batch can lift the EMA that far, so there the raw
    losses of this step and the one before must be above the limit as well.
    Both are differences of losses measured against the curve's own scale, so the rule gives
    the same step for a loss shifted by a constant or multiplied by a positive factor,
    negative losses included.

    "Where it started" is the mean loss of the first `baseline_steps` steps. The noise is
    estimated robustly from the differences of consecutive losses, over every step so far up
    to NOISE_SAMPLES; the rule waits for NOISE_WINDOW of them. A few early steps can by chance
    agree closely, and an estimate from them alone would let batch noise look like a fall and
    then a collapse. Until then only an explosion counts: the EMA exceeding EARLY_EXPLOSION
    times the largest of the EARLY_REFERENCE or more losses before it, in size (a sweep that
    starts far above the useful range). This early rule alone depends on where zero is; a
    loss near zero must still jump by a hundred times all of those to meet it.
    """

    def __init__(self, smoothing: float, divergence_factor: float, baseline_steps: int) -> None:
        self.divergence_factor = divergence_factor
        self.baseline_steps = min(max(3, baseline_steps), NOISE_SAMPLES)  # within the seen
        self._ema = OnlineEMA(smoothing)
        self._seen: list[float] = []  # the first NOISE_SAMPLES losses
        self._start_level = math.nan
        self._noise = math.nan
        self.best = math.inf  # the best causal EMA since the rule started watching
        self._previous = math.nan  # the raw loss of the step before
        self._waiting = False  # the EMA and the raw loss crossed the limit once, alone
        self.diverged_late = False  # it diverged at the step before the one that said so
        self.steps = 0

    def update(self, loss: float) -> tuple[float, bool]:
        """Return the causal smoothed loss and whether this step diverged."""
        self.steps += 1
        if not math.isfinite(loss):
            return math.nan, True
        smoothed = self._ema.update(loss)
        window = max(self.baseline_steps, NOISE_WINDOW)
        if len(self._seen) < NOISE_SAMPLES:
            self._seen.append(loss)
            if len(self._seen) >= window:
                self._noise = batch_noise(np.array(self._seen))
        if len(self._seen) < window:  # no noise estimate yet: only an explosion counts
            before = self._seen[:-1]
            if len(before) < EARLY_REFERENCE:
                return smoothed, False
            return smoothed, smoothed > EARLY_EXPLOSION * max(abs(value) for value in before)
        if math.isnan(self._start_level):
            self._start_level = float(np.mean(self._seen[: self.baseline_steps]))
        self.best = min(self.best, smoothed)
        previous, self._previous = self._previous, loss
        given_back = COLLAPSE_SHARE * (self._start_level - self.best)
        noise_rise = self.divergence_factor * self._noise
        allowed = max(
            given_back, noise_rise, RESOLUTION * max(abs(self._start_level), abs(self.best))
        )
        waiting, self._waiting = self._waiting, False
        if not smoothed - self.best > allowed:
            return smoothed, False
        if given_back >= noise_rise:
            return smoothed, True
        # Measured against the noise alone, one bad batch can lift the EMA that far: the raw
        # loss must be above the limit for two steps in a row. When the EMA crossed at the
        # first of them, that is where it diverged (the usable curve ends where it would
        # without this guard).
        above = loss - self.best > allowed
        if above and waiting:
            self.diverged_late = True
            return smoothed, True
        if above and previous - self.best > allowed:
            return smoothed, True
        self._waiting = above
        return smoothed, False


def batch_noise(losses: np.ndarray) -> float:
    """Scale of the batch-to-batch noise of raw losses, as a standard deviation.

    Estimated from differences of consecutive losses, which cancel the slow trend of the
    curve (residuals around a smoothed curve would count its bends as noise), with a median
    absolute deviation so that a few spikes do not dominate it. When most differences are
    exactly zero, the deviation is zero too, and the root mean square of the changes that did
    happen is the scale instead (no noise at all stays 0).
    """
    if len(losses) < 3:
        return 0.0
    differences = np.diff(losses)
    spread = 1.4826 * np.median(np.abs(differences - np.median(differences)))
    if spread == 0:  # most values repeat (rounded, or a logger that repeats): use the changes
        changes = differences[differences != 0]
        spread = float(np.sqrt(np.mean(changes**2))) if len(changes) else 0.0
    return float(spread / math.sqrt(2.0))


def baseline_steps(total_steps: int) -> int:
    """Steps that define the starting loss level: the first 5% of the sweep (at least 3)."""
    return max(3, total_steps // 20)


def divergence_index(
    losses: np.ndarray, smoothing: float, divergence_factor: float, planned_steps: int | None = None
) -> int | None:
    """First step where `DivergenceDetector` fires, or None. Re-analysing a saved curve finds
    the step the engine stopped at, given the same settings and planned step count."""
    found = first_divergence(
        np.asarray(losses, dtype=float),
        smoothing,
        divergence_factor,
        baseline_steps(planned_steps or len(losses)),
    )
    if found is None:
        return None
    index, late = found
    return index - 1 if late else index


def first_divergence(
    losses: np.ndarray, smoothing: float, divergence_factor: float, baseline_steps: int
) -> tuple[int, bool] | None:
    """The step at which `DivergenceDetector(smoothing, divergence_factor, baseline_steps)`,
    fed `losses` one at a time, first says "diverged", with its `diverged_late` then; None
    when it never does. The same rule over the whole array at once, for re-analysing long
    curves (the engine feeds the detector step by step): everything the detector keeps is a
    running minimum, maximum or EMA of the steps so far, and each comparison is its own, on
    the same floats."""
    non_finite = np.flatnonzero(~np.isfinite(losses))
    end = int(non_finite[0]) if len(non_finite) else len(losses)
    values = losses[:end]
    smoothed = ema(values, smoothing)
    baseline = min(max(3, baseline_steps), NOISE_SAMPLES)
    window = max(baseline, NOISE_WINDOW)
    found = [
        (step, late)
        for step, late in (
            _first_explosion(values, smoothed, window),
            _first_rise(values, smoothed, baseline, window, divergence_factor),
            (end if end < len(losses) else None, False),  # a NaN or infinite loss
        )
        if step is not None
    ]
    return min(found) if found else None


def _first_explosion(
    values: np.ndarray, smoothed: np.ndarray, window: int
) -> tuple[int | None, bool]:
    """The detector's rule before the noise is known (steps 0 to window-2): the EMA above
    EARLY_EXPLOSION times the largest loss before it, once EARLY_REFERENCE losses precede."""
    early = min(window - 1, len(values))
    if early <= EARLY_REFERENCE:
        return None, False
    largest_before = np.maximum.accumulate(np.abs(values[: early - 1]))  # [i - 1]: before i
    exploded = smoothed[1:early] > EARLY_EXPLOSION * largest_before
    exploded[: EARLY_REFERENCE - 1] = False
    hits = np.flatnonzero(exploded)
    return (int(hits[0]) + 1 if len(hits) else None), False


def _first_rise(
    values: np.ndarray,
    smoothed: np.ndarray,
    baseline: int,
    window: int,
    divergence_factor: float,
) -> tuple[int | None, bool]:
    """The detector's rule from step window-1 on, where the noise is known: the EMA risen
    above its best by more than the allowance, confirmed by the raw losses where the
    allowance is the noise's. Arrays here start at step window-1."""
    if len(values) < window:
        return None, False
    start_level = float(np.mean(values[:baseline].tolist()))
    noise = np.full(len(values) - window + 1, batch_noise(values[:NOISE_SAMPLES]))
    for step in range(window - 1, min(len(values), NOISE_SAMPLES)):  # the estimate grows
        noise[step - window + 1] = batch_noise(values[: step + 1])
    losses, smoothed = values[window - 1 :], smoothed[window - 1 :]
    best = np.minimum.accumulate(smoothed)
    given_back = COLLAPSE_SHARE * (start_level - best)
    noise_rise = divergence_factor * noise
    resolution = RESOLUTION * np.maximum(abs(start_level), np.abs(best))
    allowed = np.maximum(np.maximum(given_back, noise_rise), resolution)
    crossed = smoothed - best > allowed
    above = losses - best > allowed
    previous_above = np.concatenate([[math.nan], losses[:-1]]) - best > allowed
    waiting = np.concatenate([[False], crossed[:-1] & above[:-1]])
    collapse = given_back >= noise_rise
    late = ~collapse & above & waiting
    hits = np.flatnonzero(crossed & (collapse | late | (above & previous_above)))
    if not len(hits):
        return None, False
    return int(hits[0]) + window - 1, bool(late[hits[0]])


@dataclass(frozen=True)
class Curve:
    """The usable part of a sweep (before divergence), as the suggestion methods see it."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray  # zero-lag smoothed loss

    @property
    def log10_lrs(self) -> np.ndarray:
        return np.log10(self.lrs)

    @property
    def min_index(self) -> int:
        return int(np.argmin(self.smoothed))

    @cached_property
    def noise(self) -> float:
        """The batch noise of the raw losses (`batch_noise`), worked out once."""
        return batch_noise(self.losses)

    @cached_property
    def fall(self) -> float:
        """How far the loss falls, as the evidence rule measures it (`_evidence_fall`)."""
        return _evidence_fall(self)

    def slopes(self) -> np.ndarray:
        """d(smoothed loss) / d(log10 lr) at every point."""
        if len(self.lrs) < 2:
            return np.zeros(len(self.lrs))
        return np.gradient(self.smoothed, self.log10_lrs)


@dataclass(frozen=True)
class Suggestion:
    lr: float
    index: int  # the point of the curve the suggestion was read from
    bounded: bool = False  # set by the margin below divergence, not by the reading (knee)


SuggestionMethod = Callable[[Curve], "Suggestion | None"]
METHODS: dict[str, SuggestionMethod] = {}


def check_method(name: str) -> None:
    """Refuse a method name that is not one of lrfind.core.methods, listing those that are."""
    check_choice("method", name, list(METHOD_NAMES))


def register(name: str) -> Callable[[SuggestionMethod], SuggestionMethod]:
    """Implement the method of lrfind.core.methods called `name`."""

    def decorate(method: SuggestionMethod) -> SuggestionMethod:
        METHODS[name] = method
        return method

    return decorate


@register("steepest")
def steepest(curve: Curve) -> Suggestion | None:
    """The LR where the smoothed loss falls fastest per decade, before its minimum."""
    minimum = curve.min_index
    if minimum < 2:
        return None
    index = int(np.argmin(curve.slopes()[: minimum + 1]))
    return Suggestion(lr=float(curve.lrs[index]), index=index)


@register("valley")
def valley(curve: Curve) -> Suggestion | None:
    """Two thirds of the way (in log LR) along the valley, from where the loss starts to fall
    (ONSET_FRACTION of its fall done) to its minimum: past the slow start of the descent and
    short of the flat bottom, where the next rates already hurt.
    """
    minimum = curve.min_index
    start = _onset_index(curve)
    if minimum - start < 2:
        return None
    index = start + (2 * (minimum - start)) // 3
    return Suggestion(lr=float(curve.lrs[index]), index=index)


@register("bottom")
def bottom(curve: Curve) -> Suggestion | None:
    """The LR at the smoothed loss minimum divided by BOTTOM_DIVISOR: lrfind's default.

    The minimum is where raising the rate stops paying within the sweep; a schedule that
    trains at its peak for many steps, not one, must stay clear of it. The divisor was chosen
    with scripts/bench_quality.py (one-cycle regret against grid search, several models and
    optimizers); read from the median of focused repeats (lrfind.core.plan), this is the rule
    with the lowest worst-case regret there.
    """
    minimum = curve.min_index
    if minimum < 1:
        return None
    return Suggestion(lr=float(curve.lrs[minimum]) / BOTTOM_DIVISOR, index=minimum)


@register("knee")
def knee(curve: Curve) -> Suggestion | None:
    """Where the steep descent ends (the smoothed loss within KNEE_SHARE of its fall of the
    minimum), at most the last rate before divergence over DIVERGENCE_MARGIN: lrfind's default.

    Past the knee the loss gains little before it turns; a schedule that trains at its peak
    for many steps sits there, not at the minimum, where the next rates already hurt. Both
    constants were chosen on the tuning configs of scripts/bench_quality.py and judged on the
    held-out ones (docs/quality.md).
    """
    minimum = curve.min_index
    if minimum < 1:
        return None
    smoothed = curve.smoothed
    start = float(np.median(smoothed[: baseline_steps(len(smoothed))]))
    fall = start - float(smoothed[minimum])
    index = minimum
    if fall > 0:
        index = int(
            np.flatnonzero(smoothed[: minimum + 1] <= smoothed[minimum] + KNEE_SHARE * fall)[0]
        )
    margin = float(curve.lrs[-1]) / DIVERGENCE_MARGIN
    read = float(curve.lrs[index])
    return Suggestion(lr=min(read, margin), index=index, bounded=margin < read)


@register("minimum")
def minimum_over_ten(curve: Curve) -> Suggestion | None:
    """A tenth of the LR at the smoothed loss minimum: the classic conservative rule."""
    minimum = curve.min_index
    if minimum < 1:
        return None
    return Suggestion(lr=float(curve.lrs[minimum]) / 10.0, index=minimum)


@dataclass(frozen=True)
class Recommendation:
    """What `result.json` carries under `recommendation` (docs/recommendation.md)."""

    base_lr: float
    max_lr: float
    lr: float
    method: str
    confidence: str  # high, medium or low
    confidence_reasons: list[str] = field(default_factory=list)
    repeats: int = 1  # sweeps combined into this recommendation
    suggestions: list[float] = field(default_factory=list)  # max_lr of those that gave one
    # Lowest and highest of the middle suggestions (middle_suggestions): where the median lies.
    interval: tuple[float, float] | None = None
    # The training run the rates are for and the optimizer's factor (lrfind.core.horizon).
    horizon: dict[str, object] | None = None

    @property
    def log10_width(self) -> float | None:
        if self.interval is None:
            return None
        return math.log10(self.interval[1] / self.interval[0])

    def to_dict(self) -> dict[str, object]:
        return {
            "base_lr": self.base_lr,
            "max_lr": self.max_lr,
            "lr": self.lr,
            "method": self.method,
            "confidence": self.confidence,
            "confidence_reasons": list(self.confidence_reasons),
            "repeats": self.repeats,
            "suggestions": list(self.suggestions),
            "interval": None if self.interval is None else list(self.interval),
            "interval_log10_width": self.log10_width,
            "horizon": self.horizon,
        }


@dataclass(frozen=True)
class Analysis:
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray  # zero-lag smoothed over the usable part; NaN from divergence on
    divergence_index: int | None
    min_index: int
    recommendation: Recommendation | None
    diagnostics: list[str]  # what looks wrong with the range, each with what to do
    no_recommendation: list[str] = field(default_factory=list)  # why there is none, if none

    @property
    def divergence_lr(self) -> float | None:
        index = self.divergence_index
        return None if index is None else float(self.lrs[index])

    @property
    def curve(self) -> Curve:
        """The usable part, as the suggestion methods saw it."""
        usable = max(self.usable_points, 1)
        return Curve(self.lrs[:usable], self.losses[:usable], self.smoothed[:usable])

    @property
    def diverged_at_once(self) -> bool:
        """Whether the sweep began above the useful range."""
        return _diverged_at_once(self.divergence_index, len(self.lrs))

    @property
    def usable_points(self) -> int:
        return len(self.lrs) if self.divergence_index is None else self.divergence_index


def non_finite_first_loss(loss: float, lr: float) -> SweepError:
    """The error for a curve that is broken before any training happened."""
    return SweepError(
        f"the loss was {loss} at the very first step (lr={lr:g}), before any training: the "
        "model, the data or the loss function produce non-finite values. Check the inputs "
        "for NaN/inf and the loss for log(0); a lower --start-lr will not help."
    )


def analyze(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    smoothing: float = SweepSettings.smoothing,
    divergence_factor: float = SweepSettings.divergence_factor,
    method: str = DEFAULT_METHOD,
    planned_steps: int | None = None,
) -> Analysis:
    """Analyse one sweep: where it diverged, what the method suggests, and whether the curve
    holds an answer.

    Args:
        lrs: The learning rate of every step, in the order swept.
        losses: The training loss of every step, as many as `lrs`.
        smoothing: The EMA beta of the smoothing the suggestion is read from.
        divergence_factor: How many batch-noise deviations the smoothed loss may rise above
            its best before the sweep counts as diverged.
        method: The suggestion rule, a name of `METHODS` (bottom, steepest, valley, minimum).
        planned_steps: The length the sweep was planned with (it sets the starting-level
            window of the divergence rule); the number of points given by default.

    Returns:
        An `Analysis`: the smoothed curve, the divergence and minimum indices, the
        `recommendation` (None when the curve holds no answer, `no_recommendation` then
        saying why) and `diagnostics`, plain sentences on what looks wrong with the range.

    Raises:
        ConfigError: `method` is unknown, `smoothing` or `divergence_factor` is out of
            range (as `lrfind analyze` refuses them), `lrs` and `losses` differ in length or
            are empty, a rate is not positive and finite or below the one before, a loss
            between the first and the last is not finite, or an argument has the wrong type.
        SweepError: The first loss is not finite.
    """
    check_method(text("method", method, DEFAULT_METHOD))
    # the knobs as a sweep checks them, then the curve as `lrfind analyze` reads a file
    SweepSettings(smoothing=smoothing, divergence_factor=divergence_factor)
    lrs, losses = checked_curve(lrs, losses)
    if planned_steps is not None and integer("planned_steps", planned_steps, "100") < 1:
        raise ConfigError(f"planned_steps must be a positive integer; got {planned_steps!r}.")
    if not math.isfinite(losses[0]):
        raise non_finite_first_loss(float(losses[0]), float(lrs[0]))

    divergence = divergence_index(losses, smoothing, divergence_factor, planned_steps)
    usable = len(losses) if divergence is None else max(divergence, 1)
    smoothed = np.full(len(losses), np.nan)
    smoothed[:usable] = zero_lag_smooth(losses[:usable], smoothing)
    curve = Curve(lrs=lrs[:usable], losses=losses[:usable], smoothed=smoothed[:usable])

    suggestion = METHODS[method](curve)
    diagnostics = _diagnose(curve, divergence, len(losses), planned_steps)
    gaps = evidence_gaps(curve, suggestion, divergence, method)
    recommendation = None
    if not gaps and suggestion is not None:
        recommendation = _recommend(curve, suggestion, method, divergence, diagnostics)
    return Analysis(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        divergence_index=divergence,
        min_index=curve.min_index,
        recommendation=recommendation,
        diagnostics=diagnostics,
        no_recommendation=gaps,
    )


def evidence_gaps(
    curve: Curve, suggestion: Suggestion | None, divergence: int | None, method: str
) -> list[str]:
    """Why the curve holds no answer, each reason with what to change; empty when it holds one.

    A recommendation needs a clear descent before divergence: enough points, a fall of the
    smoothed loss of more than NO_DESCENT_NOISE_RATIO batch-noise deviations, a sweep slow
    enough for the loss to follow the rate, a bottom inside the sweep, and a suggestion inside
    the swept range. Every test compares differences of losses with the curve's own noise,
    so shifting or scaling the loss changes none of them.
    """
    points = len(curve.lrs)
    if points < MIN_EVIDENCE_POINTS:
        return [
            f"only {points} points precede the divergence; at least {MIN_EVIDENCE_POINTS} are "
            "needed to tell a descent from batch noise: lower --start-lr or raise --steps"
        ]
    gaps = []
    if not clear_descent(curve):
        gaps.append(
            f"the loss shows no clear descent: its smoothed value falls by {curve.fall:.3g} "
            f"against batch noise of {curve.noise:.3g} (more than "
            f"{_descent_ratio(points):.3g}x is needed): widen the LR range, or reduce the "
            "noise with a larger --batch-size"
        )
    density = _steps_per_decade_at(curve, curve.min_index)
    if density < MIN_STEPS_PER_DECADE:
        gaps.append(
            f"the rate climbs too fast for the loss to follow: {density:.1f} steps per decade "
            f"near the minimum, where at least {MIN_STEPS_PER_DECADE:g} are needed (a faster "
            "sweep reads the curve late, at higher rates): raise --steps or narrow "
            "--start-lr/--end-lr"
        )
    if divergence is None and _still_falling(curve):
        gaps.append(
            f"the loss was still falling at the last rate of the curve ({curve.lrs[-1]:.3g}): "
            "its bottom lies beyond the sweep: raise --end-lr (or let the sweep finish)"
        )
    if suggestion is None:
        gaps.append(f"the {method} method finds no point to read on this curve")
    elif not suggestion.lr >= curve.lrs[0]:
        gaps.append(
            f"the rate read from the curve ({suggestion.lr:.3g}) lies below the swept range, "
            f"which starts at {curve.lrs[0]:.3g}: lower --start-lr"
        )
    return gaps


def combine(
    recommendations: Sequence[Recommendation | None],
    method: str,
    full: Recommendation | None = None,
) -> Recommendation | None:
    """One recommendation from several sweeps: the median suggestion and its interval.

    `base_lr` comes from `full`, the recommendation of a sweep that saw the whole descent
    (short sweeps that start mid-way cannot see where the loss starts to fall), or else is
    the median of the sweeps' own. The interval spans the middle suggestions, those around the
    median (`middle_suggestions`); the confidence falls when they span more than
    AGREEMENT_DECADES or when some sweeps gave no answer; when fewer than half of them gave
    one, there is none (see `unconfirmed`).
    """
    found = [item for item in recommendations if item is not None]
    if unconfirmed(recommendations):
        return None
    suggestions = [item.max_lr for item in found]
    middle_lr = float(10 ** np.median(np.log10(suggestions)))
    max_lr = min(max(middle_lr, min(suggestions)), max(suggestions))  # not off by a rounding
    low = full.base_lr if full is not None else float(np.median([item.base_lr for item in found]))
    reasons: list[str] = []
    middle = middle_suggestions(suggestions)
    width = math.log10(middle[-1] / middle[0])
    if width > AGREEMENT_DECADES:
        which = (
            "their suggestions"
            if len(middle) == len(found)
            else (f"the middle {len(middle)} of their suggestions")
        )
        reasons.append(
            f"the {len(found)} sweeps disagree: {which} span {width:.2f} decades "
            f"({middle[0]:.3g} to {middle[-1]:.3g}); more --repeats or a larger "
            "--batch-size narrow it"
        )
    missing = len(recommendations) - len(found)
    if missing:
        reasons.append(f"{missing} of {len(recommendations)} sweeps gave no suggestion")
    reasons += _shared_flaws(found)
    confidence = "high" if not reasons else "medium" if len(reasons) == 1 else "low"
    if width >= WIDE_DECADES:  # an answer known only to within a decade is a weak one
        confidence = "low"
    return Recommendation(
        base_lr=min(low, MAX_BASE_FRACTION * max_lr),
        max_lr=max_lr,
        lr=max_lr / CONSTANT_LR_DIVISOR,
        method=method,
        confidence=confidence,
        confidence_reasons=reasons or [_AGREED if len(found) > 1 else _CLEAR],
        repeats=len(recommendations),
        suggestions=suggestions,
        interval=(middle[0], middle[-1]),
    )


def _shared_flaws(found: list[Recommendation]) -> list[str]:
    """The single-sweep reasons (`_confidence`) that more than half of the sweeps share (a
    flaw of one sweep among several is outvoted), and the margin's setting any answer (the
    median then leans on a fixed factor, not on the curves). A weak descent against the batch
    noise is not carried over from several, as the spread of their suggestions measures
    directly how far the noise moves them (the disagreement reason). One sweep keeps all its
    reasons."""
    if len(found) == 1:
        return [] if found[0].confidence == "high" else list(found[0].confidence_reasons)
    shared = []
    for reason, least in ((NEVER_DIVERGED, 0.5), (AT_THE_EDGE, 0.5), (FLAT_BOTTOM, 0.5),
                          (AT_THE_MARGIN, 0.0)):  # fmt: skip
        count = sum(reason in item.confidence_reasons for item in found)
        if count > least * len(found):
            shared.append(f"{reason} in {count} of the {len(found)} sweeps")
    return shared


def middle_suggestions(suggestions: Sequence[float]) -> list[float]:
    """The suggestions around their median, sorted: all of up to four, else the middle half
    (at least three, a quarter of them dropped at each end). They bound where the median
    lies: a stray sweep at either end moves the median by one place, not to its own value."""
    ordered = sorted(suggestions)
    dropped = min(max(0, (len(ordered) - 3) // 2), len(ordered) // 4)
    return ordered[dropped : len(ordered) - dropped]


def median_pinned(recommendations: Sequence[Recommendation | None]) -> bool:
    """Whether repeated sweeps have pinned their median: at least three gave a suggestion,
    no fewer than half of them, and the middle suggestions lie within AGREEMENT_DECADES."""
    found = [item.max_lr for item in recommendations if item is not None]
    if len(found) < 3 or unconfirmed(recommendations):
        return False
    middle = middle_suggestions(found)
    return math.log10(middle[-1] / middle[0]) <= AGREEMENT_DECADES


def unconfirmed(recommendations: Sequence[Recommendation | None]) -> list[str]:
    """Why repeated sweeps give no answer: fewer than half of them found one. The curve then
    does not reproduce from other seeds, and a median of the few would be a draw's luck."""
    found = sum(item is not None for item in recommendations)
    if 2 * found >= len(recommendations):
        return []
    return [
        f"only {found} of {len(recommendations)} repeated sweeps found a clear descent: the "
        "curve does not reproduce from other initial weights and batches; reduce the batch "
        "noise with a larger --batch-size, or look at the repeats' curves in sweep.png"
    ]


def clear_descent(curve: Curve) -> bool:
    """Whether the loss falls by more than the noise allows (see `evidence_gaps`)."""
    rounding = RESOLUTION * float(np.max(np.abs(curve.losses)))
    return bool(curve.fall > max(_descent_ratio(len(curve.lrs)) * curve.noise, rounding))


def _descent_ratio(points: int) -> float:
    """The fall, in batch-noise deviations, that a clear descent needs on this many points."""
    return NO_DESCENT_NOISE_RATIO * max(1.0, math.sqrt(SURE_NOISE_POINTS / points))


def learned_too_little(analysis: Analysis, *, range_known: bool = False) -> bool:
    """Whether a sweep diverged before its loss showed a clear descent, over enough points to
    tell: the rate climbed through the useful range faster than the model could learn from
    the few batches it saw there. A sweep of more steps (more samples per decade) can answer;
    a curve that never diverged, or diverged at once, needs another range instead, unless
    `range_known`: a focused repeat sweeps a range where another sweep showed a descent
    and a divergence, so without a descent it saw too few batches, diverged or not."""
    if range_known:
        seen = analysis.divergence_index is None or not analysis.diverged_at_once
    else:
        seen = analysis.divergence_index is not None and not analysis.diverged_at_once
    return (
        analysis.recommendation is None
        and seen
        and analysis.usable_points >= MIN_EVIDENCE_POINTS
        and not clear_descent(analysis.curve)
    )


def _evidence_fall(curve: Curve) -> float:
    """How far the loss falls: from its starting level (the median of the first
    baseline_steps points, which one odd first batch does not move) to the lowest causal EMA
    (EVIDENCE_SMOOTHING) from NOISE_WINDOW points on.

    Causal, so that a blow-up at the end cannot drag the descent before it up (a zero-lag
    smoothing can, on a short curve), and blind to the EMA's first points, which follow single
    batches. Its bar (NO_DESCENT_NOISE_RATIO) sits above what Gaussian noise alone reaches
    (docs/quality.md).
    """
    start = baseline_steps(len(curve.losses))
    skipped = min(max(start, NOISE_WINDOW), len(curve.losses) // 2)
    trace = ema(curve.losses, EVIDENCE_SMOOTHING)[skipped:]
    return float(np.median(curve.losses[:start]) - np.min(trace))


def _still_falling(curve: Curve) -> bool:
    """Whether the curve ends in its descent: its smoothed minimum is the last point, and the
    raw losses of its last tenth lie below those of the tenth before by more than
    STILL_FALLING_SHARE of its fall and more than their noise (a flat end does next to
    nothing; a steady descent does a tenth). Raw means, as the smoothing lags at the end."""
    points = len(curve.lrs)
    if curve.min_index != points - 1:
        return False
    tail = max(2, points // 10)
    last, before = curve.losses[-tail:], curve.losses[-2 * tail : -tail]
    fall_at_end = float(np.mean(before) - np.mean(last))
    noise = 3 * curve.noise * math.sqrt(2 / tail)
    return fall_at_end > max(STILL_FALLING_SHARE * _descent(curve), noise)


def _steps_per_decade_at(curve: Curve, index: int) -> float:
    """How densely the sweep samples distinct rates within half a decade of one of its points
    (a rate held for several steps, as a stepwise ramp does, counts once)."""
    positive = curve.lrs[curve.lrs > 0]
    if len(positive) < 2 or not curve.lrs[index] > 0:
        return math.inf  # rates on a linear scale through zero: no density to speak of
    offsets = np.log10(positive / curve.lrs[index])
    rates = np.unique(offsets[np.abs(offsets) <= 0.5])
    if len(rates) < 2:
        return 0.0 if len(np.unique(positive)) > 1 else math.inf
    return (len(rates) - 1) / float(rates[-1] - rates[0])


def _diverged_at_once(divergence: int | None, total_points: int) -> bool:
    """Diverged before a descent could be read: within the first tenth of the sweep, or
    within NOISE_WINDOW steps of the first step at which the rule can fire."""
    return divergence is not None and divergence < max(2 * NOISE_WINDOW, total_points // 10)


def _descent(curve: Curve) -> float:
    """How far the smoothed loss falls from the start of the sweep to its minimum."""
    return float(curve.smoothed[0] - curve.smoothed[curve.min_index])


def _onset_index(curve: Curve) -> int:
    """First point where the smoothed loss has done ONSET_FRACTION of its fall to the minimum."""
    target = curve.smoothed[0] - ONSET_FRACTION * _descent(curve)
    below = np.nonzero(curve.smoothed[: curve.min_index + 1] <= target)[0]
    return int(below[0]) if len(below) else curve.min_index


def _recommend(
    curve: Curve,
    suggestion: Suggestion,
    method: str,
    divergence: int | None,
    diagnostics: list[str],
) -> Recommendation:
    """The documented rule from a suggestion to the three rates of the contract.

    - max_lr: the method's suggestion (the schedule's peak).
    - base_lr: where the loss starts to fall, but at most MAX_BASE_FRACTION of max_lr, so a
      cyclical schedule always spans a real range.
    - lr: max_lr / CONSTANT_LR_DIVISOR, for training at one constant rate.
    """
    max_lr = suggestion.lr
    onset_lr = float(curve.lrs[_onset_index(curve)])
    base_lr = min(onset_lr, MAX_BASE_FRACTION * max_lr)
    confidence, reasons = _confidence(curve, suggestion, divergence, diagnostics)
    return Recommendation(
        base_lr=base_lr,
        max_lr=max_lr,
        lr=max_lr / CONSTANT_LR_DIVISOR,
        method=method,
        confidence=confidence,
        confidence_reasons=reasons,
    )


# A single sweep's reasons for less than high confidence (`_confidence`), and for high.
_CLEAR = "clear descent, clean divergence, enough points"
_AGREED = "the sweeps agree on a clear descent and divergence"
NEVER_DIVERGED = "the loss never diverged, so the top of the usable range is not seen"
AT_THE_MARGIN = (
    "the descent ends close to the divergence: the margin below it (a fifth of the last usable "
    "rate), not the curve, set the answer"
)
FLAT_BOTTOM = "the loss stays near its minimum for a decade or more before it diverges"
WEAK_DESCENT = "the loss falls"
AT_THE_EDGE = "the suggestion sits at the edge of the usable range"


def _confidence(
    curve: Curve, suggestion: Suggestion, divergence: int | None, diagnostics: list[str]
) -> tuple[str, list[str]]:
    reasons = []
    noise, descent = curve.noise, curve.fall
    if divergence is None:
        reasons.append(NEVER_DIVERGED)
    if descent < 10 * noise:
        reasons.append(
            f"{WEAK_DESCENT} by {descent:.3g}, less than 10x its batch noise ({noise:.3g})"
        )
    if suggestion.bounded:  # the same cause as an edge at the top, said better
        reasons.append(AT_THE_MARGIN)
    elif suggestion.index in (0, len(curve.lrs) - 1):
        reasons.append(AT_THE_EDGE)
    lowest, last = float(curve.lrs[curve.min_index]), float(curve.lrs[-1])
    if lowest > 0 and math.log10(last / lowest) >= FLAT_BOTTOM_DECADES:
        reasons.append(FLAT_BOTTOM)
    if not reasons:
        return "high", [_CLEAR]
    level = "medium" if len(reasons) == 1 and not diagnostics else "low"
    return level, reasons


def _diagnose(
    curve: Curve, divergence: int | None, total_points: int, planned_steps: int | None
) -> list[str]:
    """Plain sentences for what is wrong with the curve, each with what to do."""
    lrs = curve.lrs
    messages = []
    if divergence is None:
        messages.append(
            f"The loss never diverged up to lr={lrs[-1]:.3g}: the highest useful rate may "
            "lie above the sweep. Raise --end-lr (e.g. ten times higher) to see it."
        )
    elif _diverged_at_once(divergence, total_points) and (
        planned_steps is None or divergence < planned_steps // 2
    ):  # a short sweep that diverged in its second half did not begin above the range
        messages.append(
            f"The loss diverged almost at once (step {divergence}, lr={lrs[0]:.3g} at the "
            "start): the sweep began above the useful range. Lower --start-lr by a few decades."
        )
    return messages
