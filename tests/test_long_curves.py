"""The whole-array paths that make long curves cheap give what the step-by-step paths give, bit
for bit: the EMA (lrfind.core.analysis.ema against OnlineEMA), the divergence step
(first_divergence and divergence_index against DivergenceDetector fed one loss at a time), and
sweep.csv written column by column and read by pandas' number parser (against the csv module
and the cell-by-cell reader)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lrfind.core.analysis import (
    DivergenceDetector,
    OnlineEMA,
    baseline_steps,
    divergence_index,
    ema,
    first_divergence,
)
from lrfind.engine.finder import range_test
from lrfind.errors import OutputError
from lrfind.outputs import curves as curve_files
from lrfind.outputs.curves import (
    CSV_COLUMNS,
    _checked_numbers,
    _plain_numbers,
    sweep_rows,
    write_sweep_csv,
)
from lrfind.outputs.files import write_atomic, write_csv
from lrfind.outputs.plots import DRAWN_POINTS, CurveLines, thinned
from tests.conftest import tiny_model, tiny_task

BETAS = (0.0, 0.5, 0.9, 0.98, 0.999)


def stepwise_ema(values: np.ndarray, beta: float) -> np.ndarray:
    tracker = OnlineEMA(beta)
    return np.array([tracker.update(float(value)) for value in values], dtype=float)


def stepwise_divergence(
    losses: np.ndarray, smoothing: float, factor: float, baseline: int
) -> tuple[int, bool] | None:
    detector = DivergenceDetector(smoothing, factor, baseline)
    for index, loss in enumerate(losses):
        _, diverged = detector.update(float(loss))
        if diverged:
            return index, detector.diverged_late
    return None


def same_bits(first: np.ndarray, second: np.ndarray) -> bool:
    return first.shape == second.shape and first.tobytes() == second.tobytes()


def sweep_shaped(rng: np.random.Generator, points: int) -> np.ndarray:
    """A range test's loss: flat, a fall, a bottom, a blow-up; noise, spikes, an offset."""
    x = np.linspace(0.0, 1.0, points)
    fall_at, rise_at = rng.uniform(0.2, 0.6), rng.uniform(0.6, 1.1)
    level = rng.uniform(0.5, 3.0)
    loss = level / (1 + np.exp((x - fall_at) * rng.uniform(5, 40)))
    loss += np.where(x > rise_at, (x - rise_at) ** 2 * rng.uniform(5, 500), 0.0)
    loss += rng.normal(0, rng.choice([0.0, 1e-3, 0.02, 0.2]), points)
    spikes = rng.random(points) < rng.choice([0.0, 0.01, 0.05])
    loss[spikes] += rng.uniform(0.5, 20, spikes.sum())
    if rng.random() < 0.3:
        loss = np.round(loss, int(rng.integers(1, 4)))  # a logger that rounds: repeated values
    return loss * rng.choice([1.0, -1.0, 1e-6, 1e6]) + rng.choice([0.0, -5.0, 1e3])


def damaged(rng: np.random.Generator, loss: np.ndarray) -> np.ndarray:
    """Some curves end on, or hold, a NaN or an infinite loss."""
    loss = loss.copy()
    if len(loss) and rng.random() < 0.3:
        loss[int(rng.integers(0, len(loss)))] = rng.choice([math.nan, math.inf, -math.inf])
    return loss


@pytest.mark.parametrize("beta", BETAS)
def test_the_ema_is_bit_for_bit_the_online_one(beta: float) -> None:
    rng = np.random.default_rng(int(beta * 1000))
    for points in (0, 1, 2, 17, 500, 5000):
        values = rng.normal(0, 10, points) * rng.choice([1.0, 1e-300, 1e300])
        assert same_bits(ema(values, beta), stepwise_ema(values, beta))
    special = np.array([-0.0, 0.0, -0.0, 1e308, -1e308, 5e-324, math.inf, 1.0, math.nan, 2.0])
    for start in range(len(special)):
        assert same_bits(ema(special[start:], beta), stepwise_ema(special[start:], beta))
    assert same_bits(ema([1, 2, 3], beta), stepwise_ema(np.array([1.0, 2.0, 3.0]), beta))


@pytest.mark.parametrize("smoothing", [0.0, 0.6, 0.9, 0.98])
def test_the_divergence_step_is_the_detectors_on_many_sweep_shaped_curves(
    smoothing: float,
) -> None:
    rng = np.random.default_rng(int(smoothing * 100))
    fired = late = 0
    for _ in range(150):
        points = int(rng.choice([3, 8, 12, 40, 100, 250, 1200]))
        loss = damaged(rng, sweep_shaped(rng, points))
        factor = float(rng.choice([1.0, 4.0, 10.0]))
        baseline = baseline_steps(int(rng.choice([points, 100, 4000, 20])))
        expected = stepwise_divergence(loss, smoothing, factor, baseline)
        assert first_divergence(loss, smoothing, factor, baseline) == expected
        fired += expected is not None
        late += expected is not None and expected[1]
    assert fired > 30 and late > 0  # the cases cover every branch of the rule


def test_divergence_index_is_the_detectors_on_curves_of_real_sweeps() -> None:
    for seed in range(4):
        model = tiny_model(seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9 * (seed % 2))
        result = range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(seed),
                            start_lr=1e-4, end_lr=100.0, steps=120, seed=seed)  # fmt: skip
        losses = result.losses
        for planned in (len(losses), 120):
            stepwise = stepwise_divergence(losses, 0.9, 4.0, baseline_steps(planned))
            expected = None if stepwise is None else stepwise[0] - stepwise[1]
            assert divergence_index(losses, 0.9, 4.0, planned) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=60),
    st.sampled_from([0.0, 0.5, 0.9]),
    st.sampled_from([0.5, 4.0]),
    st.integers(min_value=0, max_value=250),
)
def test_any_curve_gives_the_detectors_step(
    losses: list[float], smoothing: float, factor: float, baseline: int
) -> None:
    curve = np.array(losses, dtype=float)
    with np.errstate(all="ignore"):
        expected = stepwise_divergence(curve, smoothing, factor, baseline)
        assert first_divergence(curve, smoothing, factor, baseline) == expected
        assert same_bits(ema(curve, smoothing), stepwise_ema(curve, smoothing))


# ---------------------------------------------------------------------------------------------
# sweep.csv, written and read


def random_lines(rng: np.random.Generator, repeat: int) -> CurveLines:
    points = int(rng.choice([0, 1, 6, 23]))
    columns = [rng.normal(size=points) * 10.0 ** rng.integers(-300, 300, points) for _ in range(4)]
    for values in columns:
        values[rng.random(points) < 0.2] = rng.choice([math.nan, math.inf, -math.inf, -0.0, 0.0])
    lrs, losses, smoothed, val_losses = columns
    return CurveLines(repeat, lrs, losses, smoothed, val_losses if rng.random() < 0.5 else None)


def test_sweep_csv_has_the_bytes_the_csv_module_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(curve_files, "CSV_BLOCK_ROWS", 5)  # several blocks per curve
    rng = np.random.default_rng(3)
    for trial in range(40):
        lines = [random_lines(rng, repeat) for repeat in range(int(rng.integers(0, 4)))]
        write_sweep_csv(tmp_path / "columns.csv", lines)
        write_csv(tmp_path / "rows.csv", CSV_COLUMNS, sweep_rows(lines))
        written = (tmp_path / "columns.csv").read_bytes()
        assert written == (tmp_path / "rows.csv").read_bytes(), trial


def test_a_chunk_that_fails_leaves_no_file(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"lr,loss\n"
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        write_atomic(tmp_path / "sweep.csv", chunks())
    assert list(tmp_path.iterdir()) == []


def hard_numbers(rng: random.Random) -> list[str]:
    """Numbers as Python writes them and as other tools do: long digit strings, subnormals,
    halfway cases, signs, exponents, spaces, quotes."""
    texts = [repr(value) for value in np.exp(np.linspace(-740, 700, 300)).tolist()]
    for _ in range(300):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        sign, exponent = rng.choice(["", "-", "+"]), rng.randint(-330, 310)
        texts.append(f"{sign}{digits[0]}.{digits[1:]}e{exponent}")
    return [
        *texts,
        "2.2250738585072011e-308", "4.9406564584124654e-324", "2.4703282292062328e-324",
        "9007199254740993", "1.7976931348623157e308", ".5", "5.", " 1.5", "1.5 ", '"2.5"',
        "1e400", "-0", "0.1e1", "inf", "-Infinity", "1_000",
    ]  # fmt: skip


CELLS_THAT_ARE_NOT_PLAIN = ["", " ", "nan", "NA", "True", "1.0", "0x10", "\u0661", "e", "--1"]


def test_the_number_parser_reads_what_the_cell_by_cell_reader_reads(tmp_path: Path) -> None:
    rng = random.Random(5)
    numbers = hard_numbers(rng)
    path = tmp_path / "curve.csv"
    plain = 0
    for trial in range(300):
        header = rng.choice(["repeat,step,lr,loss,val_loss", "LR , Loss", "\ufefflr,loss,note"])
        width = len(header.split(","))
        rows = []
        for _ in range(rng.randint(1, 12)):
            cells = [rng.choice(["0", "1", " 2", "+1", "01"]) if name.strip() == "repeat"
                     else rng.choice(numbers) for name in header.split(",")]  # fmt: skip
            if rng.random() < 0.05:
                cells[rng.randrange(width)] = rng.choice(CELLS_THAT_ARE_NOT_PLAIN)
            if rng.random() < 0.05:
                cells = cells[: rng.randrange(1, width + 1)] + ["9"] * rng.randint(0, 2)
            rows.append(",".join(cells))
        ending = rng.choice(["\n", "\r\n"])
        path.write_text(header + ending + ending.join(rows) + ending, encoding="utf-8")
        fast = _plain_numbers(path)
        if fast is None:
            continue
        plain += 1
        slow = _checked_numbers(path)
        assert fast.keys() == slow.keys(), trial
        for name in fast:
            assert same_bits(fast[name], slow[name]), (trial, name)
    assert plain > 100  # most files took the fast path


@pytest.mark.parametrize("cell", CELLS_THAT_ARE_NOT_PLAIN)
def test_a_cell_that_is_not_plain_is_read_cell_by_cell(tmp_path: Path, cell: str) -> None:
    path = tmp_path / "curve.csv"
    path.write_text(f"repeat,lr,loss\n0,0.1,{cell}\n{cell},0.2,1.5\n0,{cell},2\n")
    assert _plain_numbers(path) is None


def test_a_long_line_is_drawn_as_its_extremes_and_a_short_one_whole() -> None:
    rng = np.random.default_rng(0)
    x = np.logspace(-7, 1, 100_000)
    y = np.cumsum(rng.normal(size=100_000))
    drawn_x, drawn_y = thinned(x, y)
    assert len(drawn_x) <= DRAWN_POINTS + 2
    assert np.all(np.diff(drawn_x) > 0)  # in order, a subset of the points
    assert set(drawn_y.tolist()) <= set(y.tolist())
    assert drawn_y.min() == y.min() and drawn_y.max() == y.max()
    assert drawn_x[0] == x[0] and drawn_x[-1] == x[-1]
    # every run of consecutive points keeps its own lowest and highest value
    width = -(-len(y) // (DRAWN_POINTS // 2))
    for start in range(0, len(y), width * 97):
        run = y[start : start + width]
        assert run.min() in drawn_y and run.max() in drawn_y
    short_x, short_y = thinned(x[:100], y[:100])
    assert np.array_equal(short_x, x[:100])
    assert np.array_equal(short_y, y[:100])
