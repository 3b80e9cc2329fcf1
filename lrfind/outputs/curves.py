"""Loss-vs-LR curves as files: sweep.csv (written fast, read back by any tool) and sweep.png.

    lrfind analyze runs/lenet-fashion-mnist-20261121-101500/sweep.csv

lrfind writes its own curves with the csv module (no pandas import on the run path) and reads
curves, its own or another tool's, with pandas, whose parser copes with byte-order marks, CRLF
line ends, quoting and large fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrfind.core.analysis import Analysis, Recommendation
from lrfind.errors import CurveFileError
from lrfind.outputs.files import write_csv
from lrfind.outputs.plots import CurveLines, PlotMarks, render_plot
from lrfind.settings.options import MIN_USABLE_POINTS

CSV_COLUMNS = ("repeat", "step", "lr", "loss", "smoothed_loss", "val_loss")


@dataclass(frozen=True)
class AnalysedCurve:
    """One sweep of a run (repeat 0 is the full sweep) with its analysis."""

    repeat: int
    analysis: Analysis
    val_losses: np.ndarray | None = None

    def lines(self) -> CurveLines:
        return CurveLines(
            repeat=self.repeat,
            lrs=self.analysis.lrs,
            losses=self.analysis.losses,
            smoothed=self.analysis.smoothed,
            val_losses=self.val_losses,
        )


def write_curve_files(
    folder: Path,
    curves: list[AnalysedCurve],
    recommendation: Recommendation | None,
    title: str,
    log_x: bool = True,
) -> None:
    """sweep.csv and sweep.png: the full sweep (first) and every repeat."""
    lines = [curve.lines() for curve in curves]
    write_sweep_csv(folder / "sweep.csv", lines)
    main = curves[0].analysis
    divergence = main.divergence_index
    marks = PlotMarks(
        base_lr=None if recommendation is None else recommendation.base_lr,
        max_lr=None if recommendation is None else recommendation.max_lr,
        divergence_lr=main.divergence_lr,
        divergence_loss=None if divergence is None else float(main.losses[divergence]),
    )
    render_plot(folder / "sweep.png", lines, marks, title, log_x=log_x)


def write_sweep_csv(path: Path, curves: Sequence[CurveLines]) -> None:
    """One row per step of every sweep. Non-finite or absent values are empty cells."""
    rows = []
    for curve in curves:
        val_losses = curve.val_losses if curve.val_losses is not None else [None] * len(curve.lrs)
        values = zip(curve.lrs, curve.losses, curve.smoothed, val_losses, strict=True)
        for step, (lr, loss, smoothed, val_loss) in enumerate(values):
            rows.append((curve.repeat, step, lr, loss, smoothed, val_loss))
    write_csv(path, CSV_COLUMNS, rows)


@dataclass(frozen=True)
class LoadedCurve:
    repeat: int
    lrs: np.ndarray
    losses: np.ndarray  # a NaN only as the last value: a sweep that ended on a non-finite loss
    val_losses: np.ndarray | None


def read_curve_csv(path: Path) -> list[LoadedCurve]:
    """Read a loss-vs-LR curve: lrfind's own sweep.csv or any CSV with `lr` and `loss` columns.

    An optional `repeat` column splits the rows into sweeps (repeat 0 first). Every cell is
    checked, and a bad one is reported by its row (counting the header as row 1).
    """
    path = Path(path)
    frame = _read_frame(path)
    columns = list(frame.columns)
    missing = [name for name in ("lr", "loss") if name not in columns]
    if missing:
        raise CurveFileError(
            f"{path} has no {' or '.join(repr(name) for name in missing)} column (found: "
            f"{', '.join(columns) or 'no header'}). The first row must name the columns, "
            "with the learning rate under 'lr' and the training loss under 'loss'."
        )
    if len(frame) == 0:
        raise CurveFileError(
            f"{path} has a header but no rows; it needs at least {MIN_USABLE_POINTS} (lr, loss) "
            "rows."
        )
    lrs = _numbers(frame, path, "lr")
    losses = _numbers(frame, path, "loss", empty_ok=True)
    val_losses = (
        _numbers(frame, path, "val_loss", empty_ok=True)
        if "val_loss" in columns
        else np.full(len(frame), math.nan)
    )
    repeats = (
        _numbers(frame, path, "repeat", integer=True)
        if "repeat" in columns
        else np.zeros(len(frame))
    )
    bad_lr = np.flatnonzero(~(np.isfinite(lrs) & (lrs > 0)))
    if len(bad_lr):
        raise CurveFileError(
            f"{path}, row {bad_lr[0] + 2}: lr is {lrs[bad_lr[0]]:g}; learning rates must be "
            "positive, finite numbers. Fix or remove the row."
        )
    return [
        _curve(path, int(repeat), lrs[chosen], losses[chosen], val_losses[chosen])
        for repeat in np.unique(repeats)
        for chosen in [repeats == repeat]
    ]


def _read_frame(path: Path) -> Any:
    """Every cell as stripped text under lower-case column names, or a CurveFileError."""
    import pandas as pd

    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=True
        )
    except FileNotFoundError:
        raise CurveFileError(f"{path} does not exist. Pass the sweep.csv of a run.") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError) as error:
        raise CurveFileError(f"cannot read {path}: {error}. Pass a UTF-8 CSV file.") from None
    except pd.errors.ParserError as error:
        reason = str(error).strip().splitlines()[0]
        raise CurveFileError(
            f"{path} is not a readable CSV ({reason}). Every row needs the header's columns, "
            "separated by commas."
        ) from None
    frame.columns = [str(name).strip().lower() for name in frame.columns]
    return frame.fillna("")


def _numbers(
    frame: Any, path: Path, column: str, *, integer: bool = False, empty_ok: bool = False
) -> np.ndarray:
    """One column as floats, parsed as Python parses numbers; empty cells are NaN where
    allowed. A cell that is no number is reported by its row."""
    texts = frame[column].str.strip().to_numpy(dtype=object)
    if empty_ok:
        texts = np.where(texts == "", "nan", texts)
    parse = (lambda text: float(int(text))) if integer else float
    try:
        return np.array([parse(text) for text in texts]) if integer else texts.astype(float)
    except ValueError:
        index = next(index for index, text in enumerate(texts) if not _parses(parse, text))
    kind = "an integer" if integer else "a number"
    raise CurveFileError(
        f"{path}, row {index + 2}: {column} is {texts[index]!r}, not {kind}. Fix or remove the row."
    )


def _parses(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def _curve(
    path: Path, repeat: int, lrs: np.ndarray, losses: np.ndarray, val_losses: np.ndarray
) -> LoadedCurve:
    where = f"{path}" + (f" (repeat {repeat})" if repeat else "")
    if len(lrs) < MIN_USABLE_POINTS:
        raise CurveFileError(
            f"{where} has {len(lrs)} rows; at least {MIN_USABLE_POINTS} are needed to analyse "
            "a curve. Run a longer sweep (--steps 100)."
        )
    order = np.diff(lrs)
    if np.any(order <= 0):
        index = int(np.argmax(order <= 0)) + 1
        problem = "repeats" if order[index - 1] == 0 else "is below"
        raise CurveFileError(
            f"{where}: the lr {lrs[index]:g} in data row {index + 1} {problem} the one before "
            f"({lrs[index - 1]:g}); a sweep's learning rates must strictly increase. Sort the "
            "rows by lr and drop duplicates."
        )
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad) and bad[0] != len(losses) - 1:
        raise CurveFileError(
            f"{where}: the loss in data row {bad[0] + 1} (lr {lrs[bad[0]]:g}) is missing or not "
            "finite. Only the last row may be, where a sweep ended on a NaN/inf loss; cut the "
            "curve before that row."
        )
    return LoadedCurve(
        repeat=repeat,
        lrs=lrs,
        losses=losses,
        val_losses=val_losses if np.isfinite(val_losses).any() else None,
    )
