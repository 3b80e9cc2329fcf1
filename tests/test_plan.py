"""The default plan: full sweep, focused repeats, their median, and --auto-range."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from lrfind import find_lr
from lrfind.core.analysis import DivergenceDetector, analyze, baseline_steps
from lrfind.core.plan import (
    FOCUS_DECADES_ABOVE,
    FOCUS_DECADES_BELOW,
    FOCUS_DECADES_UNDER_MINIMUM,
    MIN_REPEATS,
    search,
)
from lrfind.core.ramp import sweep_lrs
from lrfind.core.records import (
    STOP_COMPLETED,
    STOP_DIVERGED,
    STOP_INTERRUPTED,
    RangeTestResult,
    StepRecord,
)
from lrfind.core.settings import SearchSettings, SweepSettings
from tests.conftest import assert_same_state, snapshot, synthetic_loss, tiny_model, tiny_task


def steps_per_decade(settings: SweepSettings) -> float:
    return (settings.steps - 1) / math.log10(settings.end_lr / settings.start_lr)


def firing_step(losses: np.ndarray, settings: SweepSettings) -> int | None:
    """The step at which the engine stops: where the detector says so, which can be one
    after the divergence step it reports (a rise confirmed by a second raw loss)."""
    detector = DivergenceDetector(
        settings.smoothing, settings.divergence_factor, baseline_steps(settings.steps)
    )
    for step, loss in enumerate(losses):
        if detector.update(float(loss))[1]:
            return step
    return None


class SyntheticSweeps:
    """A stand-in for the engine: the synthetic loss of test_analysis at the planned rates,
    cut where the divergence rule fires, with a new noise draw for every repeat."""

    def __init__(self, descent_center: float = 1e-2, diverge_at: float | None = 1.0) -> None:
        self.descent_center = descent_center
        self.diverge_at = diverge_at
        self.calls: list[tuple[int, SweepSettings]] = []

    def __call__(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        self.calls.append((repeat, settings))
        lrs = np.array(sweep_lrs(settings.start_lr, settings.end_lr, settings.steps, "exp"))
        losses = synthetic_loss(lrs, self.descent_center, self.diverge_at, 0.01, seed=repeat)
        analysis = analyze(lrs, losses, method="bottom", planned_steps=settings.steps)
        stop = firing_step(losses, settings)
        if stop is not None:
            analysis = analyze(
                lrs[: stop + 1], losses[: stop + 1], method="bottom", planned_steps=settings.steps
            )
        records = [
            StepRecord(step, float(lr), float(loss), float(loss))
            for step, (lr, loss) in enumerate(zip(analysis.lrs, analysis.losses, strict=True))
        ]
        return RangeTestResult(
            records=records,
            stop_reason=STOP_COMPLETED if stop is None else STOP_DIVERGED,
            settings=settings,
            analysis=analysis,
            sweep_seconds=0.0,
        )


def test_repeats_reach_under_the_full_sweeps_loss_minimum() -> None:
    """A loss that bottoms out far below where it diverges: the repeats start 1.5 decades
    under the full sweep's minimum (a decade under its answer), not two decades under the
    divergence point, which would start them past the descent."""
    sweeps = SyntheticSweeps(descent_center=1e-5, diverge_at=1.0)
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=3), "bottom")
    full = outcome.main.analysis
    assert full.recommendation is not None and full.divergence_lr is not None
    minimum, divergence = float(full.lrs[full.min_index]), full.divergence_lr
    assert full.recommendation.max_lr < divergence / 10**FOCUS_DECADES_BELOW  # this case
    focused = sweeps.calls[1][1]
    assert focused.start_lr == pytest.approx(minimum / 10**FOCUS_DECADES_UNDER_MINIMUM)
    assert focused.start_lr < full.recommendation.max_lr / 10  # a decade under the answer
    assert focused.end_lr == pytest.approx(divergence * 10**FOCUS_DECADES_ABOVE)
    assert steps_per_decade(focused) == pytest.approx(99 / 8, rel=0.05)


def test_repeats_focus_below_the_divergence_point_at_the_same_density() -> None:
    sweeps = SyntheticSweeps()
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=3), "bottom")
    assert [repeat for repeat, _ in sweeps.calls] == [0, 1, 2, 3]
    divergence = outcome.main.analysis.divergence_lr
    assert divergence is not None
    focused = sweeps.calls[1][1]
    full = outcome.main.analysis
    minimum = float(full.lrs[full.min_index])
    expected = min(divergence / 10**FOCUS_DECADES_BELOW, minimum / 10**FOCUS_DECADES_UNDER_MINIMUM)
    assert focused.start_lr == pytest.approx(expected)
    assert focused.end_lr == pytest.approx(divergence * 10**FOCUS_DECADES_ABOVE)
    assert steps_per_decade(focused) == pytest.approx(99 / 8, rel=0.05)  # as 1e-7..10, 100
    assert all(settings == focused for _, settings in sweeps.calls[1:])


def test_the_recommendation_is_the_median_of_the_repeats_with_their_interval() -> None:
    """Repeats that agree pin their median at once: MIN_REPEATS of them, no more."""
    outcome = search(SyntheticSweeps(), SweepSettings(), SearchSettings(repeats=9), "bottom")
    suggestions = [
        sweep.result.analysis.recommendation.max_lr
        for sweep in outcome.sweeps[1:]
        if sweep.result.analysis.recommendation is not None
    ]
    recommendation = outcome.recommendation
    assert recommendation is not None and len(suggestions) == MIN_REPEATS
    assert recommendation.max_lr == pytest.approx(10 ** np.median(np.log10(suggestions)))
    assert recommendation.interval == (min(suggestions), max(suggestions))
    assert recommendation.repeats == MIN_REPEATS
    full = outcome.main.analysis.recommendation
    assert full is not None
    assert recommendation.base_lr == pytest.approx(min(full.base_lr, recommendation.max_lr / 4))
    assert outcome.steps_run == sum(len(sweep.result.records) for sweep in outcome.sweeps)
    assert not any("most allowed" in note for note in outcome.notes)


class ScriptedSweeps(SyntheticSweeps):
    """SyntheticSweeps whose repeat k suggests `max_lrs[k - 1]` (None: no answer)."""

    def __init__(self, max_lrs: list[float | None]) -> None:
        super().__init__()
        self.max_lrs = max_lrs

    def __call__(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        result = super().__call__(repeat, settings)
        if not repeat:
            return result
        given = self.max_lrs[repeat - 1]
        found = result.analysis.recommendation
        assert found is not None
        recommendation = None if given is None else replace(found, max_lr=given)
        return replace(result, analysis=replace(result.analysis, recommendation=recommendation))


def test_repeats_continue_until_the_middle_ones_agree() -> None:
    """0.1, 1.0 and 0.3 span a decade; two more near 0.3 put the middle three of five
    within 0.25 decades, so the plan stops at five and recommends their median."""
    sweeps = ScriptedSweeps([0.1, 1.0, 0.3, 0.32, 0.28, 0.3, 0.3])
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=9), "bottom")
    assert [sweep.repeat for sweep in outcome.sweeps] == [0, 1, 2, 3, 4, 5]
    recommendation = outcome.recommendation
    assert recommendation is not None and recommendation.repeats == 5
    assert recommendation.max_lr == pytest.approx(0.3)
    assert recommendation.interval == (0.28, 0.32)  # the middle three, not 0.1 to 1.0
    assert recommendation.suggestions == [0.1, 1.0, 0.3, 0.32, 0.28]
    assert recommendation.confidence == "high"


def test_repeats_stop_at_the_most_allowed_and_say_the_median_was_not_pinned() -> None:
    sweeps = ScriptedSweeps([0.01, 1.0, 0.1, 0.03, 0.3, 3.0, 0.003])
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=7), "bottom")
    assert len(outcome.sweeps) == 8
    (note,) = [note for note in outcome.notes if "most allowed" in note]
    assert "7 (--repeats)" in note and "middle 5 suggestions span 2.00 decades" in note
    recommendation = outcome.recommendation
    assert recommendation is not None and recommendation.max_lr == pytest.approx(0.1)
    assert recommendation.confidence != "high"
    assert any("middle 5 of their suggestions span" in r for r in recommendation.confidence_reasons)


def test_repeats_without_answers_are_made_up_by_more_repeats() -> None:
    """Two of the first three find nothing (no answer yet); four more repeats that agree
    give one, from four of seven."""
    sweeps = ScriptedSweeps([None, 0.2, None, 0.21, 0.19, 0.2, 0.2])
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=9), "bottom")
    assert outcome.recommendation is not None
    assert outcome.recommendation.repeats == 5  # 3 of 5 answered, the middle three agree
    assert outcome.recommendation.max_lr == pytest.approx(0.2)


def test_repeats_stop_once_too_few_could_answer() -> None:
    """After four of seven without an answer, three more cannot reach half: no more run."""
    sweeps = ScriptedSweeps([None, 0.2, None, None, None, 0.2, 0.2])
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=7), "bottom")
    assert len(outcome.sweeps) == 1 + 5
    assert outcome.recommendation is None
    assert any("only 1 of 5 repeated sweeps" in r for r in outcome.no_recommendation)


@pytest.mark.parametrize("most", [1, 2])
def test_fewer_repeats_than_the_minimum_run_as_many_as_asked(most: int) -> None:
    sweeps = ScriptedSweeps([0.1, 1.0])
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=most), "bottom")
    assert len(outcome.sweeps) == 1 + most
    assert not any("most allowed" in note for note in outcome.notes)


class SlowLearner(SyntheticSweeps):
    """A model that shows its descent only when the sweep has `needed` steps per decade or
    more; a faster sweep sees noise around a level until the loss blows up."""

    def __init__(self, needed: float) -> None:
        super().__init__()
        self.needed = needed

    def __call__(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        if steps_per_decade(settings) >= self.needed:
            return super().__call__(repeat, settings)
        self.calls.append((repeat, settings))
        lrs = np.array(sweep_lrs(settings.start_lr, settings.end_lr, settings.steps, "exp"))
        losses = synthetic_loss(lrs, 1e9, 1.0, 0.05, seed=repeat)  # flat, then diverges
        stop = firing_step(losses, settings)
        assert stop is not None
        lrs, losses = lrs[: stop + 1], losses[: stop + 1]
        analysis = analyze(lrs, losses, method="bottom", planned_steps=settings.steps)
        records = [StepRecord(i, float(a), float(b), float(b)) for i, (a, b) in
                   enumerate(zip(lrs, losses, strict=True))]  # fmt: skip
        return RangeTestResult(records, STOP_DIVERGED, settings, analysis, 0.0)


def test_a_sweep_that_diverges_before_learning_is_rerun_with_more_steps() -> None:
    sweeps = SlowLearner(needed=20.0)  # 100 steps over 8 decades: 12.4; 200: 24.9
    outcome = search(sweeps, SweepSettings(steps=100), SearchSettings(repeats=3), "bottom")
    full_steps = [settings.steps for repeat, settings in sweeps.calls if repeat == 0]
    assert full_steps == [100, 200]
    assert outcome.main.settings.steps == 200
    assert [sweep.result.settings.steps for sweep in outcome.set_aside] == [100]
    assert outcome.recommendation is not None
    (note,) = [note for note in outcome.notes if "clear descent" in note]
    assert "full sweep of 100 steps diverged" in note and "with 200 steps" in note
    focused = [settings for repeat, settings in sweeps.calls if repeat]
    assert steps_per_decade(focused[0]) == pytest.approx(199 / 8, rel=0.05)  # the new density


class SlowRepeats(SlowLearner):
    """The full sweep learns (it trains on the way up); the short repeats, from fresh
    weights, only at `needed` steps per decade or more."""

    def __call__(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        if not repeat:
            return SyntheticSweeps.__call__(self, repeat, settings)
        return super().__call__(repeat, settings)


def test_repeats_that_diverge_before_learning_are_set_aside_for_denser_ones() -> None:
    sweeps = SlowRepeats(needed=20.0)
    outcome = search(sweeps, SweepSettings(steps=100), SearchSettings(repeats=9), "bottom")
    assert [sweep.repeat for sweep in outcome.set_aside] == [1, 2, 3, 4]
    kept = outcome.sweeps[1:]
    assert [sweep.repeat for sweep in kept][:4] == [5, 6, 7, 8]  # new seeds
    first, denser = outcome.set_aside[0].result.settings, kept[0].result.settings
    assert denser.steps - 1 == 2 * (first.steps - 1)
    assert (denser.start_lr, denser.end_lr) == (first.start_lr, first.end_lr)
    assert outcome.recommendation is not None
    (note,) = [note for note in outcome.notes if "set aside" in note]
    assert note.startswith("4 of 4 repeats")
    set_aside_steps = sum(len(sweep.result.records) for sweep in outcome.set_aside)
    assert outcome.steps_trained == outcome.steps_run + set_aside_steps > outcome.steps_run
    assert len(outcome.set_aside) + len(kept) <= 9  # set-aside repeats count towards --repeats


class StarvedScripted(ScriptedSweeps):
    """ScriptedSweeps where "S" is a repeat that diverged before a clear descent."""

    def __call__(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        if repeat and self.max_lrs[repeat - 1] == "S":
            return SlowLearner(math.inf)(repeat, settings)
        return super().__call__(repeat, settings)


@pytest.mark.parametrize("most", [1, 2, 3, 4, 5])
def test_starved_repeats_with_no_room_left_are_kept_and_give_no_answer(most: int) -> None:
    """Setting them aside would leave too few to pin a median: they stay, as repeats
    without an answer, and the full sweep's reading is not passed off as the plan's."""
    sweeps = StarvedScripted(["S"] * 11)
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=most), "bottom")
    assert outcome.set_aside == [] and 1 + 1 <= len(outcome.sweeps) <= 1 + most
    assert outcome.main.analysis.recommendation is not None
    assert outcome.recommendation is None
    assert not any("set aside" in note for note in outcome.notes)


def test_a_set_aside_leaves_room_for_a_median_and_the_rest_decide() -> None:
    sweeps = StarvedScripted([0.2, 0.2, "S", "S", "S", 0.21, 0.19, "S", "S", "S", 0.2])
    # a budget that never binds: the set-aside rule is the point here (tests/test_budget.py)
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=11, budget=100), "bottom")
    assert [sweep.repeat for sweep in outcome.set_aside] == [1, 2, 3, 4, 5]  # once only
    assert [sweep.repeat for sweep in outcome.sweeps[1:]] == [6, 7, 8, 9, 10, 11]
    recommendation = outcome.recommendation
    assert recommendation is not None and recommendation.suggestions == [0.21, 0.19, 0.2]
    assert recommendation.repeats == 6 and recommendation.confidence != "high"
    assert "3 of 6 sweeps gave no suggestion" in recommendation.confidence_reasons
    assert not any("most allowed" in note for note in outcome.notes)  # pinned at the last


def test_the_unpinned_note_says_when_too_few_answered() -> None:
    sweeps = ScriptedSweeps([None, None, 0.2, 0.2])
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=4), "bottom")
    (note,) = [note for note in outcome.notes if "most allowed" in note]
    assert "only 2 of the 4 kept gave a suggestion, and a median needs three" in note
    assert "decades" not in note


def test_the_unpinned_note_comes_from_three_repeats_up() -> None:
    sweeps = ScriptedSweeps([0.01, 0.1, 1.0])
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=3), "bottom")
    assert any("most allowed, 3" in note for note in outcome.notes)


def test_one_repeat_does_not_claim_that_the_sweeps_agree() -> None:
    outcome = search(ScriptedSweeps([0.2]), SweepSettings(), SearchSettings(repeats=1), "bottom")
    assert outcome.recommendation is not None
    assert not any("agree" in r for r in outcome.recommendation.confidence_reasons)


def test_a_denser_full_sweep_never_asks_for_more_steps_than_allowed() -> None:
    sweeps = SlowLearner(needed=math.inf)
    settings = SweepSettings(steps=600_000, start_lr=1e-7, end_lr=10.0)
    outcome = search(sweeps, settings, SearchSettings(repeats=0), "bottom")  # 1.2e6: too many
    assert [call.steps for _, call in sweeps.calls] == [600_000]
    assert outcome.recommendation is None


def test_a_declined_stacked_round_is_not_asked_again() -> None:
    sweeps = ScriptedSweeps([0.01, 1.0, 0.1, 0.03, 0.3, 3.0, 0.003])
    asked: list[list[int]] = []

    def run_repeats(repeats: list[int], settings: SweepSettings) -> None:
        asked.append(repeats)
        return None

    search(sweeps, SweepSettings(), SearchSettings(repeats=6), "bottom", run_repeats)
    assert asked == [[1, 2, 3, 4]]
    assert [repeat for repeat, _ in sweeps.calls] == [0, 1, 2, 3, 4, 5, 6]


def test_an_interruption_before_any_repeat_finished_says_whose_reading_it_is() -> None:
    sweeps = SyntheticSweeps()

    def run_sweep(repeat: int, settings: SweepSettings) -> RangeTestResult:
        result = sweeps(repeat, settings)
        return replace(result, stop_reason=STOP_INTERRUPTED) if repeat == 1 else result

    outcome = search(run_sweep, SweepSettings(), SearchSettings(repeats=5), "bottom")
    (note,) = [note for note in outcome.notes if "Interrupted" in note]
    assert "before any repeat had finished" in note and "full sweep's own reading" in note


def test_the_set_aside_steps_are_in_the_result_document() -> None:
    from lrfind.outputs.documents import search_blocks

    outcome = search(SlowRepeats(needed=20.0), SweepSettings(), SearchSettings(repeats=9), "bottom")
    blocks = search_blocks(outcome, seed=0)
    assert blocks["steps_total"] == outcome.steps_run
    assert blocks["steps_set_aside"] == outcome.steps_trained - outcome.steps_run > 0


class FlatRepeats(SyntheticSweeps):
    """The full sweep learns and diverges; the repeats, at the full sweep's density, see
    only noise and never diverge within their range (Adam at batch 16 did so)."""

    def __call__(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        if repeat and steps_per_decade(settings) < 20.0:
            return SyntheticSweeps(descent_center=1e9, diverge_at=None)(repeat, settings)
        return super().__call__(repeat, settings)


def test_repeats_without_a_descent_are_set_aside_whether_or_not_they_diverged() -> None:
    outcome = search(FlatRepeats(), SweepSettings(), SearchSettings(repeats=9), "bottom")
    assert [sweep.repeat for sweep in outcome.set_aside] == [1, 2, 3, 4]
    assert all(s.result.stop_reason == STOP_COMPLETED for s in outcome.set_aside)
    assert outcome.recommendation is not None
    assert any(note.startswith("4 of 4 repeats") for note in outcome.notes)


def test_the_denser_reruns_are_bounded() -> None:
    sweeps = SlowLearner(needed=math.inf)
    outcome = search(sweeps, SweepSettings(steps=100), SearchSettings(repeats=3), "bottom")
    assert [settings.steps for _, settings in sweeps.calls] == [100, 200, 400]
    assert outcome.recommendation is None
    assert any("no clear descent" in reason for reason in outcome.no_recommendation)


def test_a_flat_curve_that_never_diverges_is_not_rerun() -> None:
    """No divergence: the range, not the density, is what is wrong (--auto-range's job)."""
    sweeps = SyntheticSweeps(descent_center=1e9, diverge_at=None)
    search(sweeps, SweepSettings(steps=60), SearchSettings(repeats=3), "bottom")
    assert len(sweeps.calls) == 1


def test_repeats_that_mostly_find_no_descent_leave_no_recommendation() -> None:
    """The full sweep reads a number, but 3 of 4 repeats see only noise: not reproduced."""
    clear = SyntheticSweeps()

    def sweeps(repeat: int, settings: SweepSettings) -> RangeTestResult:
        if repeat in (0, 3):
            return clear(repeat, settings)
        flat = SyntheticSweeps(descent_center=1e9, diverge_at=None)
        return flat(repeat, settings)

    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=5), "bottom")
    assert outcome.main.analysis.recommendation is not None
    assert outcome.recommendation is None
    assert len(outcome.sweeps) == 1 + 4  # a fifth answer could not make two of five
    assert any("only 1 of 4 repeated sweeps" in reason for reason in outcome.no_recommendation)


def test_repeats_run_together_give_the_same_outcome_as_one_by_one() -> None:
    """run_repeats gets every repeat number and the focused range in one call."""
    one_by_one = search(SyntheticSweeps(), SweepSettings(), SearchSettings(repeats=4), "bottom")
    sweeps = SyntheticSweeps()
    batches: list[list[int]] = []

    def run_repeats(repeats: list[int], settings: SweepSettings) -> list[RangeTestResult]:
        batches.append(repeats)
        return [sweeps(repeat, settings) for repeat in repeats]

    together = search(sweeps, SweepSettings(), SearchSettings(repeats=4), "bottom", run_repeats)
    assert batches == [[1, 2, 3, 4]]  # they agreed: the median was pinned by the first round
    assert together.recommendation == one_by_one.recommendation
    assert [sweep.repeat for sweep in together.sweeps] == [0, 1, 2, 3, 4]


def test_later_rounds_of_repeats_run_together_too() -> None:
    sweeps = ScriptedSweeps([0.01, 1.0, 0.1, 0.03, 0.3, 3.0, 0.003])
    batches: list[list[int]] = []

    def run_repeats(repeats: list[int], settings: SweepSettings) -> list[RangeTestResult]:
        batches.append(repeats)
        return [sweeps(repeat, settings) for repeat in repeats]

    search(sweeps, SweepSettings(), SearchSettings(repeats=6), "bottom", run_repeats)
    assert batches == [[1, 2, 3, 4], [5], [6]]


def test_repeats_run_one_by_one_when_the_joint_runner_declines() -> None:
    sweeps = SyntheticSweeps()
    outcome = search(
        sweeps, SweepSettings(), SearchSettings(repeats=2), "bottom", lambda numbers, _: None
    )
    assert [repeat for repeat, _ in sweeps.calls] == [0, 1, 2]
    assert [sweep.repeat for sweep in outcome.sweeps] == [0, 1, 2]


def test_repeats_run_together_and_interrupted_combine_only_those_that_stopped_alone() -> None:
    sweeps = SyntheticSweeps()

    def run_repeats(repeats: list[int], settings: SweepSettings) -> list[RangeTestResult]:
        results = [sweeps(repeat, settings) for repeat in repeats]
        return [results[0]] + [
            replace(result, stop_reason=STOP_INTERRUPTED) for result in results[1:]
        ]

    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=3), "bottom", run_repeats)
    assert outcome.interrupted
    assert outcome.recommendation is not None and outcome.recommendation.repeats == 1
    assert any("Interrupted during repeat 2 (of at most 3)" in note for note in outcome.notes)


def test_no_repeats_is_the_single_sweep() -> None:
    sweeps = SyntheticSweeps()
    outcome = search(sweeps, SweepSettings(), SearchSettings(repeats=0), "bottom")
    assert len(sweeps.calls) == 1
    assert outcome.recommendation == outcome.main.analysis.recommendation


def test_without_refine_the_repeats_sweep_the_full_range() -> None:
    sweeps = SyntheticSweeps()
    search(sweeps, SweepSettings(steps=50), SearchSettings(repeats=2, refine=False), "bottom")
    assert [settings for _, settings in sweeps.calls] == [SweepSettings(steps=50)] * 3


def test_repeats_are_skipped_with_a_note_when_the_full_sweep_has_no_descent() -> None:
    sweeps = SyntheticSweeps(descent_center=1e3, diverge_at=None)  # flat over the whole range
    outcome = search(sweeps, SweepSettings(end_lr=1e-3), SearchSettings(repeats=3), "bottom")
    assert len(sweeps.calls) == 1
    assert any("repeats were skipped" in note for note in outcome.notes)


def test_auto_range_raises_end_lr_until_the_loss_diverges() -> None:
    sweeps = SyntheticSweeps(descent_center=1e-4, diverge_at=1.0)
    settings = SweepSettings(start_lr=1e-7, end_lr=1e-2, steps=60)
    outcome = search(sweeps, settings, SearchSettings(repeats=0, auto_range=True), "bottom")
    ends = [call.end_lr for _, call in sweeps.calls]
    assert ends == pytest.approx([1e-2, 1.0, 100.0])
    assert outcome.main.analysis.divergence_index is not None
    assert sum("never diverged" in note for note in outcome.notes) == 2
    first, last = sweeps.calls[0][1], sweeps.calls[-1][1]
    assert steps_per_decade(last) == pytest.approx(steps_per_decade(first), rel=0.05)


def test_auto_range_lowers_start_lr_when_the_loss_diverges_at_once() -> None:
    sweeps = SyntheticSweeps(descent_center=1e-4, diverge_at=1e-2)
    settings = SweepSettings(start_lr=1e-1, end_lr=10.0, steps=40)
    outcome = search(sweeps, settings, SearchSettings(repeats=0, auto_range=True), "bottom")
    assert [call.start_lr for _, call in sweeps.calls] == pytest.approx([1e-1, 1e-3])
    assert any("diverged almost at once" in note for note in outcome.notes)
    assert outcome.recommendation is not None
    assert outcome.recommendation.max_lr < 1e-2


def test_auto_range_gives_up_after_a_bounded_number_of_tries() -> None:
    sweeps = SyntheticSweeps(descent_center=1e-12, diverge_at=1e-10)
    settings = SweepSettings(start_lr=1e-2, end_lr=10.0, steps=40)
    search(sweeps, settings, SearchSettings(repeats=0, auto_range=True), "bottom")
    assert [call.start_lr for _, call in sweeps.calls] == pytest.approx([1e-2, 1e-4, 1e-6])


def test_auto_range_is_off_by_default() -> None:
    sweeps = SyntheticSweeps(diverge_at=None)
    search(sweeps, SweepSettings(end_lr=1e-1), SearchSettings(repeats=0), "bottom")
    assert len(sweeps.calls) == 1


def test_find_lr_runs_the_plan_on_the_callers_objects_and_restores_them() -> None:
    model = tiny_model(dropout=0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = snapshot(model)
    outcome = find_lr(model, optimizer, nn.functional.cross_entropy, tiny_task(), repeats=2,
                      start_lr=1e-4, end_lr=1e3, steps=60)  # fmt: skip
    assert len(outcome.sweeps) == 3
    assert outcome.sweeps[0].result.settings.steps == 60
    assert outcome.sweeps[1].result.settings.start_lr > 1e-4
    assert outcome.recommendation is not None
    assert_same_state(before, snapshot(model))
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_repeats_out_of_range_are_refused() -> None:
    from lrfind.errors import ConfigError

    with pytest.raises(ConfigError, match="repeats must be between 0 and 100; got -1"):
        SearchSettings(repeats=-1)
