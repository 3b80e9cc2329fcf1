"""Atomic writing: a failure while writing never leaves a half-written file or folder."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lrfind.errors import CurveFileError, OutputError
from lrfind.outputs.curves import read_curve_csv, write_sweep_csv
from lrfind.outputs.files import (
    CLAIM_FILE,
    check_run_folder,
    claim_run_folder,
    staged_run_folder,
    write_atomic,
    write_json,
)
from lrfind.outputs.plots import CurveLines


def test_a_failure_while_writing_removes_the_staging_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with (
        pytest.raises(RuntimeError, match="disk on fire"),
        staged_run_folder(out, False) as staging,
    ):
        (staging / "sweep.csv").write_text("step,lr\n")
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_previous_run_intact(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text('{"old": true}')
    with pytest.raises(KeyboardInterrupt), staged_run_folder(out, True) as staging:
        (staging / "result.json").write_text('{"new": tru')
        raise KeyboardInterrupt
    assert (out / "result.json").read_text() == '{"old": true}'
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_a_successful_overwrite_replaces_the_whole_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("{}")
    (out / "sweep.png").write_text("from an older run")
    with staged_run_folder(out, True) as staging:
        (staging / "result.json").write_text("{}")
    assert [path.name for path in out.iterdir()] == ["result.json"]
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_failed_atomic_write_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.mkdir()  # renaming a file over a folder fails, as a full disk would at that moment
    with pytest.raises(OutputError, match=f"cannot write {target}"):
        write_atomic(target, b"{}")
    assert target.is_dir()
    assert [path.name for path in tmp_path.iterdir()] == ["result.json"]


def test_csv_writes_non_finite_values_as_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "sweep.csv"
    curve = CurveLines(
        0, np.array([1e-3, 1e-2]), np.array([2.3, math.inf]), np.array([2.3, math.nan])
    )
    repeat = CurveLines(1, np.array([1e-2]), np.array([2.2]), np.array([2.2]), np.array([2.4]))
    write_sweep_csv(path, [curve, repeat])
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {"repeat": "0", "step": "0", "lr": "0.001", "loss": "2.3", "smoothed_loss": "2.3",
         "val_loss": ""},
        {"repeat": "0", "step": "1", "lr": "0.01", "loss": "", "smoothed_loss": "", "val_loss": ""},
        {"repeat": "1", "step": "0", "lr": "0.01", "loss": "2.2", "smoothed_loss": "2.2",
         "val_loss": "2.4"},
    ]  # fmt: skip


def test_json_is_strict_json_with_nulls_for_non_finite_numbers(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json(
        path, {"loss": np.float32(1.5), "lr": math.nan, "path": tmp_path, "xs": np.arange(2)}
    )
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"loss": 1.5, "lr": None, "path": str(tmp_path), "xs": [0, 1]}


def write_curve(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD_ROWS = [f"{10 ** (-5 + index / 4):.6g},{2.3 - index * 0.01:.4f}" for index in range(12)]


def test_a_foreign_csv_with_lr_and_loss_columns_is_read(tmp_path: Path) -> None:
    rows = [f"{row},extra" for row in GOOD_ROWS]
    (curve,) = read_curve_csv(write_curve(tmp_path / "c.csv", "LR,Loss,note", rows))
    assert curve.repeat == 0 and len(curve.lrs) == 12 and curve.val_losses is None
    assert curve.lrs[0] == pytest.approx(1e-5) and curve.losses[-1] == pytest.approx(2.19)


def test_our_own_sweep_csv_reads_back_with_its_repeats(tmp_path: Path) -> None:
    lrs = np.geomspace(1e-4, 1.0, 12)
    full = CurveLines(0, lrs, np.linspace(2.3, 1.0, 12), np.full(12, np.nan))
    losses = np.append(np.linspace(2.0, 1.0, 11), np.inf)  # ended on a non-finite loss
    repeat = CurveLines(1, lrs, losses, np.full(12, np.nan), np.linspace(2.1, 1.1, 12))
    write_sweep_csv(tmp_path / "sweep.csv", [full, repeat])
    first, second = read_curve_csv(tmp_path / "sweep.csv")
    np.testing.assert_allclose(first.lrs, lrs)
    assert second.repeat == 1 and np.isnan(second.losses[-1])
    assert second.val_losses is not None and second.val_losses[0] == pytest.approx(2.1)


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("rate,value", GOOD_ROWS, "has no 'lr' or 'loss' column (found: rate, value)"),
        ("lr,val", GOOD_ROWS, "has no 'loss' column"),
        ("lr,loss", [*GOOD_ROWS[:5], "0.01,abc", *GOOD_ROWS[6:]], "row 7: loss is 'abc'"),
        ("lr,loss", [*GOOD_ROWS[:3], "nan,2.0", *GOOD_ROWS[4:]], "row 5: lr is nan"),
        ("lr,loss", [*GOOD_ROWS[:3], ",2.0", *GOOD_ROWS[4:]], "row 5: lr is '', not a number"),
        ("lr,loss", ["-1,2.3", *GOOD_ROWS[1:]], "row 2: lr is -1"),
        ("lr,loss", [*GOOD_ROWS[:4], "1e-5,nan", *GOOD_ROWS[5:]], "is below the one before"),
        ("lr,loss", [GOOD_ROWS[0], *GOOD_ROWS[:11]], "repeats the one before"),
        ("lr,loss", [*GOOD_ROWS[:4], GOOD_ROWS[4].split(",")[0] + ",nan", *GOOD_ROWS[5:]],
         "the loss in data row 5"),
        ("lr,loss", GOOD_ROWS[:9], "has 9 rows; at least 10 are needed"),
        ("lr,loss", [], "has a header but no rows"),
        ("repeat,lr,loss", [f"x,{row}" for row in GOOD_ROWS], "repeat is 'x', not an integer"),
    ],
)  # fmt: skip
def test_bad_curve_files_are_refused_naming_the_row_and_the_fix(
    tmp_path: Path, header: str, rows: list[str], message: str
) -> None:
    with pytest.raises(CurveFileError) as caught:
        read_curve_csv(write_curve(tmp_path / "bad.csv", header, rows))
    assert message in str(caught.value)


def test_missing_empty_and_binary_curve_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CurveFileError, match="does not exist"):
        read_curve_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CurveFileError, match="no header"):
        read_curve_csv(tmp_path / "empty.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(CurveFileError, match="UTF-8"):
        read_curve_csv(tmp_path / "binary.csv")


def test_odd_but_readable_curve_files_read_as_their_header_says(tmp_path: Path) -> None:
    """Cells beyond the header's are ignored (rows that all end in a comma included), a
    repeated name lrfind does not read is just a column, a 200 KB cell is just a cell, and a
    name ending in .gz does not make plain text compressed."""
    lrs = [row.split(",")[0] for row in GOOD_ROWS]
    cases = {
        "extra.csv": ("lr,loss", [f"{row},99" for row in GOOD_ROWS]),
        "trailing.csv": ("lr,loss", [f"{row}," for row in GOOD_ROWS]),
        "twice.csv": ("note,lr,Note,loss", [f"9,{lr},7,{row.split(',')[1]}" for lr, row in zip(
            lrs, GOOD_ROWS, strict=True)]),
        "big.csv": ("lr,loss,note", [f"{row},{'x' * 200_000}" for row in GOOD_ROWS]),
        "plain.csv.gz": ("lr,loss", GOOD_ROWS),
    }  # fmt: skip
    for name, (header, rows) in cases.items():
        (curve,) = read_curve_csv(write_curve(tmp_path / name, header, rows))
        assert len(curve.lrs) == 12, name
        assert curve.lrs[0] == pytest.approx(1e-5), name
        assert curve.losses[-1] == pytest.approx(2.19), name


@pytest.mark.parametrize("header", ["lr,loss,loss", "LR,lr,loss", "lr, loss ,Loss,repeat"])
def test_two_columns_under_one_name_are_refused(tmp_path: Path, header: str) -> None:
    rows = [f"{row},2.0" for row in GOOD_ROWS] if header.count(",") == 2 else [
        f"{row},2.0,0" for row in GOOD_ROWS]  # fmt: skip
    path = write_curve(tmp_path / "twice.csv", header, rows)
    with pytest.raises(CurveFileError, match=r"2 columns named '(lr|loss)' \(columns \d and \d"):
        read_curve_csv(path)


def test_the_first_bad_cell_is_reported_in_row_order(tmp_path: Path) -> None:
    rows = list(GOOD_ROWS)
    rows[3] = rows[3].split(",")[0] + ",abc"  # a bad loss in row 5 (header is row 1)
    rows[7] = "x," + rows[7].split(",")[1]  # a bad lr in row 9
    with pytest.raises(CurveFileError, match=r"row 5: loss is 'abc', not a number"):
        read_curve_csv(write_curve(tmp_path / "bad.csv", "lr,loss", rows))


def test_a_claimed_run_folder_is_no_one_elses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with claim_run_folder(out, overwrite=False) as folder:
        assert sorted(path.name for path in out.iterdir()) == [CLAIM_FILE]
        with (
            pytest.raises(OutputError, match=r"another lrfind run .* is writing to"),
            claim_run_folder(out, overwrite=True),
        ):
            pass
        with folder.staged() as staging:
            (staging / "result.json").write_text("{}")
    assert sorted(path.name for path in out.iterdir()) == ["result.json"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_a_failed_run_gives_its_claim_back(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), claim_run_folder(out, overwrite=False):
        raise RuntimeError("the sweep failed")
    assert list(tmp_path.iterdir()) == []


def test_what_appears_in_a_claimed_folder_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with (
        pytest.raises(OutputError, match=r"notes.txt appeared in it") as raised,
        claim_run_folder(out, overwrite=False) as folder,
        folder.staged() as staging,
    ):
        (staging / "result.json").write_text('{"mine": 1}')
        (out / "notes.txt").write_text("written by someone else meanwhile")
    assert (out / "notes.txt").read_text() == "written by someone else meanwhile"
    kept = next(tmp_path.glob("run-not-replaced-*")) / "run"
    assert (kept / "result.json").read_text() == '{"mine": 1}'
    assert str(kept) in str(raised.value)


def test_a_claim_left_by_a_dead_run_can_be_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    finished = subprocess.Popen(["true"])  # a process that has ended: its id is no one's
    finished.wait()
    dead = finished.pid
    (out / CLAIM_FILE).write_text(f"{dead} 0123456789abcdef\n")
    with pytest.raises(OutputError, match="already exists"):
        check_run_folder(out, overwrite=False)
    with staged_run_folder(out, overwrite=True) as staging:
        (staging / "result.json").write_text("{}")
    assert sorted(path.name for path in out.iterdir()) == ["result.json"]


def test_a_repeat_number_beyond_64_bits_is_still_a_number(tmp_path: Path) -> None:
    rows = [f"99999999999999999999,{row}" for row in GOOD_ROWS]
    (curve,) = read_curve_csv(write_curve(tmp_path / "big.csv", "repeat,lr,loss", rows))
    assert curve.repeat == int(1e20) and len(curve.lrs) == 12  # repeats are read as floats
