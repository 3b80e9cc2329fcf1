"""Curve analysis on synthetic curves with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfind.core import analysis
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.ramp import sweep_lrs
from lrfind.errors import SweepError
from tests.conftest import synthetic_loss


def synthetic_curve(
    steps: int = 100,
    descent_center: float = 1e-2,
    diverge_at: float | None = 1.0,
    noise: float = 0.01,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss 2.3 flat, a sigmoid descent to 0.5 centred (in log LR) at descent_center, then an
    explosion above diverge_at. The steepest descent is at descent_center by construction."""
    lrs = np.array(sweep_lrs(1e-7, 10.0, steps, "exp"))
    return lrs, synthetic_loss(lrs, descent_center, diverge_at, noise, seed)


def test_ema_matches_pandas_adjusted_ewm() -> None:
    values = np.random.default_rng(1).normal(2.0, 0.5, size=50)
    expected = pd.Series(values).ewm(alpha=1 - 0.9, adjust=True).mean().to_numpy()
    np.testing.assert_allclose(analysis.ema(values, 0.9), expected, rtol=1e-12)


def test_zero_lag_smooth_is_pandas_ewm_forwards_then_backwards() -> None:
    values = np.random.default_rng(2).normal(1.0, 0.3, size=40)
    forward = pd.Series(values).ewm(alpha=0.2, adjust=True).mean().to_numpy()
    expected = pd.Series(forward[::-1]).ewm(alpha=0.2, adjust=True).mean().to_numpy()[::-1]
    np.testing.assert_allclose(analysis.zero_lag_smooth(values, 0.8), expected, rtol=1e-12)


def test_zero_lag_smoothing_keeps_a_minimum_in_place_where_the_ema_shifts_it() -> None:
    values = np.abs(np.arange(101) - 50.0)  # V-shaped, minimum at index 50
    assert int(np.argmin(analysis.zero_lag_smooth(values, 0.9))) == 50
    assert int(np.argmin(analysis.ema(values, 0.9))) > 52


def test_divergence_by_explosion_is_found_just_after_the_divergence_point() -> None:
    lrs, losses = synthetic_curve(diverge_at=1.0)
    index = analysis.divergence_index(losses, 0.9, 4.0)
    assert index is not None
    assert 1.0 < lrs[index] < 10.0


def test_divergence_by_collapse_back_to_the_starting_loss() -> None:
    """Plain-SGD LeNet fails by collapsing to chance (loss back at log 10), not exploding."""
    losses = np.concatenate([np.full(40, 2.30), np.linspace(2.30, 2.0, 30), np.full(30, 2.45)])
    losses += np.random.default_rng(3).normal(0, 0.005, size=100)
    index = analysis.divergence_index(losses, 0.9, 4.0)
    assert index is not None and 70 <= index <= 80


def test_collapse_to_exactly_the_starting_level_is_caught_within_a_few_steps() -> None:
    """Adam on LeNet: the loss falls to 1.2, then jumps back to chance (2.30) and stays there;
    the lagging average only approaches the starting level, so the rule must not wait for
    it to pass."""
    rng = np.random.default_rng(6)
    losses = np.concatenate([np.full(30, 2.30), np.linspace(2.30, 1.2, 40), np.full(30, 2.30)])
    losses += rng.normal(0, 0.01, size=100)
    index = analysis.divergence_index(losses, 0.9, 4.0)
    assert index is not None and 70 <= index <= 78


@pytest.mark.parametrize("seed", range(30))
def test_batch_noise_alone_is_never_a_collapse(seed: int) -> None:
    """A first batch that happens to be easy must not make the noise look like a fall."""
    losses = 2.30 + np.random.default_rng(seed).normal(0, 0.005, size=40)
    losses[0] = 2.28
    assert analysis.divergence_index(losses, 0.9, 4.0, planned_steps=40) is None


def test_no_divergence_on_a_flat_noisy_curve() -> None:
    losses = 2.3 + np.random.default_rng(4).normal(0, 0.01, size=100)
    assert analysis.divergence_index(losses, 0.9, 4.0) is None


def test_non_finite_loss_is_a_divergence_at_that_step() -> None:
    losses = np.array([2.3] * 20 + [np.nan] + [2.3] * 5)
    assert analysis.divergence_index(losses, 0.9, 4.0) == 20


def test_steepest_finds_the_centre_of_the_descent() -> None:
    lrs, losses = synthetic_curve(descent_center=1e-2)
    result = analysis.analyze(lrs, losses, method="steepest")
    assert result.recommendation is not None
    assert abs(np.log10(result.recommendation.max_lr) - (-2.0)) <= 0.25


def test_minimum_method_is_a_tenth_of_the_lr_at_the_smoothed_minimum() -> None:
    lrs, losses = synthetic_curve()
    result = analysis.analyze(lrs, losses, method="minimum")
    assert result.recommendation is not None
    assert result.recommendation.max_lr == pytest.approx(lrs[result.min_index] / 10)


def test_valley_lies_two_thirds_along_the_descent_in_log_lr() -> None:
    lrs, losses = synthetic_curve(descent_center=1e-3, noise=0.0)
    result = analysis.analyze(lrs, losses, method="valley")
    assert result.recommendation is not None
    position = np.log10(result.recommendation.max_lr)
    start = np.log10(lrs[analysis._onset_index(result.curve)])
    end = np.log10(lrs[result.min_index])
    assert position == pytest.approx(start + 2 / 3 * (end - start), abs=0.1)


def test_bottom_is_the_lr_at_the_minimum_over_the_documented_divisor() -> None:
    lrs, losses = synthetic_curve()
    result = analysis.analyze(lrs, losses, method="bottom")
    assert result.recommendation is not None
    expected = lrs[result.min_index] / analysis.BOTTOM_DIVISOR
    assert result.recommendation.max_lr == pytest.approx(expected)


def test_combine_takes_the_median_and_reports_disagreement() -> None:
    def rec(max_lr: float) -> analysis.Recommendation:
        return analysis.Recommendation(max_lr / 8, max_lr, max_lr / 3, "bottom", "high", ["ok"])

    full = analysis.Recommendation(0.01, 0.5, 0.2, "bottom", "high")
    agreed = analysis.combine([rec(0.1), rec(0.12), rec(0.11)], "bottom", full=full)
    assert agreed is not None
    assert agreed.max_lr == pytest.approx(0.11) and agreed.base_lr == 0.01
    assert agreed.interval == (0.1, 0.12) and agreed.confidence == "high"
    assert agreed.log10_width == pytest.approx(np.log10(1.2))

    split = analysis.combine([rec(0.01), rec(0.1), None, rec(1.0)], "bottom")
    assert split is not None and split.repeats == 4 and split.suggestions == [0.01, 0.1, 1.0]
    assert split.max_lr == pytest.approx(0.1)
    assert split.base_lr == pytest.approx(0.1 / 8)  # the median of the repeats' own, capped
    assert split.confidence == "low"
    assert any("disagree" in reason for reason in split.confidence_reasons)
    assert any("1 of 4 sweeps gave no suggestion" in r for r in split.confidence_reasons)
    assert analysis.combine([None, None], "bottom") is None
    assert analysis.combine([rec(0.1), rec(0.1), None, None], "bottom") is not None  # half
    few = [rec(0.1), None, None, rec(0.2), None]
    assert analysis.combine(few, "bottom", full=full) is None  # 2 of 5: not reproduced
    (reason,) = analysis.unconfirmed(few)
    assert "only 2 of 5 repeated sweeps found a clear descent" in reason
    assert analysis.unconfirmed([rec(0.1), None]) == []


def test_recommendation_rule() -> None:
    lrs, losses = synthetic_curve()
    recommendation = analysis.analyze(lrs, losses).recommendation
    assert recommendation is not None
    assert recommendation.base_lr <= analysis.MAX_BASE_FRACTION * recommendation.max_lr
    assert recommendation.lr == pytest.approx(recommendation.max_lr / analysis.CONSTANT_LR_DIVISOR)
    assert recommendation.confidence == "high"
    assert recommendation.method == DEFAULT_METHOD


def test_suggestion_never_lies_beyond_the_divergence_point() -> None:
    lrs, losses = synthetic_curve(descent_center=0.3, diverge_at=0.5)
    result = analysis.analyze(lrs, losses)
    assert result.divergence_index is not None and result.recommendation is not None
    assert result.recommendation.max_lr < lrs[result.divergence_index]
    assert np.isnan(result.smoothed[result.divergence_index :]).all()


def test_diagnostic_when_the_loss_never_diverged() -> None:
    lrs, losses = synthetic_curve(diverge_at=None)
    result = analysis.analyze(lrs, losses)
    assert result.divergence_index is None
    assert any(
        "never diverged" in message and "--end-lr" in message for message in result.diagnostics
    )
    assert result.recommendation is not None and result.recommendation.confidence != "high"


def test_diagnostic_when_the_loss_diverged_at_once() -> None:
    lrs = np.array(sweep_lrs(1.0, 100.0, 100, "exp"))
    losses = 2.3 * 10.0 ** (np.arange(100) / 3.0)  # ten times worse every three steps
    result = analysis.analyze(lrs, losses)
    assert result.divergence_index is not None and result.divergence_index <= 10
    assert any("--start-lr" in message for message in result.diagnostics)
    assert result.recommendation is None
    assert any("no clear descent" in reason for reason in result.no_recommendation)


@pytest.mark.parametrize("steps", [12, 16, 20, 30])
def test_a_short_sweep_that_diverges_at_its_end_is_not_told_it_began_too_high(steps: int) -> None:
    lrs = np.array(sweep_lrs(1e-7, 10.0, steps, "exp"))
    losses = synthetic_loss(lrs, 1e-2, 3.0, 0.01, seed=0)  # a descent, then divergence near 3
    end = analysis.analyze(lrs, losses).divergence_index
    assert end is not None and end >= steps // 2
    # as the engine records it: stopped at the divergence, planned for `steps`
    result = analysis.analyze(lrs[: end + 1], losses[: end + 1], planned_steps=steps)
    assert not any("--start-lr" in message for message in result.diagnostics)


def test_diagnostic_when_the_loss_shows_no_descent() -> None:
    lrs = np.array(sweep_lrs(1e-7, 1e-5, 100, "exp"))
    losses = 2.3 + np.random.default_rng(5).normal(0, 0.01, size=100)
    result = analysis.analyze(lrs, losses)
    assert result.recommendation is None
    assert any("no clear descent" in reason for reason in result.no_recommendation)


def test_non_finite_first_loss_is_an_error_naming_the_cause() -> None:
    with pytest.raises(SweepError, match="first step"):
        analysis.analyze([1e-7, 1e-6], [float("nan"), 2.0])


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(min_value=0.05, max_value=20.0),
    shift=st.floats(min_value=0.0, max_value=5.0),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_suggestion_is_unchanged_when_the_loss_is_scaled_or_shifted(
    scale: float, shift: float, seed: int
) -> None:
    lrs, losses = synthetic_curve(seed=seed)
    reference = analysis.analyze(lrs, losses).recommendation
    moved = analysis.analyze(lrs, losses * scale + shift).recommendation
    assert reference is not None and moved is not None
    assert moved.max_lr == pytest.approx(reference.max_lr)
    assert moved.base_lr == pytest.approx(reference.base_lr)


@settings(max_examples=60, deadline=None)
@given(
    center=st.floats(min_value=-5.0, max_value=-0.5),
    diverge_offset=st.one_of(st.none(), st.floats(min_value=0.3, max_value=3.0)),
    noise=st.floats(min_value=0.0, max_value=0.05),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_suggestions_are_ordered_inside_the_range_and_below_the_divergence(
    center: float, diverge_offset: float | None, noise: float, seed: int
) -> None:
    diverge_at = None if diverge_offset is None else 10 ** (center + diverge_offset)
    lrs, losses = synthetic_curve(
        descent_center=10**center, diverge_at=diverge_at, noise=noise, seed=seed
    )
    for method in analysis.METHODS:
        result = analysis.analyze(lrs, losses, method=method)
        recommendation = result.recommendation
        if recommendation is None:
            continue
        assert 0 < recommendation.base_lr < recommendation.max_lr
        assert lrs[0] / 10 <= recommendation.max_lr <= lrs[-1]
        if result.divergence_lr is not None:
            assert recommendation.max_lr < result.divergence_lr


@pytest.mark.parametrize(
    ("count", "kept"), [(1, 1), (3, 3), (4, 4), (5, 3), (6, 4), (7, 5), (8, 4), (9, 5), (11, 7)]
)
def test_the_middle_suggestions_are_the_middle_half_and_at_least_three(
    count: int, kept: int
) -> None:
    values = [float(v) for v in np.random.default_rng(count).permutation(count) + 1]
    middle = analysis.middle_suggestions(values)
    assert len(middle) == kept and middle == sorted(middle)
    dropped = (count - kept) // 2
    assert middle == sorted(values)[dropped : count - dropped]


def test_a_stray_sweep_does_not_unpin_the_median_but_a_wide_middle_does() -> None:
    def recs(*lrs: float | None) -> list[analysis.Recommendation | None]:
        return [None if lr is None else analysis.Recommendation(lr, lr, lr, "bottom", "high")
                for lr in lrs]  # fmt: skip

    assert analysis.median_pinned(recs(0.1, 0.11, 0.12))
    assert not analysis.median_pinned(recs(0.1, 0.11))  # fewer than three
    assert not analysis.median_pinned(recs(0.1, 0.2, 0.4))  # 0.6 decades
    assert analysis.median_pinned(recs(0.01, 0.1, 0.11, 0.12, 3.0))  # strays at both ends
    assert not analysis.median_pinned(recs(0.1, 0.11, 0.12, None, None, None, None))
    pinned = analysis.combine(recs(0.01, 0.1, 0.11, 0.12, 3.0), "bottom")
    assert pinned is not None and pinned.interval == (0.1, 0.12)
    assert pinned.confidence == "high" and pinned.suggestions == [0.01, 0.1, 0.11, 0.12, 3.0]


def test_combined_confidence_keeps_the_flaws_most_sweeps_share() -> None:
    weak = f"{analysis.WEAK_DESCENT} by 0.01, less than 10x its batch noise (0.005)"

    def rec(lr: float, *reasons: str) -> analysis.Recommendation:
        level = "high" if not reasons else "medium"
        return analysis.Recommendation(lr / 8, lr, lr / 3, "bottom", level, list(reasons))

    edge = analysis.AT_THE_EDGE
    shared = analysis.combine([rec(0.1, weak, edge), rec(0.11, edge), rec(0.12, weak)], "bottom")
    assert shared is not None and shared.confidence == "medium"
    assert shared.confidence_reasons == [f"{edge} in 2 of the 3 sweeps"]  # weak: not carried
    outvoted = analysis.combine([rec(0.1, edge), rec(0.11), rec(0.12)], "bottom")
    assert outvoted is not None and outvoted.confidence == "high"
    alone = analysis.combine([rec(0.1, weak)], "bottom")  # one sweep keeps its own reasons
    assert alone is not None and alone.confidence_reasons == [weak]
