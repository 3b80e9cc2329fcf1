"""Loss-vs-LR curves as files: sweep.csv (written fast, read back by any tool) and sweep.png.

    lrfind analyze runs/lenet-fashion-mnist-20261121-101500/sweep.csv

lrfind writes its own curves with the csv module (no pandas import on the run path) and reads
curves, its own or another tool's, with pandas, whose parser copes with byte-order marks, CRLF
line ends, quoting and large fields.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrfind.core.analysis import Analysis, Recommendation
from lrfind.core.settings import MIN_USABLE_POINTS
from lrfind.errors import CurveFileError
from lrfind.outputs.files import csv_cell, csv_column, write_csv_blocks
from lrfind.outputs.plots import CurveLines, PlotMarks, render_plot
from lrfind.settings.formats import cut_short
from lrfind.settings.paths import os_refusal

CSV_COLUMNS = ("repeat", "step", "lr", "loss", "smoothed_loss", "val_loss")
CSV_BLOCK_ROWS = 2**16  # rows of sweep.csv formatted at a time: a few MB of text
# The columns a curve is read from; each may appear once.
CURVE_NAMES = ("repeat", "lr", "loss", "val_loss")


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
    marks = plot_marks(curves[0].analysis, recommendation)
    render_plot(folder / "sweep.png", lines, marks, title, log_x=log_x)


def plot_marks(main: Analysis, recommendation: Recommendation | None) -> PlotMarks:
    """sweep.png's marks: the recommended bounds and where the full sweep diverged."""
    divergence = main.divergence_index
    return PlotMarks(
        base_lr=None if recommendation is None else recommendation.base_lr,
        max_lr=None if recommendation is None else recommendation.max_lr,
        divergence_lr=main.divergence_lr,
        divergence_loss=None if divergence is None else float(main.losses[divergence]),
    )


def write_sweep_csv(path: Path, curves: Sequence[CurveLines]) -> None:
    """One row per step of every sweep, as `write_csv` writes `sweep_rows` (the same bytes,
    built a block of rows at a time, so a long curve is never held as text).
    Non-finite or absent values are empty cells."""
    write_csv_blocks(path, CSV_COLUMNS, _sweep_blocks(curves))


def _sweep_blocks(curves: Sequence[CurveLines]) -> Iterator[list[list[str]]]:
    for curve in curves:
        count = len(curve.lrs)
        val_losses = curve.val_losses if curve.val_losses is not None else np.full(count, np.nan)
        repeat = csv_cell(curve.repeat)
        for start in range(0, count, CSV_BLOCK_ROWS):
            stop = min(start + CSV_BLOCK_ROWS, count)
            yield [
                [repeat] * (stop - start),
                list(map(repr, range(start, stop))),
                *(
                    csv_column(values[start:stop])
                    for values in (curve.lrs, curve.losses, curve.smoothed, val_losses)
                ),
            ]


def sweep_rows(curves: Sequence[CurveLines]) -> list[tuple[Any, ...]]:
    """sweep.csv's rows (CSV_COLUMNS), one per step of every sweep; None where a sweep has
    no held-out loss."""
    rows = []
    for curve in curves:
        val_losses = curve.val_losses if curve.val_losses is not None else [None] * len(curve.lrs)
        values = zip(curve.lrs, curve.losses, curve.smoothed, val_losses, strict=True)
        for step, (lr, loss, smoothed, val_loss) in enumerate(values):
            rows.append((curve.repeat, step, lr, loss, smoothed, val_loss))
    return rows


@dataclass(frozen=True)
class LoadedCurve:
    repeat: int
    lrs: np.ndarray
    losses: np.ndarray  # a NaN only as the last value: a sweep that ended on a non-finite loss
    val_losses: np.ndarray | None


def read_curve_csv(path: Path) -> list[LoadedCurve]:
    """Read a loss-vs-LR curve: lrfind's own sweep.csv or any CSV with `lr` and `loss` columns.

    The first row names the columns (case and surrounding spaces aside; two columns under one
    of the names read here are refused, and cells beyond the header's are ignored). An optional
    `repeat` column splits the rows into sweeps (repeat 0 first). Every cell is checked, and
    the first bad one is reported by its row (counting the header as row 1).
    """
    path = Path(path)
    _check_ends_whole(path)
    parsed = _small_plain_numbers(path) or _plain_numbers(path) or _checked_numbers(path)
    rows = len(parsed["lr"])
    lrs = parsed["lr"]
    losses = parsed["loss"]
    val_losses = parsed["val_loss"] if "val_loss" in parsed else np.full(rows, math.nan)
    repeats = parsed["repeat"] if "repeat" in parsed else np.zeros(rows)
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


TAIL_BYTES = 1 << 16  # read from the end at a time, to find the last line of a long curve


def _check_ends_whole(path: Path) -> None:
    """Refuse a curve cut short while it was written: every writer of CSV (lrfind's, the csv
    module, pandas, spreadsheets) ends each row with a line break, so a last line without one
    is a row the writer was still writing, and its last cell may be half a number (2.5e+01 cut
    to 2.5). A last row that has a line break but stops before its loss cell is refused too
    (an empty cell is a loss that was not finite; a missing one is a row cut short)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            tail, start = b"", size
            while start > 0 and tail.rstrip().count(b"\n") < 1:
                start = max(0, start - TAIL_BYTES)
                handle.seek(start)
                tail = handle.read(size - start)
            handle.seek(0)
            head = handle.readline(TAIL_BYTES)
    except OSError:
        return  # the reader reports what is wrong with the file
    if b"\x00" in head or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CurveFileError(
            f"{path} is not UTF-8 text: it holds NUL bytes, as UTF-16, UTF-32 and binary files "
            "do. Pass a UTF-8 CSV file (from a spreadsheet, save it as 'CSV UTF-8')."
        )
    stripped = tail.rstrip(b" \t")
    last = stripped.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].rsplit(b"\r", 1)[-1]
    if not last.strip() or (start == 0 and b"\n" not in stripped.rstrip()):
        return  # an empty file, or a header alone: the reader says what is missing
    try:
        last.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.reason != "unexpected end of data":  # not text: the reader says so
            return
    shown = last.decode("utf-8", errors="replace").strip()
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if not stripped.endswith((b"\n", b"\r")):
        raise CurveFileError(
            cut_short(
                f"{path} is not a complete CSV",
                f"its last line, {shown!r}, stops without the line break that ends every row",
            )
            + " If that row is whole, end the file with a line break."
        )
    header = [name.strip().lower() for name in _cells(head.decode("utf-8-sig", errors="replace"))]
    cells = _cells(last.decode("utf-8", errors="replace"))
    needed = max((header.index(name) + 1 for name in ("lr", "loss") if name in header), default=0)
    if len(cells) < needed:
        raise CurveFileError(
            cut_short(
                f"{path} is not a complete CSV",
                f"its last row, {shown!r}, has {len(cells)} of the {needed} cells up to its "
                "loss (an empty cell is a loss that was not finite; a missing one is a row "
                "that stops early)",
            )
        )


def _cells(line: str) -> list[str]:
    """The cells of one line of CSV (quotes as the csv module reads them)."""
    if '"' not in line:
        return line.rstrip("\r\n").split(",")
    try:
        return next(csv.reader([line.rstrip("\r\n")]), [])
    except csv.Error:  # a quoted cell beyond the csv module's field size: count it whole
        return line.split(",")


def _nearest_float_option() -> dict[str, str]:
    """What makes pandas' C parser read every number as the nearest float, as Python does:
    the round-trip converter before pandas 3; from 3 on, its default (which deprecates the
    option). tests/test_long_curves.py holds it to Python's parse on hard cases."""
    import pandas as pd

    return {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


SMALL_FILE_BYTES = 1 << 20  # read without pandas, whose import outweighs parsing this much


def _plain_header(header: list[str]) -> tuple[dict[str, int], list[str]] | None:
    """Each column's place by its name, and the curve's names among them, for a header that
    names `lr` and `loss` and no column twice; None for any other (read cell by cell)."""
    columns = {name: index for index, name in enumerate(header)}
    wanted = [name for name in CURVE_NAMES if name in columns]
    if len(columns) < len(header) or "lr" not in wanted or "loss" not in wanted:
        return None
    return columns, wanted


def _small_plain_numbers(path: Path) -> dict[str, np.ndarray] | None:
    """`_plain_numbers` for a small, plain file, by the csv module: no quotes, every row as
    wide as the header, numbers Python's float() and int() read. None when the file is larger
    or anything is not plain, and pandas reads it as before."""
    try:
        if path.stat().st_size > SMALL_FILE_BYTES:
            return None
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or '"' in text:
        return None
    try:
        rows = list(csv.reader(lines))
    except csv.Error:  # a cell beyond the csv module's limit: pandas reads it
        return None
    header = [name.strip().lower() for name in rows[0]]
    plain = _plain_header(header)
    if plain is None or any(len(row) != len(header) for row in rows[1:]):
        return None
    columns, wanted = plain
    parsed: dict[str, np.ndarray] = {}
    try:
        for name in wanted:
            cells = [row[columns[name]].strip() for row in rows[1:]]
            if name == "repeat":
                parsed[name] = np.array([float(int(cell)) for cell in cells])
            elif name in ("loss", "val_loss"):
                parsed[name] = np.array([float(cell) if cell else math.nan for cell in cells])
            else:
                parsed[name] = np.array([float(cell) for cell in cells])
    except ValueError:
        return None
    if np.isnan(parsed["lr"]).any():
        return None
    return parsed


def _plain_numbers(path: Path) -> dict[str, np.ndarray] | None:
    """The curve's columns parsed straight to numbers by pandas' C parser, when the file is
    plain: a header with `lr` and `loss` once each, then rows whose cells in those columns are
    numbers (empty only in the loss columns) and integers under `repeat`. The numbers are
    exactly those `_checked_numbers` gives (the nearest float, as Python parses; int() for
    `repeat`), but no cell is held as text, which on long curves would cost many times the
    time and the memory. None when anything is not plain: `_checked_numbers` then reads the file
    cell by cell and names what is wrong."""
    import pandas as pd

    options: dict[str, Any] = {
        "encoding": "utf-8-sig",
        "compression": None,
        "skip_blank_lines": True,
        "keep_default_na": False,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a long row or a mixed column: read it cell by cell
            first = pd.read_csv(path, header=None, dtype=str, nrows=1, **options).fillna("")
            plain = _plain_header([str(name).strip().lower() for name in first.iloc[0]])
            if plain is None:
                return None
            columns, wanted = plain
            types = {columns[name]: str if name == "repeat" else "float64" for name in wanted}
            frame = pd.read_csv(
                path,
                header=0,
                names=list(range(len(first.columns))),
                usecols=[columns[name] for name in wanted],
                dtype=types,
                na_values={columns[name]: [""] for name in ("loss", "val_loss") if name in wanted},
                engine="c",
                **options,
                **_nearest_float_option(),
            )
    except (ValueError, OverflowError, OSError, IndexError, Warning):  # IndexError: no rows
        return None
    parsed = {
        name: frame[columns[name]].to_numpy(dtype=float) for name in wanted if name != "repeat"
    }
    if not len(frame) or np.isnan(parsed["lr"]).any():
        return None
    if any(np.isin(values, (0.0, 1.0)).all() for values in parsed.values()):
        return None  # pandas reads a column of True/False as numbers; Python does not
    if "repeat" in wanted:
        repeats = _plain_repeats(frame[columns["repeat"]])
        if repeats is None:
            return None
        parsed["repeat"] = repeats
    return parsed


def _plain_repeats(cells: Any) -> np.ndarray | None:
    """The `repeat` column's numbers, each distinct cell parsed once as `_numbers` parses it
    (int(), which refuses '1.0'); None when a cell is missing or no integer."""
    import pandas as pd

    codes, distinct = pd.factorize(cells)
    if (codes < 0).any():
        return None
    texts = np.array([str(text).strip() for text in distinct], dtype=object)
    values, bad = _numbers(texts, integer=True, empty_ok=False)
    return None if bad is not None else values[codes]


def _checked_numbers(path: Path) -> dict[str, np.ndarray]:
    """The curve's columns, every cell read as text and parsed as Python parses numbers; the
    first bad cell is reported by its row."""
    columns, cells = _read_cells(path)
    missing = [name for name in ("lr", "loss") if name not in columns]
    if missing:
        raise CurveFileError(
            f"{path} has no {' or '.join(repr(name) for name in missing)} column (found: "
            f"{', '.join(columns) or 'no header'}). The first row must name the columns, "
            "with the learning rate under 'lr' and the training loss under 'loss'."
        )
    rows = len(cells[columns["lr"]]) if cells else 0
    if rows == 0:
        raise CurveFileError(
            f"{path} has a header but no rows; it needs at least {MIN_USABLE_POINTS} (lr, loss) "
            "rows."
        )
    wanted = [
        (name, name == "repeat", name in ("loss", "val_loss"))
        for name in CURVE_NAMES
        if name in columns
    ]
    parsed: dict[str, tuple[np.ndarray, int | None]] = {
        name: _numbers(cells[columns[name]], integer, empty_ok)
        for name, integer, empty_ok in wanted
    }
    _report_first_bad_cell(path, parsed, cells, columns)
    return {name: values for name, (values, _) in parsed.items()}


def _refuse_repeated_names(path: Path, header: list[str]) -> None:
    """Two columns under one of the names lrfind reads: which one holds the curve is a guess."""
    for name in CURVE_NAMES:
        places = [str(index + 1) for index, named in enumerate(header) if named == name]
        if len(places) > 1:
            raise CurveFileError(
                f"{path} has {len(places)} columns named {name!r} (columns "
                f"{' and '.join(places)}, counting from 1), so which one holds the curve is a "
                "guess. Keep one of them, or rename the others."
            )


def _read_cells(path: Path) -> tuple[dict[str, int], list[np.ndarray]]:
    """The header (lower-cased name -> column) and every column's cells as stripped text.
    Files are read as UTF-8 text whatever their name says."""
    import pandas as pd

    options: dict[str, Any] = {
        "header": None,
        "dtype": str,
        "keep_default_na": False,
        "encoding": "utf-8-sig",
        "compression": None,
        "skip_blank_lines": True,
    }
    try:
        try:
            frame = pd.read_csv(path, **options)
        except pd.errors.ParserError:  # rows longer than the header: keep the header's cells
            width = len(pd.read_csv(path, **options, nrows=1).columns)
            frame = pd.read_csv(
                path, **options, engine="python", on_bad_lines=lambda fields: fields[:width]
            )
    except FileNotFoundError:
        raise CurveFileError(f"{path} does not exist. Pass the sweep.csv of a run.") from None
    except pd.errors.EmptyDataError:
        return {}, []
    except OSError as error:
        raise CurveFileError(os_refusal(error, "curve file", path)) from None
    except UnicodeDecodeError as error:
        raise CurveFileError(f"cannot read {path}: {error}. Pass a UTF-8 CSV file.") from None
    except pd.errors.ParserError as error:
        reason = str(error).strip().splitlines()[0]
        raise CurveFileError(
            f"{path} is not a readable CSV ({reason}). Every row needs the header's columns, "
            "separated by commas."
        ) from None
    frame = frame.fillna("")
    header = [str(name).strip().lower() for name in frame.iloc[0]]
    _refuse_repeated_names(path, header)
    columns = {name: index for index, name in enumerate(header)}
    cells = [  # stripped by pandas, column by column: no Python loop over the cells
        frame.iloc[1:, index].str.strip().to_numpy(dtype=object) for index in range(len(header))
    ]
    return columns, cells


def _numbers(texts: np.ndarray, integer: bool, empty_ok: bool) -> tuple[np.ndarray, int | None]:
    """Cells parsed as Python parses numbers (empty cells are NaN where allowed), and the
    index of the first cell that is no number, or None."""
    if empty_ok:
        texts = np.where(texts == "", "nan", texts)
    parse = (lambda text: float(int(text))) if integer else float
    try:
        # object-to-number casts call int() or float() on each cell, as the parse would
        values = texts.astype(np.int64).astype(float) if integer else texts.astype(float)
        return values, None
    except (ValueError, OverflowError):  # an integer beyond int64 overflows the cast only
        bad = next((index for index, text in enumerate(texts) if not _parses(parse, text)), None)
        if bad is None:
            return np.array([parse(text) for text in texts]), None
        return np.array([]), bad


def _report_first_bad_cell(
    path: Path,
    parsed: dict[str, tuple[np.ndarray, int | None]],
    cells: list[np.ndarray],
    columns: dict[str, int],
) -> None:
    """Raise for the bad cell in the earliest row (in column order within a row)."""
    bad = [(index, name) for name, (_, index) in parsed.items() if index is not None]
    if not bad:
        return
    index, name = min(bad, key=lambda item: item[0])
    kind = "an integer" if name == "repeat" else "a number"
    text = cells[columns[name]][index]
    raise CurveFileError(
        f"{path}, row {index + 2}: {name} is {text!r}, not {kind}. Fix or remove the row."
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
    # The full sweep must be long enough to read; a repeat may be short (one cut by Ctrl-C),
    # and then reads as one that found no answer, or is left out as the run left it out.
    if not repeat and len(lrs) < MIN_USABLE_POINTS:
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
