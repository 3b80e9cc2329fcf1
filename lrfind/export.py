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

from lrfind.errors import OutputError

CSV_COLUMNS = ("step", "lr", "loss", "smoothed_loss")


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


def _number(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def write_sweep_csv(
    path: Path,
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    smoothed: Sequence[float] | np.ndarray,
) -> None:
    """One row per step. Non-finite values are written as empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for step, (lr, loss, smooth) in enumerate(zip(lrs, losses, smoothed, strict=True)):
        writer.writerow([step, _number(lr), _number(loss), _number(smooth)])
    write_atomic(path, buffer.getvalue().encode())


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


@dataclass(frozen=True)
class PlotMarks:
    base_lr: float | None
    max_lr: float | None
    divergence_lr: float | None
    divergence_loss: float | None


def render_plot(
    path: Path,
    lrs: np.ndarray,
    losses: np.ndarray,
    smoothed: np.ndarray,
    marks: PlotMarks,
    title: str,
    log_x: bool = True,
) -> None:
    """Loss vs LR with the smoothed curve, the recommended bounds and the divergence point.

    Uses matplotlib's object API on an Agg canvas: no pyplot, no global backend, no window.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    finite = np.isfinite(losses)
    axes.plot(lrs[finite], losses[finite], color="#9ab", linewidth=0.9, label="loss per batch")
    has_smooth = np.isfinite(smoothed)
    axes.plot(
        lrs[has_smooth], smoothed[has_smooth], color="#1f4e99", linewidth=2.2, label="smoothed loss"
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
