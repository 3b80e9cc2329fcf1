"""Which sweeps one recommendation needs: a full sweep, then short focused repeats.

    from lrfind.core.plan import search
    outcome = search(run_sweep, SweepSettings(), SearchSettings(repeats=3), method="bottom")

One sweep over eight decades spends most of its steps where nothing happens, and what it
suggests moves by a quarter of a decade or more with the batches it happened to draw. The
default plan therefore runs the full sweep once (to find where the loss diverges, to diagnose
the range and to draw the curve), then `repeats` short sweeps with other seeds over the
decades just below that point, at the same steps per decade, and recommends the median of
their suggestions with the interval they span. `refine=False` runs `repeats` full sweeps
instead. `run_sweep(repeat, settings)` does the work, so the caller decides what a repeat
varies (the CLI: weight initialisation and data order; the API: data order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lrfind.core.analysis import METHODS, Analysis, Recommendation, combine, unconfirmed
from lrfind.core.records import STOP_INTERRUPTED, RangeTestResult
from lrfind.settings.options import MIN_USABLE_POINTS, SearchSettings, SweepSettings

# The focused sweeps cover this many decades below the full sweep's divergence point and
# this many above it (a short sweep from a fresh model diverges somewhat later).
FOCUS_DECADES_BELOW = 2.0
FOCUS_DECADES_ABOVE = 0.5
FOCUS_MIN_STEPS = 15  # a curve shorter than this is too coarse to read
# --auto-range: how far one retry moves an end of the range, and how many tries at most.
AUTO_RANGE_DECADES = 2.0
AUTO_RANGE_TRIES = 3

SweepRunner = Callable[[int, SweepSettings], RangeTestResult]
# Runs several repeats at once (stacked on one device): repeat numbers in, results in order,
# or None when it declines (the repeats then run one by one).
RepeatsRunner = Callable[[list[int], SweepSettings], list[RangeTestResult] | None]


@dataclass(frozen=True)
class Sweep:
    repeat: int  # 0 is the full sweep; 1.. the repeats
    result: RangeTestResult


@dataclass(frozen=True)
class SearchOutcome:
    sweeps: list[Sweep]
    recommendation: Recommendation | None
    notes: list[str]  # what the plan did beyond the single sweep (auto-range, skipped repeats)
    interrupted: bool = False  # stop_requested ended a sweep; the plan stopped there
    no_recommendation: list[str] = field(default_factory=list)  # why there is none, if none

    @property
    def main(self) -> RangeTestResult:
        return self.sweeps[0].result

    @property
    def steps_run(self) -> int:
        return sum(len(sweep.result.records) for sweep in self.sweeps)


def search(
    run_sweep: SweepRunner,
    settings: SweepSettings,
    search_settings: SearchSettings,
    method: str,
    run_repeats: RepeatsRunner | None = None,
) -> SearchOutcome:
    """Run the plan: the full sweep (retried by --auto-range), then the repeats, then their
    median. Without a usable full sweep the repeats are skipped, with a note saying so.
    `run_repeats`, when given, runs all the repeats in one go instead of `run_sweep` one by
    one (lrfind.engine.stacked); an interruption then stops all of them at the same step. When it
    returns None, the repeats run one by one after all."""
    notes: list[str] = []
    main = run_sweep(0, settings)
    if search_settings.auto_range and main.stop_reason != STOP_INTERRUPTED:
        main, settings = _auto_range(run_sweep, settings, main, notes)
    sweeps = [Sweep(0, main)]
    if main.stop_reason == STOP_INTERRUPTED:
        notes.append(
            f"Interrupted during the full sweep at step {len(main.records)}: the "
            "recommendation, if any, is read from the steps recorded and no repeats were run."
        )
        recommendation = interrupted_answer(main.analysis.recommendation)
        return SearchOutcome(sweeps, recommendation, notes, True, main.analysis.no_recommendation)
    if search_settings.repeats == 0:
        return _full_sweep_alone(sweeps, notes)

    focused = focus_range(main.analysis, settings) if search_settings.refine else settings
    if focused is None:
        notes.append(
            "The repeats were skipped: the full sweep holds no answer for them to confirm."
        )
        return _full_sweep_alone(sweeps, notes)
    sweeps += _repeats(run_sweep, run_repeats, search_settings.repeats, focused, notes)
    finished = finished_repeats(sweeps)
    interrupted = len(finished) < len(sweeps) - 1
    found = [sweep.result.analysis.recommendation for sweep in finished]
    recommendation, reasons = median_of_repeats(main.analysis, found, method)
    if interrupted:
        recommendation = interrupted_answer(recommendation)
    return SearchOutcome(sweeps, recommendation, notes, interrupted, reasons)


def finished_repeats(sweeps: list[Sweep]) -> list[Sweep]:
    """The repeats (not the full sweep) that stopped by themselves: those the median reads."""
    return [sweep for sweep in sweeps[1:] if sweep.result.stop_reason != STOP_INTERRUPTED]


def median_of_repeats(
    full: Analysis, repeats: list[Recommendation | None], method: str
) -> tuple[Recommendation | None, list[str]]:
    """The plan's answer and, when there is none, why: the median of the finished repeats'
    recommendations (base_lr from the full sweep), or the full sweep's own with no repeats."""
    if not repeats:
        return full.recommendation, full.no_recommendation
    return combine(repeats, method, full=full.recommendation), unconfirmed(repeats)


def recommendations_by_method(outcome: SearchOutcome) -> dict[str, Recommendation | None]:
    """What every suggestion method (lrfind.core.analysis.METHODS) recommends from the same
    sweeps, each combined as the plan combines its own: the full sweep and the finished
    repeats re-analysed by that method. The repeats' range does not depend on the method
    (it is set by where the full sweep diverged), so each method reads sweeps fit for it."""
    repeats = finished_repeats(outcome.sweeps)
    answers = {}
    for method in METHODS:
        found = [sweep.result.analysis_by(method).recommendation for sweep in repeats]
        answer, _ = median_of_repeats(outcome.main.analysis_by(method), found, method)
        answers[method] = interrupted_answer(answer) if outcome.interrupted else answer
    return answers


def _full_sweep_alone(sweeps: list[Sweep], notes: list[str]) -> SearchOutcome:
    """The plan's outcome when the full sweep's own reading stands (no repeats were run)."""
    analysis = sweeps[0].result.analysis
    return SearchOutcome(sweeps, analysis.recommendation, notes, False, analysis.no_recommendation)


def _repeats(
    run_sweep: SweepRunner,
    run_repeats: RepeatsRunner | None,
    count: int,
    focused: SweepSettings,
    notes: list[str],
) -> list[Sweep]:
    """The repeats, stacked when `run_repeats` takes them, else one by one; an interruption
    ends them (one by one: the rest are not started) with a note."""
    numbers = list(range(1, count + 1))
    results = run_repeats(numbers, focused) if run_repeats is not None else None
    if results is not None:
        sweeps = [Sweep(n, result) for n, result in zip(numbers, results, strict=True)]
        if any(sweep.result.stop_reason == STOP_INTERRUPTED for sweep in sweeps):
            notes.append(
                f"Interrupted during the {count} stacked repeats: the recommendation combines "
                "those that had stopped by themselves."
            )
        return sweeps
    sweeps = []
    for repeat in numbers:
        sweeps.append(Sweep(repeat, run_sweep(repeat, focused)))
        if sweeps[-1].result.stop_reason == STOP_INTERRUPTED:
            notes.append(
                f"Interrupted during repeat {repeat} of {count}: the recommendation combines "
                "the repeats that finished."
            )
            break
    return sweeps


def interrupted_answer(recommendation: Recommendation | None) -> Recommendation | None:
    """An interrupted plan's answer, marked: low confidence, and the reason first."""
    if recommendation is None:
        return None
    reasons = ["the run was interrupted: read from the steps recorded before the stop"]
    if recommendation.confidence != "high":  # a high one's reason says all was well
        reasons += recommendation.confidence_reasons
    return replace(recommendation, confidence="low", confidence_reasons=reasons)


def focus_range(analysis: Analysis, settings: SweepSettings) -> SweepSettings | None:
    """The range of the repeats: just below where the full sweep diverged, at its density.

    None when the full sweep has no usable descent, or diverged at once (its range is wrong,
    and the diagnostics say so).
    """
    if analysis.recommendation is None or analysis.usable_points < MIN_USABLE_POINTS:
        return None
    top = analysis.divergence_lr if analysis.divergence_lr is not None else settings.end_lr
    start_lr = max(settings.start_lr, top / 10**FOCUS_DECADES_BELOW)
    end_lr = top * 10**FOCUS_DECADES_ABOVE
    decades = math.log10(end_lr / start_lr)
    steps = max(FOCUS_MIN_STEPS, round(_steps_per_decade(settings) * decades) + 1)
    return replace(settings, start_lr=start_lr, end_lr=end_lr, steps=steps, mode="exp")


def _steps_per_decade(settings: SweepSettings) -> float:
    return (settings.steps - 1) / math.log10(settings.end_lr / settings.start_lr)


def _auto_range(
    run_sweep: SweepRunner, settings: SweepSettings, main: RangeTestResult, notes: list[str]
) -> tuple[RangeTestResult, SweepSettings]:
    """Rerun the full sweep while its range was wrong, at most AUTO_RANGE_TRIES times in all."""
    for _ in range(AUTO_RANGE_TRIES - 1):
        analysis = main.analysis
        factor = 10**AUTO_RANGE_DECADES
        if analysis.divergence_index is None:
            wider = replace(settings, end_lr=settings.end_lr * factor)
            notes.append(
                f"--auto-range: the loss never diverged up to {settings.end_lr:g}; "
                f"swept again up to {wider.end_lr:g}."
            )
        elif analysis.diverged_at_once or analysis.usable_points < MIN_USABLE_POINTS:
            wider = replace(settings, start_lr=settings.start_lr / factor)
            notes.append(
                f"--auto-range: the loss diverged almost at once from {settings.start_lr:g}; "
                f"swept again from {wider.start_lr:g}."
            )
        else:
            break
        steps = settings.steps + round(_steps_per_decade(settings) * AUTO_RANGE_DECADES)
        settings = replace(wider, steps=steps)
        main = run_sweep(0, settings)
    return main, settings
