"""Pictures of curves: sweep.png for a sweep, history.png for `lrfind train`, and the figure
`result.plot()` returns in a notebook (the same drawing as sweep.png).

matplotlib's object API on an Agg canvas: no pyplot, no global backend, no window, and
matplotlib is imported only when a picture is drawn. A figure made this way is not one of
pyplot's, so Jupyter's inline backend does not show it on its own at the end of a cell: a
notebook shows it once, as the cell's value.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrfind.outputs.files import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class CurveLines:
    """One sweep as written to sweep.csv and drawn in sweep.png."""

    repeat: int  # 0: the full sweep; 1..: repeats
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray  # NaN where the analysis has no smoothed value (after divergence)
    val_losses: np.ndarray | None = None


@dataclass(frozen=True)
class PlotMarks:
    base_lr: float | None
    max_lr: float | None
    divergence_lr: float | None
    divergence_loss: float | None
    lr: float | None = None  # the constant rate; sweep.png leaves it out
    method: str | None = None  # the rule max_lr came from, named in its legend entry
    # Other rules' max_lr on the same sweeps, (method, rate), drawn as ticks on the x axis.
    other_methods: tuple[tuple[str, float], ...] = ()


def render_plot(
    path: Path,
    curves: Sequence[CurveLines],
    marks: PlotMarks,
    title: str,
    log_x: bool = True,
) -> None:
    """sweep.png: `sweep_figure` written as a PNG file."""
    figure = sweep_figure(curves, marks, title, log_x)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def sweep_figure(
    curves: Sequence[CurveLines],
    marks: PlotMarks,
    title: str,
    log_x: bool = True,
    axes: Any = None,
    figure_class: type[Figure] | None = None,
) -> Figure:
    """Loss vs LR: the full sweep (raw and smoothed), every repeat's smoothed curve, the
    validation loss when recorded, the recommended rates and the divergence point.

    Drawn into `axes` when given (its figure is returned, its layout left alone), else on a
    new `figure_class` figure (matplotlib's `Figure` by default) with an Agg canvas.
    """
    if axes is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = (figure_class or Figure)(figsize=(8, 5), dpi=110)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        own_figure = True
    else:
        figure, own_figure = axes.figure, False
    main = curves[0]
    _draw_curves(axes, curves)
    if log_x:
        axes.set_xscale("log")
    low, high = _loss_limits(main.losses, main.smoothed)
    axes.set_ylim(low, high)
    _draw_marks(axes, marks, high)
    axes.set_xlabel("learning rate" + (" (log scale)" if log_x else ""))
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="best", fontsize=9)
    if own_figure:
        figure.tight_layout()
    return figure


# A line of more points than this is drawn as the lowest and highest point of each of half as
# many runs of consecutive points: the same picture at any plot's resolution, at a cost that
# does not grow with the curve (docs/speed.md).
DRAWN_POINTS = 4000


def thinned(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of a line worth drawing: all of them up to DRAWN_POINTS, else the first,
    the last and each run's extremes, in order. `y` must be finite."""
    count = len(x)
    if count <= DRAWN_POINTS:
        return x, y
    runs = DRAWN_POINTS // 2
    width = -(-count // runs)
    padded = np.full(runs * width, np.nan)
    padded[:count] = y
    rows = padded.reshape(runs, width)
    filled = ~np.isnan(rows).all(axis=1)
    starts = np.arange(runs)[filled] * width
    rows = rows[filled]
    keep = np.unique(
        np.concatenate(
            [
                starts + np.nanargmin(rows, axis=1),
                starts + np.nanargmax(rows, axis=1),
                [0, count - 1],
            ]
        )
    )
    return x[keep], y[keep]


def _line(axes: Any, x: np.ndarray, y: np.ndarray, **style: Any) -> None:
    """One line of a curve's finite points, thinned for drawing."""
    finite = np.isfinite(y)
    axes.plot(*thinned(x[finite], y[finite]), **style)


def _draw_curves(axes: Any, curves: Sequence[CurveLines]) -> None:
    """The full sweep raw and smoothed, every repeat smoothed, held-out losses dotted."""
    main, repeats = curves[0], curves[1:]
    _line(axes, main.lrs, main.losses, color="#9ab", linewidth=0.9, label="loss per batch")
    _line(axes, main.lrs, main.smoothed, color="#1f4e99", linewidth=2.2, label="smoothed loss")
    for index, repeat in enumerate(repeats):
        _line(
            axes,
            repeat.lrs,
            repeat.smoothed,
            color="#7b4fa0",
            linewidth=1.0,
            alpha=0.7,
            label=f"{len(repeats)} focused repeats (smoothed)" if index == 0 else None,
        )
    for index, curve in enumerate(curves):
        if curve.val_losses is not None:
            _line(
                axes,
                curve.lrs,
                curve.val_losses,
                color="#2a9d8f",
                linewidth=1.0 if index else 1.6,
                linestyle=":",
                label="held-out loss" if index == 0 else None,
            )


def _draw_marks(axes: Any, marks: PlotMarks, top: float) -> None:
    """The recommended bounds as vertical lines, the divergence point as a cross (drawn at
    `top` when its loss is off the chart)."""
    chosen = f" ({marks.method})" if marks.method else ""
    for rate, colour, style, label in (
        (marks.base_lr, "#2a9d3f", "--", "base_lr {:.2g}"),
        (marks.max_lr, "#d9822b", "--", "max_lr {:.2g}" + chosen),
        (marks.lr, "#555555", ":", "lr {:.2g} (constant)"),
    ):
        if rate is not None:
            axes.axvline(
                rate, color=colour, linestyle=style, linewidth=1.4, label=label.format(rate)
            )
    markers = itertools.cycle(("^", "v", "D", "s", "P"))
    for (method, rate), marker in zip(marks.other_methods, markers, strict=False):
        axes.plot(  # x in data units, y in axes units: a tick standing on the x axis
            [rate],
            [0.03],
            transform=axes.get_xaxis_transform(),
            marker=marker,
            markersize=7,
            color="#444444",
            linestyle="none",
            label=f"{method} rule: max_lr {rate:.2g}",
        )
    if marks.divergence_lr is not None:
        loss = marks.divergence_loss
        shown = top if loss is None or not math.isfinite(loss) else min(loss, top)
        axes.plot(
            [marks.divergence_lr],
            [shown],
            marker="x",
            markersize=10,
            color="#c0392b",
            linestyle="none",
            label=f"diverged at {marks.divergence_lr:.2g}",
        )


def _loss_limits(losses: np.ndarray, smoothed: np.ndarray) -> tuple[float, float]:
    """Y range that shows the usable curve, not the exploded tail after divergence."""
    usable = smoothed[np.isfinite(smoothed)]
    finite = losses[np.isfinite(losses)]
    if len(usable) == 0:
        usable = finite
    bottom = float(min(usable.min(), np.percentile(finite, 2)))
    top = float(max(usable.max(), finite[0]))
    span = (top - bottom) or abs(top) or 1.0
    return bottom - 0.08 * span, top + 0.25 * span


@dataclass(frozen=True)
class HistoryLines:
    """One trained schedule, as `render_history` draws it."""

    name: str
    epochs: list[int]
    train_loss: list[float]
    test_loss: list[float | None]
    train_accuracy: list[float | None]
    test_accuracy: list[float | None]
    step_lrs: list[float]


def render_history(path: Path, runs: Sequence[HistoryLines], title: str) -> None:
    """Three panels: loss and accuracy per epoch (test solid, train dashed) and the LR over
    steps, one colour per schedule, so schedules and the baseline compare at a glance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes, lr_axes = figure.subplots(1, 3)
    colours = ["#1f4e99", "#d9822b", "#2a9d3f", "#7b4fa0", "#c0392b", "#2a9d8f", "#555555"]

    def shown(values: Sequence[float | None]) -> list[float]:
        return [math.nan if value is None else value for value in values]

    for run, colour in zip(runs, itertools.cycle(colours), strict=False):
        loss_axes.plot(run.epochs, shown(run.test_loss), color=colour, marker="o", label=run.name)
        loss_axes.plot(run.epochs, shown(run.train_loss), color=colour, linestyle="--", marker=".")
        accuracy_axes.plot(
            run.epochs, shown(run.test_accuracy), color=colour, marker="o", label=run.name
        )
        accuracy_axes.plot(
            run.epochs, shown(run.train_accuracy), color=colour, linestyle="--", marker="."
        )
        lr_axes.plot(range(len(run.step_lrs)), run.step_lrs, color=colour, label=run.name)
    loss_axes.set_ylabel("loss (test solid, train dashed)")
    accuracy_axes.set_ylabel("accuracy (test solid, train dashed)")
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlabel("epoch")
    lr_axes.set_xlabel("step")
    lr_axes.set_ylabel("learning rate")
    for axes in (loss_axes, accuracy_axes, lr_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(loc="best", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
