"""Writing results: CSV, JSON and the plot, always atomically.

    lrfind run --out runs/lenet-sgd     # -> sweep.csv, sweep.png, result.json

A run folder is assembled in a hidden sibling folder and renamed into place only when every
file is complete, so an interrupted or failing run never leaves a half-written folder, and an
existing run is replaced only with `overwrite=True`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrfind.errors import ConfigError, CurveFileError, OutputError

CSV_COLUMNS = ("repeat", "step", "lr", "loss", "smoothed_loss", "val_loss")


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`."""
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise OutputError(_write_failure(path, error)) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; a replaced file keeps its permissions, a new one gets the umask's
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise OutputError(_write_failure(path, error)) from None


def _write_failure(path: Path, error: OSError) -> str:
    return (
        f"cannot write {path}: {error.strerror or error}. Check that the folder is writable "
        "and the disk has space, or choose another folder with --out."
    )


def check_run_folder(out: Path, overwrite: bool) -> None:
    """Fail before any work when the run folder exists and may not be replaced."""
    if out.exists() and not overwrite:
        raise OutputError(
            f"run folder {out} already exists. Pass --overwrite to replace it, or choose "
            "another folder with --out."
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder. Choose another path with --out.")
    existing = next(parent for parent in Path(out).absolute().parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot create run folder {out}: {existing} is not a writable folder. "
            "Choose another folder with --out."
        )


@contextlib.contextmanager
def staged_run_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes `out`, on error it is removed."""
    out = Path(out)
    check_run_folder(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as error:
        raise OutputError(_write_failure(out, error)) from None
    try:
        yield staging
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, retired / out.name)
            os.replace(staging, out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(_write_failure(out, error)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


@dataclass(frozen=True)
class CurveRows:
    """One sweep as written to sweep.csv and drawn in sweep.png."""

    repeat: int  # 0: the full sweep; 1..: repeats
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray  # NaN where the analysis has no smoothed value (after divergence)
    val_losses: np.ndarray | None = None


def write_sweep_csv(path: Path, curves: Sequence[CurveRows]) -> None:
    """One row per step of every sweep. Non-finite or absent values are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for curve in curves:
        val_losses = curve.val_losses if curve.val_losses is not None else [None] * len(curve.lrs)
        rows = zip(curve.lrs, curve.losses, curve.smoothed, val_losses, strict=True)
        for step, (lr, loss, smooth, val_loss) in enumerate(rows):
            writer.writerow(
                [curve.repeat, step, _number(lr), _number(loss), _number(smooth), _number(val_loss)]
            )
    write_atomic(path, buffer.getvalue().encode())


MIN_CURVE_ROWS = 10  # as for a sweep: fewer points cannot be analysed


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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CurveFileError(f"{path} does not exist. Pass the sweep.csv of a run.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CurveFileError(f"cannot read {path}: {error}. Pass a UTF-8 CSV file.") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in ("lr", "loss") if name not in columns]
    if missing:
        raise CurveFileError(
            f"{path} has no {' or '.join(repr(name) for name in missing)} column (found: "
            f"{', '.join(columns) or 'no header'}). The first row must name the columns, "
            "with the learning rate under 'lr' and the training loss under 'loss'."
        )
    reader.fieldnames = columns
    rows: dict[int, list[tuple[float, float, float]]] = {}
    for row_number, row in enumerate(reader, start=2):
        repeat = _cell(path, row_number, row, "repeat", integer=True) if "repeat" in row else 0
        lr = _cell(path, row_number, row, "lr")
        loss = _cell(path, row_number, row, "loss", empty_ok=True)
        val_loss = (
            _cell(path, row_number, row, "val_loss", empty_ok=True)
            if "val_loss" in row
            else math.nan
        )
        if not (math.isfinite(lr) and lr > 0):
            raise CurveFileError(
                f"{path}, row {row_number}: lr is {lr:g}; learning rates must be positive, "
                "finite numbers. Fix or remove the row."
            )
        rows.setdefault(int(repeat), []).append((lr, loss, val_loss))
    curves = [_curve(path, repeat, rows[repeat]) for repeat in sorted(rows)]
    if not curves:
        raise CurveFileError(
            f"{path} has a header but no rows; it needs at least {MIN_CURVE_ROWS} (lr, loss) rows."
        )
    return curves


def _cell(
    path: Path,
    row_number: int,
    row: dict[str, str | None],
    column: str,
    *,
    integer: bool = False,
    empty_ok: bool = False,
) -> float:
    text = (row.get(column) or "").strip()
    if not text and empty_ok:
        return math.nan
    try:
        return float(int(text)) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise CurveFileError(
            f"{path}, row {row_number}: {column} is {text!r}, not {kind}. Fix or remove the row."
        ) from None


def _curve(path: Path, repeat: int, rows: list[tuple[float, float, float]]) -> LoadedCurve:
    where = f"{path}" + (f" (repeat {repeat})" if repeat else "")
    if len(rows) < MIN_CURVE_ROWS:
        raise CurveFileError(
            f"{where} has {len(rows)} rows; at least {MIN_CURVE_ROWS} are needed to analyse a "
            "curve. Run a longer sweep (--steps 100)."
        )
    lrs = np.array([row[0] for row in rows])
    losses = np.array([row[1] for row in rows])
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
    val_losses = np.array([row[2] for row in rows])
    return LoadedCurve(
        repeat=repeat,
        lrs=lrs,
        losses=losses,
        val_losses=val_losses if np.isfinite(val_losses).any() else None,
    )


def json_ready(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to null, paths to strings."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    text = json.dumps(json_ready(document), indent=2, allow_nan=False)
    write_atomic(path, (text + "\n").encode())


def read_result(path: Path) -> dict[str, Any]:
    """A result.json of `lrfind run` or `lrfind analyze` (the latter has no `config` block)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"result file {path} does not exist. Give the result.json of a run "
            "(e.g. runs/<name>/result.json), written by `lrfind run`."
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"result file {path} is not readable JSON ({error}).") from None
    if not (isinstance(document, dict) and isinstance(document.get("recommendation"), dict)):
        raise ConfigError(
            f"{path} is not an lrfind result: it has no `recommendation` block. Pass the "
            "result.json written by `lrfind run` or `lrfind analyze`."
        )
    return document


@dataclass(frozen=True)
class PlotMarks:
    base_lr: float | None
    max_lr: float | None
    divergence_lr: float | None
    divergence_loss: float | None


def render_plot(
    path: Path,
    curves: Sequence[CurveRows],
    marks: PlotMarks,
    title: str,
    log_x: bool = True,
) -> None:
    """Loss vs LR: the full sweep (raw and smoothed), every repeat's smoothed curve, the
    validation loss when recorded, the recommended bounds and the divergence point.

    Uses matplotlib's object API on an Agg canvas: no pyplot, no global backend, no window.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    main, repeats = curves[0], curves[1:]
    lrs, losses, smoothed = main.lrs, main.losses, main.smoothed
    figure = Figure(figsize=(8, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    finite = np.isfinite(losses)
    axes.plot(lrs[finite], losses[finite], color="#9ab", linewidth=0.9, label="loss per batch")
    has_smooth = np.isfinite(smoothed)
    axes.plot(
        lrs[has_smooth], smoothed[has_smooth], color="#1f4e99", linewidth=2.2, label="smoothed loss"
    )
    for index, repeat in enumerate(repeats):
        shown = np.isfinite(repeat.smoothed)
        axes.plot(
            repeat.lrs[shown],
            repeat.smoothed[shown],
            color="#7b4fa0",
            linewidth=1.0,
            alpha=0.7,
            label=f"{len(repeats)} focused repeats (smoothed)" if index == 0 else None,
        )
    for index, curve in enumerate(curves):
        if curve.val_losses is None:
            continue
        shown = np.isfinite(curve.val_losses)
        axes.plot(
            curve.lrs[shown],
            curve.val_losses[shown],
            color="#2a9d8f",
            linewidth=1.0 if index else 1.6,
            linestyle=":",
            label="held-out loss" if index == 0 else None,
        )
    if log_x:
        axes.set_xscale("log")
    low, high = _loss_limits(losses, smoothed)
    axes.set_ylim(low, high)
    if marks.base_lr is not None:
        axes.axvline(
            marks.base_lr,
            color="#2a9d3f",
            linestyle="--",
            linewidth=1.4,
            label=f"base_lr {marks.base_lr:.2g}",
        )
    if marks.max_lr is not None:
        axes.axvline(
            marks.max_lr,
            color="#d9822b",
            linestyle="--",
            linewidth=1.4,
            label=f"max_lr {marks.max_lr:.2g}",
        )
    if marks.divergence_lr is not None:
        loss = marks.divergence_loss
        shown = high if loss is None or not math.isfinite(loss) else min(loss, high)
        axes.plot(
            [marks.divergence_lr],
            [shown],
            marker="x",
            markersize=10,
            color="#c0392b",
            linestyle="none",
            label=f"diverged at {marks.divergence_lr:.2g}",
        )
    axes.set_xlabel("learning rate" + (" (log scale)" if log_x else ""))
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="best", fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


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
    train_accuracy: list[float]
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
        accuracy_axes.plot(run.epochs, run.train_accuracy, color=colour, linestyle="--", marker=".")
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
