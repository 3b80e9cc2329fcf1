"""The notebook API (lrfind.api, lrfind.outputs.notebook, lrfind.outputs.progress): figures,
data frames, every method's suggestion and progress, on a tiny seeded model in memory."""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

import lrfind
from lrfind.core.analysis import METHODS, analyze
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.records import RangeTestResult, StepRecord
from lrfind.core.settings import SweepSettings
from lrfind.engine import finder as engine
from lrfind.errors import ConfigError
from lrfind.outputs.curves import CSV_COLUMNS, AnalysedCurve, write_sweep_csv
from lrfind.outputs.notebook import NotebookOutcome, NotebookResult
from lrfind.outputs.progress import RichBars, TextBars, sweep_bars

SWEEP = {"start_lr": 1e-4, "end_lr": 100.0, "steps": 60}


def task() -> tuple[torch.nn.Module, torch.optim.Optimizer, DataLoader[Any]]:
    """Three linearly separable classes and a small MLP: a clear descent, then divergence."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(512, 10, generator=generator)
    targets = (inputs @ torch.randn(10, 3, generator=generator)).argmax(1)
    # shuffled by torch's global RNG, which the seeded sweep forks: the same order each call
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    return model, torch.optim.SGD(model.parameters(), lr=0.1), loader


def sweep(**options: Any) -> NotebookResult:
    model, optimizer, loader = task()
    options = {**SWEEP, "seed": 0, "progress": False, **options}
    return lrfind.range_test(model, optimizer, torch.nn.functional.cross_entropy, loader, **options)


def plan(**options: Any) -> NotebookOutcome:
    model, optimizer, loader = task()
    options = {**SWEEP, "repeats": 2, "progress": False, **options}
    return lrfind.find_lr(model, optimizer, torch.nn.functional.cross_entropy, loader, **options)


@pytest.fixture(scope="module")
def result() -> NotebookResult:
    return sweep()


@pytest.fixture(scope="module")
def outcome() -> NotebookOutcome:
    return plan()


def lines_by_label(figure: Figure) -> dict[str, Any]:
    return {line.get_label(): line for line in figure.axes[0].get_lines()}


def vertical_line(figure: Figure, prefix: str) -> Any:
    (line,) = [line for label, line in lines_by_label(figure).items() if label.startswith(prefix)]
    return line


# ---------------------------------------------------------------------------------------------
# What the API returns


def test_the_api_returns_the_engine_results_with_every_attribute_kept(
    result: NotebookResult, outcome: NotebookOutcome
) -> None:
    assert isinstance(result, RangeTestResult)
    assert result.recommendation is not None  # the task has an answer, so the marks are drawn
    assert result.method == DEFAULT_METHOD
    assert len(result.records) == len(result.lrs) > 20
    assert isinstance(outcome.main, NotebookResult)
    assert outcome.recommendation is not None and outcome.recommendation.repeats == 2
    assert [sweep.repeat for sweep in outcome.sweeps] == [0, 1, 2]


def test_the_api_gives_the_engine_s_numbers() -> None:
    model, optimizer, loader = task()
    plain = engine.range_test(
        model, optimizer, torch.nn.functional.cross_entropy, loader, **SWEEP, seed=0
    )
    assert sweep().records == plain.records


# ---------------------------------------------------------------------------------------------
# plot()


def test_plot_draws_the_curve_and_marks_the_recommended_rates(result: NotebookResult) -> None:
    figure = result.plot()
    assert isinstance(figure, Figure)
    lines = lines_by_label(figure)
    finite = np.isfinite(result.losses)
    np.testing.assert_array_equal(lines["loss per batch"].get_xdata(), result.lrs[finite])
    np.testing.assert_array_equal(lines["loss per batch"].get_ydata(), result.losses[finite])
    smoothed = result.analysis.smoothed
    np.testing.assert_array_equal(
        lines["smoothed loss"].get_ydata(), smoothed[np.isfinite(smoothed)]
    )
    answer = result.recommendation
    assert answer is not None
    for prefix, rate in (
        ("base_lr", answer.base_lr),
        ("max_lr", answer.max_lr),
        ("lr ", answer.lr),
    ):
        assert list(vertical_line(figure, prefix).get_xdata()) == [rate, rate]
    assert (
        vertical_line(figure, "max_lr").get_label().endswith(f"({DEFAULT_METHOD})")
    )  # the chosen rule
    divergence = result.analysis.divergence_lr
    assert divergence is not None
    assert list(vertical_line(figure, "diverged at").get_xdata()) == [divergence]
    assert figure.axes[0].get_xscale() == "log"


def test_plot_shows_every_other_method_s_max_lr(result: NotebookResult) -> None:
    figure = result.plot()
    suggestions = result.suggestions()
    for method in METHODS:
        if method == DEFAULT_METHOD or math.isnan(suggestions.loc[method, "max_lr"]):
            continue
        tick = vertical_line(figure, f"{method} rule")
        assert list(tick.get_xdata()) == [suggestions.loc[method, "max_lr"]]


def test_plot_of_the_plan_draws_every_repeat(outcome: NotebookOutcome) -> None:
    figure = outcome.plot()
    drawn = [(list(line.get_xdata()), list(line.get_ydata())) for line in figure.axes[0].lines]
    for sweep in outcome.sweeps[1:]:
        smoothed = sweep.result.analysis.smoothed
        shown = np.isfinite(smoothed)
        assert drawn.count((list(sweep.result.lrs[shown]), list(smoothed[shown]))) == 1
    answer = outcome.recommendation
    assert answer is not None
    assert list(vertical_line(figure, "max_lr").get_xdata()) == [answer.max_lr] * 2
    assert "2 focused repeats" in figure.axes[0].get_title()


def test_plot_draws_into_the_axes_it_is_given(result: NotebookResult) -> None:
    own = Figure()
    axes = own.add_subplot(1, 2, 2)
    figure = result.plot(ax=axes)
    assert figure is own
    assert "smoothed loss" in lines_by_label_of(axes)
    assert len(own.axes) == 1


def lines_by_label_of(axes: Any) -> list[str]:
    return [line.get_label() for line in axes.get_lines()]


def test_the_figure_is_not_pyplot_s_and_shows_itself_as_a_png(result: NotebookResult) -> None:
    """Jupyter's inline backend shows pyplot's figures at the end of a cell, and the cell's
    value again: this one has no pyplot manager, and shows once, from _repr_png_."""
    figure = result.plot()
    assert figure.canvas.manager is None
    assert figure._repr_png_().startswith(b"\x89PNG")  # type: ignore[attr-defined]


def test_sweep_png_is_still_drawn_without_the_notebook_marks(tmp_path: Path) -> None:
    from lrfind.outputs.curves import write_curve_files

    result = sweep()
    curve = AnalysedCurve(0, result.analysis, result.val_losses)
    write_curve_files(tmp_path, [curve], result.recommendation, "title")
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------------
# to_dataframe()


def test_to_dataframe_holds_the_records_in_sweep_csv_columns(outcome: NotebookOutcome) -> None:
    frame = outcome.to_dataframe()
    assert list(frame.columns) == list(CSV_COLUMNS)
    for sweep in outcome.sweeps:
        rows = frame[frame["repeat"] == sweep.repeat]
        records = sweep.result.records
        assert list(rows["step"]) == list(range(len(records)))
        assert list(rows["lr"]) == [record.lr for record in records]
        assert list(rows["loss"]) == [record.loss for record in records]
        np.testing.assert_array_equal(rows["smoothed_loss"], sweep.result.analysis.smoothed)
        assert rows["val_loss"].isna().all()


def test_to_dataframe_equals_sweep_csv_read_back(outcome: NotebookOutcome, tmp_path: Path) -> None:
    curves = [
        AnalysedCurve(sweep.repeat, sweep.result.analysis, sweep.result.val_losses).lines()
        for sweep in outcome.sweeps
    ]
    write_sweep_csv(tmp_path / "sweep.csv", curves)
    written = pd.read_csv(tmp_path / "sweep.csv")
    pd.testing.assert_frame_equal(outcome.to_dataframe(), written, check_dtype=False)


def test_to_dataframe_carries_the_held_out_loss() -> None:
    model, optimizer, loader = task()
    held_out = [next(iter(loader))]
    result = lrfind.range_test(
        model,
        optimizer,
        torch.nn.functional.cross_entropy,
        loader,
        **SWEEP,
        seed=0,
        val_batches=held_out,
        progress=False,
    )
    frame = result.to_dataframe()
    assert list(frame["val_loss"]) == [record.val_loss for record in result.records]


# ---------------------------------------------------------------------------------------------
# suggestions()


def test_suggestions_of_one_sweep_are_every_method_s_analysis(result: NotebookResult) -> None:
    table = result.suggestions()
    assert list(table.index) == list(METHODS)
    assert list(table.index[table["chosen"]]) == [DEFAULT_METHOD]
    for method in METHODS:
        answer = analyze(result.lrs, result.losses, method=method, planned_steps=60).recommendation
        assert answer is not None
        assert table.loc[method, "max_lr"] == answer.max_lr
        assert table.loc[method, "base_lr"] == answer.base_lr
        assert table.loc[method, "lr"] == answer.lr
        assert table.loc[method, "confidence"] == answer.confidence


def test_suggestions_mark_the_method_asked_for() -> None:
    result = sweep(method="valley")
    table = result.suggestions()
    assert list(table.index[table["chosen"]]) == ["valley"]
    assert result.recommendation is not None
    assert table.loc["valley", "max_lr"] == result.recommendation.max_lr
    assert vertical_line(result.plot(), "max_lr").get_label().endswith("(valley)")


def test_suggestions_of_the_plan_are_what_the_plan_answers_with_each_method(
    outcome: NotebookOutcome,
) -> None:
    """The same sweeps (seeds and restored weights), asked of another method, give the row
    the default rule's outcome shows for it."""
    table = outcome.suggestions()
    assert outcome.recommendation is not None
    assert table.loc[DEFAULT_METHOD, "max_lr"] == outcome.recommendation.max_lr
    valley = plan(method="valley")
    assert valley.recommendation is not None
    assert [s.result.records for s in valley.sweeps] == [s.result.records for s in outcome.sweeps]
    assert table.loc["valley", "max_lr"] == valley.recommendation.max_lr
    assert table.loc["valley", "confidence"] == valley.recommendation.confidence


def test_a_method_without_an_answer_shows_nan_and_says_so() -> None:
    lrs = [10 ** (-4 + step / 10) for step in range(40)]
    records = [StepRecord(step, lr, 1.0, 1.0) for step, lr in enumerate(lrs)]
    flat = NotebookResult.of(
        RangeTestResult(
            records=records,
            stop_reason="completed",
            settings=SweepSettings(start_lr=lrs[0], end_lr=lrs[-1], steps=40),
            analysis=analyze(lrs, [1.0] * 40),
            sweep_seconds=0.0,
        ),
        "bottom",
    )
    table = flat.suggestions()
    assert (table["confidence"] == "no answer").all()
    assert table["max_lr"].isna().all()
    labels = [line.get_label() for line in flat.plot().axes[0].get_lines()]
    assert not any(label.startswith(("base_lr", "max_lr", "lr ")) for label in labels)


# ---------------------------------------------------------------------------------------------
# Progress


def test_progress_false_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[StepRecord] = []
    result = plan(progress=False, callback=seen.append)
    assert capfd.readouterr() == ("", "")
    assert len(seen) == sum(len(sweep.result.records) for sweep in result.sweeps)


def test_progress_is_off_by_itself_when_nobody_watches(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    sweep(progress=None)
    assert capfd.readouterr() == ("", "")


def test_progress_true_shows_a_bar_per_sweep_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[StepRecord] = []
    outcome = plan(progress=True, callback=seen.append)
    out, err = capsys.readouterr()
    assert out == ""
    names = ("full sweep", "repeat 1 (up to 2)", "repeat 2 (up to 2)")
    for name, sweep in zip(names, outcome.sweeps, strict=True):
        steps = len(sweep.result.records)
        assert f"{name}" in err and f"step {steps:>4}/{steps}" in err
    assert len(seen) == outcome.steps_run  # the caller's callback still sees every step


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_by_itself_when_stderr_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    result = sweep(progress=None)
    shown = terminal.getvalue()
    steps = len(result.records)
    assert "sweep" in shown and f"{steps}/{steps}" in shown
    assert "\x1b[" in shown  # drawn in place with terminal controls


def test_in_jupyter_without_ipywidgets_one_line_per_sweep_is_rewritten(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr("rich.console._is_jupyter", lambda: True)
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *rest: None if name == "ipywidgets" else find_spec(name, *rest),
    )
    outcome = plan(progress=None)
    err = capsys.readouterr().err
    lines = err.split("\n")
    assert lines[-1] == ""  # every sweep's line is ended
    assert [line.rsplit("\r", 1)[-1].split(":")[0] for line in lines[:-1]] == [
        "full sweep",
        "repeat 1 (up to 2)",
        "repeat 2 (up to 2)",
    ]
    for line, sweep in zip(lines, outcome.sweeps, strict=False):
        steps = len(sweep.result.records)
        assert line.startswith("\r") and f"step {steps}/{steps} " in line.rsplit("\r", 1)[-1]


def test_the_display_fits_where_it_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = Console(file=io.StringIO(), force_terminal=False, force_jupyter=False)
    assert sweep_bars(None, piped) is None
    assert sweep_bars(False, piped) is None
    forced = sweep_bars(True, piped)
    assert isinstance(forced, RichBars)
    forced.stop()
    terminal = sweep_bars(None, Console(file=io.StringIO(), force_terminal=True))
    assert isinstance(terminal, RichBars)
    terminal.stop()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *rest: None if name == "ipywidgets" else find_spec(name, *rest),
    )
    notebook = Console(file=io.StringIO(), force_jupyter=True)
    assert isinstance(sweep_bars(None, notebook), TextBars)


def test_a_progress_that_is_no_choice_is_refused_before_any_work() -> None:
    model, optimizer, loader = task()
    before = [parameter.detach().clone() for parameter in model.parameters()]
    with pytest.raises(ConfigError, match="progress must be True"):
        lrfind.range_test(
            model, optimizer, torch.nn.functional.cross_entropy, loader, progress="yes"
        )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_an_error_before_the_first_step_leaves_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError):
        sweep(progress=True, start_lr=1.0, end_lr=0.1)
    assert capsys.readouterr() == ("", "")
