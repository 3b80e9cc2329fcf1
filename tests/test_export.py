"""Atomic writing: a failure while writing never leaves a half-written file or folder."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lrfind.errors import OutputError
from lrfind.export import (
    CurveRows,
    staged_run_folder,
    write_atomic,
    write_json,
    write_sweep_csv,
)


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
    (out / "stale.txt").write_text("from an older run")
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
    curve = CurveRows(
        0, np.array([1e-3, 1e-2]), np.array([2.3, math.inf]), np.array([2.3, math.nan])
    )
    repeat = CurveRows(1, np.array([1e-2]), np.array([2.2]), np.array([2.2]), np.array([2.4]))
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
