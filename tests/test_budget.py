"""The cost of a trusted answer: the plan keeps a step budget, stops early when the repeats
split into two answers, and never calls an answer known only to within half a decade better than
low."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from lrfind.cli import app
from lrfind.core.analysis import WIDE_DECADES, analyze, combine
from lrfind.core.plan import SPLIT_DECADES, search, split_answers
from lrfind.core.ramp import sweep_lrs
from lrfind.core.records import STOP_COMPLETED, STOP_DIVERGED, RangeTestResult, StepRecord
from lrfind.core.settings import SearchSettings, SweepSettings
from lrfind.errors import ConfigError
from tests.conftest import synthetic_loss


class Curves:
    """A stand-in for the engine: repeat k's curve descends at `centres[k % len]` and diverges
    at `divergences[k % len]` (the full sweep, repeat 0, takes the first of each)."""

    def __init__(self, centres: list[float], divergences: list[float]) -> None:
        self.centres, self.divergences = centres, divergences
        self.steps_trained = 0

    def __call__(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        pick = repeat % len(self.centres)
        lrs = np.array(sweep_lrs(settings.start_lr, settings.end_lr, settings.steps, "exp"))
        losses = synthetic_loss(lrs, self.centres[pick], self.divergences[pick], 0.01, repeat)
        analysis = analyze(lrs, losses, method="bottom", planned_steps=settings.steps)
        end = analysis.divergence_index
        if end is not None:
            lrs, losses = lrs[: end + 1], losses[: end + 1]
            analysis = analyze(lrs, losses, method="bottom", planned_steps=settings.steps)
        self.steps_trained += len(lrs)
        records = [
            StepRecord(step, float(lr), float(loss), float(loss))
            for step, (lr, loss) in enumerate(zip(lrs, losses, strict=True))
        ]
        stop = STOP_COMPLETED if end is None else STOP_DIVERGED
        return RangeTestResult(records, stop, settings, analysis, 0.0)


def test_split_answers_needs_two_on_each_side_of_a_decade() -> None:
    assert split_answers([0.01, 0.012, 0.3, 0.35]) == ([0.01, 0.012], [0.3, 0.35])
    assert split_answers([0.01, 0.3, 0.35, 0.4]) is None  # one stray is noise, not a mode
    assert split_answers([0.01, 0.012, 0.3]) is None  # too few to tell
    assert split_answers([0.01, 0.02, 0.04, 0.08, 0.16]) is None  # a spread, no gap
    low, high = 0.01, 0.01 * 10**SPLIT_DECADES * 0.99
    assert split_answers([low, low, high, high]) is None  # just short of a decade


def test_repeats_that_split_into_two_answers_stop_early_and_say_both() -> None:
    # Even repeats bottom out near 0.03 (divergence 0.03), odd ones near 1 (divergence 1).
    sweeps = Curves(centres=[1e-4, 1e-2], divergences=[0.03, 1.0])
    outcome = search(
        sweeps, SweepSettings(), SearchSettings(repeats=11, refine=False, budget=10), "bottom"
    )
    assert len(outcome.sweeps) - 1 == 4  # the first round showed the split: no more were run
    (note,) = [note for note in outcome.notes if "split into two answers" in note]
    assert "(2 of 4)" in note and "--batch-size" in note and "--val-batches" in note
    recommendation = outcome.recommendation
    assert recommendation is not None and recommendation.confidence == "low"
    assert recommendation.interval is not None
    assert np.log10(recommendation.interval[1] / recommendation.interval[0]) >= 1.0


@pytest.mark.parametrize("budget", [1.0, 2.0, 2.5, 4.0])
def test_the_plan_never_trains_more_than_its_budget(budget: float) -> None:
    # Every repeat bottoms out somewhere else: the median is never pinned, so only the
    # budget (or --repeats) ends the repeats.
    divergences = [10 ** (-2 + 0.17 * k) for k in range(12)]
    sweeps = Curves(centres=[d / 100 for d in divergences], divergences=divergences)
    settings = SearchSettings(repeats=100, refine=False, budget=budget)
    outcome = search(sweeps, SweepSettings(), settings, "bottom")
    assert sweeps.steps_trained == outcome.steps_trained <= budget * 100
    if outcome.sweeps[1:]:
        assert any("--budget" in note for note in outcome.notes)
    else:  # a budget of one sweep pays for the full sweep alone
        assert budget < 2


@pytest.mark.parametrize(
    ("divergences", "wide"),
    [((0.01, 0.012, 0.2, 0.25), True), ((0.1, 0.12, 0.3, 0.35), True), ((0.1, 0.11, 0.12), False)],
)
def test_an_interval_of_half_a_decade_is_low_confidence_whatever_else_agrees(
    divergences: tuple[float, ...], wide: bool
) -> None:
    lrs = np.logspace(-5, 0, 100)
    found = []
    for divergence in divergences:
        losses = synthetic_loss(lrs, divergence / 100, divergence, 0.0, seed=0)
        found.append(analyze(lrs, losses, method="bottom").recommendation)
    combined = combine(found, "bottom")
    assert combined is not None and combined.interval is not None
    width = np.log10(combined.interval[1] / combined.interval[0])
    assert (width >= WIDE_DECADES) == wide
    if wide:
        assert combined.confidence == "low"
    else:
        assert combined.confidence != "low"


@pytest.mark.parametrize("value", ["0.5", "0", "-1", "nan", "inf", "1001", "four"])
def test_a_bad_budget_is_refused_before_any_work(value: str, tmp_path: object) -> None:
    result = CliRunner().invoke(app, ["run", "--budget", value, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "budget" in result.output and "Traceback" not in result.output
    with pytest.raises(ConfigError, match="budget"):
        SearchSettings(budget=float(value) if value != "four" else float("nan"))
