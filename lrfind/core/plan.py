"""Which sweeps one recommendation needs: a full sweep, then short focused repeats.

    from lrfind.core.plan import search
    outcome = search(run_sweep, SweepSettings(), SearchSettings(repeats=3), method="bottom")

One sweep over eight decades spends most of its steps where nothing happens, and what it
suggests moves by a quarter of a decade or more with the batches it happened to draw. The
default plan therefore runs the full sweep once (to find where the loss diverges, to diagnose
the range and to draw the curve), then short sweeps with other seeds over the decades just
below that point, at the same steps per decade, until the median of their suggestions is
pinned (at most `repeats` of them), and recommends that median with the interval of the
middle suggestions. `refine=False` repeats full sweeps instead. `run_sweep(repeat,
settings)` does the work, so the caller decides what a repeat varies (the CLI: weight
initialisation and data order; the API: data order).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from lrfind.core.analysis import (
    AGREEMENT_DECADES,
    METHODS,
    SPLIT_DECADES,
    Analysis,
    Recommendation,
    combine,
    learned_too_little,
    median_pinned,
    middle_suggestions,
    unconfirmed,
)
from lrfind.core.horizon import Horizon, scaled
from lrfind.core.records import STOP_COMPLETED, STOP_INTERRUPTED, RangeTestResult
from lrfind.core.settings import MAX_STEPS, MIN_USABLE_POINTS, SearchSettings, SweepSettings

# The focused sweeps cover this many decades below the full sweep's divergence point and
# this many above it (a short sweep from a fresh model diverges somewhat later), and reach
# at least FOCUS_DECADES_UNDER_MINIMUM below the rate of the full sweep's loss minimum (a
# decade under the bottom rule's answer, a third of that rate), so that they see the descent
# also where the loss rises slowly for long before it diverges. Both are the same for every
# suggestion method, so each method can read the same repeats.
FOCUS_DECADES_BELOW = 2.0
FOCUS_DECADES_ABOVE = 0.5
FOCUS_DECADES_UNDER_MINIMUM = 1.5
FOCUS_MIN_STEPS = 15  # a curve shorter than this is too coarse to read
# --auto-range: how far one retry moves an end of the range, and how many tries at most.
AUTO_RANGE_DECADES = 2.0
AUTO_RANGE_TRIES = 3
# A full sweep that diverges before its loss clearly falls is rerun with this many times the
# steps, at most this many times (so up to 4x the steps).
DENSER_FACTOR = 2
DENSER_TRIES = 2
# The repeats: at least MIN_REPEATS, then one more at a time until the median is pinned
# (lrfind.core.analysis.median_pinned), at most --repeats. Four, not three, so that three
# agreeing by chance cannot pin a median near the cliff (docs/quality.md).
MIN_REPEATS = 4

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
    # Sweeps replaced by others (a note says why each time): full sweeps rerun by
    # --auto-range or with more steps, repeats too fast to learn from. Not in `sweeps`, so
    # not in the files, but part of the cost.
    set_aside: list[Sweep] = field(default_factory=list)
    # How the answer was scaled for the training run (lrfind.core.horizon); None: as read.
    horizon: dict[str, object] | None = None

    @property
    def main(self) -> RangeTestResult:
        return self.sweeps[0].result

    @property
    def steps_run(self) -> int:
        """The steps of the sweeps kept (those in sweep.csv)."""
        return sum(len(sweep.result.records) for sweep in self.sweeps)

    @property
    def steps_trained(self) -> int:
        """Every step the plan trained, the set-aside repeats' included: its cost."""
        return self.steps_run + sum(len(sweep.result.records) for sweep in self.set_aside)


def search(
    run_sweep: SweepRunner,
    settings: SweepSettings,
    search_settings: SearchSettings,
    method: str,
    run_repeats: RepeatsRunner | None = None,
    horizon: Horizon | None = None,
) -> SearchOutcome:
    """Run the plan: the full sweep (retried by --auto-range), then the repeats, then their
    median. Without a usable full sweep the repeats are skipped, with a note saying so.
    `run_repeats`, when given, runs all the repeats in one go instead of `run_sweep` one by
    one (lrfind.engine.stacked); an interruption then stops all of them at the same step. When it
    returns None, the repeats run one by one after all. `horizon` scales the answer for the
    training run it is for (lrfind.core.horizon)."""
    outcome = _search(run_sweep, settings, search_settings, method, run_repeats)
    if horizon is None:
        return outcome
    described = horizon.described(reading_steps(outcome))
    recommendation = outcome.recommendation
    return replace(
        outcome,
        recommendation=None if recommendation is None else scaled(recommendation, described),
        horizon=described,
    )


def reading_steps(outcome: SearchOutcome) -> list[int]:
    """The step (counted from each sweep's first) of every answering sweep's loss minimum:
    the finished repeats', or the full sweep's when they gave none."""
    for sweeps in (outcome.sweeps[1:], outcome.sweeps[:1]):
        steps = [
            sweep.result.analysis.min_index + 1
            for sweep in sweeps
            if sweep.result.analysis.recommendation is not None
        ]
        if steps:
            return steps
    return []


def _search(
    run_sweep: SweepRunner,
    settings: SweepSettings,
    search_settings: SearchSettings,
    method: str,
    run_repeats: RepeatsRunner | None,
) -> SearchOutcome:
    notes: list[str] = []
    set_aside: list[Sweep] = []
    main = run_sweep(0, settings)
    if search_settings.auto_range and main.stop_reason != STOP_INTERRUPTED:
        main, settings = _auto_range(run_sweep, settings, main, notes, set_aside)
    if main.stop_reason != STOP_INTERRUPTED:
        main, settings = _denser(run_sweep, settings, main, notes, set_aside)
    sweeps = [Sweep(0, main)]
    if main.stop_reason == STOP_INTERRUPTED:
        notes.append(
            f"Interrupted during the full sweep at step {len(main.records)}: the "
            "recommendation, if any, is read from the steps recorded and no repeats were run."
        )
        recommendation, reasons, _ = answer_of_sweeps(main.analysis, [], method, STOP_INTERRUPTED)
        return SearchOutcome(sweeps, recommendation, notes, True, reasons, set_aside)
    if search_settings.repeats == 0:
        return _full_sweep_alone(sweeps, notes, set_aside)

    focused = focus_range(main.analysis, settings) if search_settings.refine else settings
    if focused is None:
        notes.append(
            "The repeats were skipped: the full sweep holds no answer for them to confirm."
        )
        return _full_sweep_alone(sweeps, notes, set_aside)
    budget = math.floor(search_settings.budget * settings.steps)  # the full sweep kept
    spent = len(main.records) + sum(len(sweep.result.records) for sweep in set_aside)
    sweeps += _repeats(
        run_sweep,
        run_repeats,
        Allowance(search_settings.repeats, budget, budget - spent, search_settings.budget),
        focused,
        notes,
        set_aside,
    )
    repeats = [(sweep.result.analysis, sweep.result.stop_reason) for sweep in sweeps[1:]]
    recommendation, reasons, interrupted = answer_of_sweeps(main.analysis, repeats, method)
    return SearchOutcome(sweeps, recommendation, notes, interrupted, reasons, set_aside)


def answer_of_sweeps(
    full: Analysis,
    repeats: Sequence[tuple[Analysis, str]],
    method: str,
    full_stop_reason: str = STOP_COMPLETED,
) -> tuple[Recommendation | None, list[str], bool]:
    """The plan's one rule for an answer from its sweeps, for `lrfind run`, `lrfind analyze`
    and the API alike: the median of the repeats that stopped by themselves (base_lr from
    the full sweep), or the full sweep's own reading without repeats; an interrupted plan's
    answer has low confidence. `repeats` are each repeat's analysis and stop
    reason. Returns the recommendation, why there is none, and whether a sweep was cut."""
    if full_stop_reason == STOP_INTERRUPTED:
        return interrupted_answer(full.recommendation), full.no_recommendation, True
    found = [analysis.recommendation for analysis, stop in repeats if stop != STOP_INTERRUPTED]
    interrupted = len(found) < len(repeats)
    if found:
        recommendation = combine(found, method, full=full.recommendation)
        reasons = unconfirmed(found)
    elif interrupted:  # every repeat was cut: none finished to confirm the full sweep
        recommendation, reasons = full.recommendation, full.no_recommendation
    else:
        return full.recommendation, full.no_recommendation, False
    if interrupted:
        recommendation = interrupted_answer(recommendation)
    return recommendation, reasons, interrupted


def recommendations_by_method(outcome: SearchOutcome) -> dict[str, Recommendation | None]:
    """What every suggestion method (lrfind.core.analysis.METHODS) recommends from the same
    sweeps, each combined as the plan combines its own: the full sweep and the finished
    repeats re-analysed by that method. The repeats' range does not depend on the method
    (it is set by where the full sweep diverged and where its loss was lowest), so each
    method reads sweeps fit for it. How many repeats ran was decided by the plan's method."""
    answers = {}
    for method in METHODS:
        repeats = [
            (sweep.result.analysis_by(method), sweep.result.stop_reason)
            for sweep in outcome.sweeps[1:]
        ]
        answer, _, _ = answer_of_sweeps(
            outcome.main.analysis_by(method), repeats, method, outcome.main.stop_reason
        )
        if answer is not None and outcome.horizon is not None:
            answer = scaled(answer, outcome.horizon)
        answers[method] = answer
    return answers


def _full_sweep_alone(
    sweeps: list[Sweep], notes: list[str], set_aside: list[Sweep]
) -> SearchOutcome:
    """The plan's outcome when the full sweep's own reading stands (no repeats were run)."""
    analysis = sweeps[0].result.analysis
    return SearchOutcome(
        sweeps, analysis.recommendation, notes, False, analysis.no_recommendation, set_aside
    )


@dataclass
class Allowance:
    """What the repeats may still spend: `most` repeats (--repeats) and `steps_left` of the
    plan's `budget_steps` (--budget, `budget_sweeps` full sweeps)."""

    most: int
    budget_steps: int
    steps_left: int
    budget_sweeps: float

    def affordable(self, wanted: int, steps: int) -> int:
        """How many of `wanted` repeats of `steps` planned steps the budget still pays for."""
        return max(0, min(wanted, self.steps_left // steps))


def _repeats(
    run_sweep: SweepRunner,
    run_repeats: RepeatsRunner | None,
    allowance: Allowance,
    focused: SweepSettings,
    notes: list[str],
    set_aside: list[Sweep],
) -> list[Sweep]:
    """Repeats until their median is pinned (`median_pinned`), they split into two answers
    (`split_answers`: more repeats would not pin a median, they would only pick a side), `most`
    have run or the step budget cannot pay for another: first MIN_REPEATS (stacked when
    `run_repeats` takes them, else one by one), then one at a time.
    When most of the repeats so far ended without a clear descent (`learned_too_little`: a
    short sweep from fresh weights sees few batches), they go to `set_aside` and the repeats
    start again at DENSER_FACTOR times the density, at most DENSER_TRIES times; set-aside
    repeats count towards `most`, which bounds the cost.
    They also stop once fewer than half of `most` could answer even if all the rest did
    (there will be no recommendation). An interruption ends them (the rest are not started)
    with a note; stopping at `most` unpinned gets a note too."""
    most = allowance.most
    sweeps: list[Sweep] = []
    denser_tries, spent = 0, 0  # spent: repeats set aside, which count towards `most`
    while spent + len(sweeps) < most:
        wanted = min(MIN_REPEATS if not sweeps else 1, most - spent - len(sweeps))
        size = allowance.affordable(wanted, focused.steps)
        if not size:
            notes.append(_budget_note(allowance, len(sweeps)))
            return sweeps
        first = spent + len(sweeps) + 1  # a set-aside repeat's seed is not reused
        numbers = list(range(first, first + size))
        round_sweeps, stacked = _repeat_round(run_sweep, run_repeats, numbers, focused)
        allowance.steps_left -= sum(len(sweep.result.records) for sweep in round_sweeps)
        sweeps += round_sweeps
        run_repeats = run_repeats if stacked else None  # declined once: one by one from now
        stopped = [sweep.repeat for sweep in sweeps if sweep.result.stop_reason == STOP_INTERRUPTED]
        if stopped:
            notes.append(_interrupted_note(stopped[0], most, len(sweeps) - len(stopped)))
            return sweeps
        starved = sum(
            learned_too_little(sweep.result.analysis, range_known=True) for sweep in sweeps
        )
        if (
            2 * starved > len(sweeps)
            and denser_tries < DENSER_TRIES
            and most - spent - len(sweeps) >= MIN_REPEATS  # room left to pin a median
            and (focused.steps - 1) * DENSER_FACTOR + 1 <= MAX_STEPS
            and allowance.affordable(MIN_REPEATS, (focused.steps - 1) * DENSER_FACTOR + 1) >= 3
        ):
            denser = replace(focused, steps=(focused.steps - 1) * DENSER_FACTOR + 1)
            notes.append(
                f"{starved} of {len(sweeps)} repeats ({focused.steps} steps) ended before their "
                "loss showed a clear descent: too few batches to learn from or "
                "to tell the descent from the noise; they were set aside and the repeats run "
                f"again with {denser.steps} steps."
            )
            set_aside += sweeps
            spent += len(sweeps)
            sweeps, focused = [], denser
            denser_tries += 1
            continue
        found = [sweep.result.analysis.recommendation for sweep in sweeps]
        if median_pinned(found):
            return sweeps
        modes = split_answers([item.max_lr for item in found if item is not None])
        if modes is not None:
            notes.append(_split_note(*modes))
            return sweeps
        answered = sum(item is not None for item in found)
        left = most - spent - len(sweeps)
        if 2 * (answered + left) < len(sweeps) + left:
            return sweeps  # `unconfirmed` will say why there is no answer
    if most >= 3:  # fewer could never be pinned: the disagreement reason says enough
        notes.append(_unpinned_note(sweeps, most))
    return sweeps


def split_answers(suggestions: Sequence[float]) -> tuple[list[float], list[float]] | None:
    """The two groups the suggestions fall into when at least two lie on each side of a gap
    of SPLIT_DECADES or more (a curve with two answers, the seed picking one), else None."""
    ordered = sorted(suggestions)
    if len(ordered) < 4:
        return None
    gaps = [math.log10(high / low) for low, high in itertools.pairwise(ordered)]
    cut = max(range(len(gaps)), key=gaps.__getitem__) + 1
    if gaps[cut - 1] < SPLIT_DECADES or min(cut, len(ordered) - cut) < 2:
        return None
    return ordered[:cut], ordered[cut:]


def _split_note(low: list[float], high: list[float]) -> str:
    def centre(group: list[float]) -> float:
        return float(10 ** (sum(math.log10(value) for value in group) / len(group)))

    count = len(low) + len(high)
    return (
        f"The repeats split into two answers at least {SPLIT_DECADES:g} decade apart, so they "
        f"stopped early (more would only pick a side): about {centre(low):.3g} "
        f"({len(low)} of {count}) and about {centre(high):.3g} ({len(high)} of {count}). The "
        "curve has two places the loss bottoms out and the seed decides which one a sweep "
        "reads; a larger --batch-size (less noise between batches) or a held-out loss "
        "(--val-batches, whose curve shows which rate generalises) would tell them apart."
    )


def _budget_note(allowance: Allowance, finished: int) -> str:
    return (
        f"The repeats stopped after {finished}: the plan's budget of "
        f"{allowance.budget_steps} training steps ({allowance.budget_sweeps:g} full sweeps, "
        f"--budget) could not pay for another ({allowance.steps_left} left). A larger --budget "
        "buys more repeats."
    )


def _unpinned_note(sweeps: list[Sweep], most: int) -> str:
    """Why the repeats stopped at `most` without a pinned median."""
    found = [s.result.analysis.recommendation for s in sweeps]
    suggestions = [item.max_lr for item in found if item is not None]
    start = (
        f"The repeats stopped at the most allowed, {most} (--repeats), before their median "
        "was pinned: "
    )
    if len(suggestions) < 3:
        return start + (
            f"only {len(suggestions)} of the {len(sweeps)} kept gave a suggestion, and a median "
            "needs three."
        )
    middle = middle_suggestions(suggestions)
    return start + (
        f"the middle {len(middle)} suggestions span "
        f"{math.log10(middle[-1] / middle[0]):.2f} decades, more than {AGREEMENT_DECADES:g}."
    )


def _interrupted_note(repeat: int, most: int, finished: int) -> str:
    if not finished:
        return (
            f"Interrupted during repeat {repeat} (of at most {most}) before any repeat had "
            "finished: the recommendation, if any, is the full sweep's own reading."
        )
    return (
        f"Interrupted during repeat {repeat} (of at most {most}): the recommendation combines "
        f"the {finished} repeats that had stopped by themselves."
    )


def _repeat_round(
    run_sweep: SweepRunner,
    run_repeats: RepeatsRunner | None,
    numbers: list[int],
    focused: SweepSettings,
) -> tuple[list[Sweep], bool]:
    """One round of repeats, and whether it ran stacked: stacked when `run_repeats` takes
    them, else one by one, up to the first that was interrupted."""
    results = run_repeats(numbers, focused) if run_repeats is not None else None
    if results is not None:
        return [Sweep(n, result) for n, result in zip(numbers, results, strict=True)], True
    sweeps = []
    for repeat in numbers:
        sweeps.append(Sweep(repeat, run_sweep(repeat, focused)))
        if sweeps[-1].result.stop_reason == STOP_INTERRUPTED:
            break
    return sweeps, False


def interrupted_answer(recommendation: Recommendation | None) -> Recommendation | None:
    """An interrupted plan's answer, marked: low confidence, and the reason first."""
    if recommendation is None:
        return None
    reasons = ["the run was interrupted: read from the steps recorded before the stop"]
    if recommendation.confidence != "high":  # a high one's reason says all was well
        reasons += recommendation.confidence_reasons
    return replace(recommendation, confidence="low", confidence_reasons=reasons)


def focus_range(analysis: Analysis, settings: SweepSettings) -> SweepSettings | None:
    """The range of the repeats: just below where the full sweep diverged, and down to 1.5
    decades under its loss minimum, at its density.

    None when the full sweep has no usable descent, or diverged at once (its range is wrong,
    and the diagnostics say so).
    """
    if analysis.recommendation is None or analysis.usable_points < MIN_USABLE_POINTS:
        return None
    minimum = float(analysis.lrs[analysis.min_index])
    top = analysis.divergence_lr if analysis.divergence_lr is not None else settings.end_lr
    below = min(top / 10**FOCUS_DECADES_BELOW, minimum / 10**FOCUS_DECADES_UNDER_MINIMUM)
    start_lr = max(settings.start_lr, below)
    end_lr = top * 10**FOCUS_DECADES_ABOVE
    decades = math.log10(end_lr / start_lr)
    steps = max(FOCUS_MIN_STEPS, round(_steps_per_decade(settings) * decades) + 1)
    return replace(settings, start_lr=start_lr, end_lr=end_lr, steps=steps, mode="exp")


def _steps_per_decade(settings: SweepSettings) -> float:
    return (settings.steps - 1) / math.log10(settings.end_lr / settings.start_lr)


def _denser(
    run_sweep: SweepRunner,
    settings: SweepSettings,
    main: RangeTestResult,
    notes: list[str],
    set_aside: list[Sweep],
) -> tuple[RangeTestResult, SweepSettings]:
    """Rerun the full sweep with DENSER_FACTOR times the steps, at most DENSER_TRIES times,
    while it diverged before showing a clear descent (`learned_too_little`): the model saw
    too few batches at each rate to learn (small batches, a slow start), and more steps
    per decade give it more of them. The repeats then sweep at the new density too."""
    for _ in range(DENSER_TRIES):
        analysis = main.analysis
        if not learned_too_little(analysis) or main.stop_reason == STOP_INTERRUPTED:
            break
        if settings.steps * DENSER_FACTOR > MAX_STEPS:
            break
        denser = replace(settings, steps=settings.steps * DENSER_FACTOR)
        notes.append(
            f"The full sweep of {settings.steps} steps diverged at lr "
            f"{analysis.divergence_lr:.3g} before its loss showed a clear descent: too few "
            "batches per decade to learn from or to tell the descent from the noise; swept "
            f"again with {denser.steps} steps."
        )
        settings = denser
        set_aside.append(Sweep(0, main))
        main = run_sweep(0, settings)
    return main, settings


def _auto_range(
    run_sweep: SweepRunner,
    settings: SweepSettings,
    main: RangeTestResult,
    notes: list[str],
    set_aside: list[Sweep],
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
        set_aside.append(Sweep(0, main))
        main = run_sweep(0, settings)
    return main, settings
