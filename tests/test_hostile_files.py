"""Files cut short (issue 26, class 2): a curve, a result, an option file or a dataset file
that stops where a program still writing it, or a disk that filled, left it. None is read as
data: each is refused with its exit code, a message saying it was cut short and what to do,
no traceback, and every file around as it was. A cut that falls exactly between two rows
leaves a shorter but whole curve, which reads as one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrfind.errors import CurveFileError
from lrfind.outputs.curves import read_curve_csv, write_sweep_csv
from lrfind.outputs.plots import CurveLines
from lrfind.setup import data
from tests.conftest import assert_refused, files_under, lrfind, said

CUT = "as a file does when it was cut short while it was written"


def sweep_csv(path: Path, steps: int = 40, val: bool = False) -> bytes:
    """lrfind's own sweep.csv of a curve with a descent and a divergence at its end."""
    lrs = np.geomspace(1e-4, 10.0, steps)
    position = np.log10(lrs) + 1.5
    losses = 0.5 + 1.8 / (1 + np.exp(3 * position)) + np.where(position > 1.5, 30.0, 0.0)
    val_losses = losses + 0.1 if val else None
    write_sweep_csv(path, [CurveLines(0, lrs, losses, losses, val_losses)])
    return path.read_bytes()


def row_ends(text: bytes) -> set[int]:
    return {index + 1 for index, byte in enumerate(text) if byte == ord("\n")}


@pytest.mark.parametrize("val", [False, True], ids=["no-val-loss", "with-val-loss"])
def test_a_sweep_csv_cut_at_any_byte_of_its_last_rows_is_never_a_curve(
    tmp_path: Path, val: bool
) -> None:
    whole = sweep_csv(tmp_path / "whole.csv", val=val)
    ends = row_ends(whole)
    start = sorted(ends)[-3]  # every byte of the last two rows
    for length in range(start, len(whole)):
        path = tmp_path / "sweep.csv"
        path.write_bytes(whole[:length])
        if length in ends:  # cut between rows: a shorter, whole curve
            (curve,) = read_curve_csv(path)
            assert len(curve.lrs) == whole[:length].count(b"\n") - 1
            continue
        with pytest.raises(CurveFileError) as raised:
            read_curve_csv(path)
        assert CUT in str(raised.value), (length, str(raised.value))
        assert str(path) in str(raised.value)


def test_analyze_refuses_a_cut_sweep_csv_and_writes_nothing(tmp_path: Path) -> None:
    whole = sweep_csv(tmp_path / "sweep.csv")
    cut = whole[: len(whole) - 12]
    (tmp_path / "sweep.csv").write_bytes(cut)
    last = cut.decode().rsplit("\n", 1)[-1]
    before = files_under(tmp_path)
    result = lrfind("analyze", tmp_path / "sweep.csv", "--out", tmp_path / "again")
    assert_refused(
        result,
        2,
        "sweep.csv is not a complete CSV",
        f"its last line, {last!r}, stops without the line",
        CUT,
        "If that row is whole, end the file with a line break",
        before=before,
        root=tmp_path,
    )
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_curve_in_a_wide_encoding_is_named_for_its_encoding(
    tmp_path: Path, encoding: str
) -> None:
    text = "lr,loss\n" + "".join(
        f"{10 ** (-5 + i / 4):.6g},{2.3 - i * 0.05:.4f}\n" for i in range(30)
    )
    (tmp_path / "wide.csv").write_text(text, encoding=encoding)
    before = files_under(tmp_path)
    result = lrfind("analyze", tmp_path / "wide.csv", "--out", tmp_path / "again")
    assert_refused(result, 2, "is not UTF-8 text", "Pass a UTF-8 CSV file", before=before,
                   root=tmp_path)  # fmt: skip
    assert "cut short" not in said(result)


FOREIGN = "lr,loss\n" + "".join(
    f"{10 ** (-5 + index / 4):.6g},{2.3 - index * 0.05:.4e}\n" for index in range(30)
)


@pytest.mark.parametrize(
    ("name", "text", "phrases"),
    [
        pytest.param("mid-exponent.csv", FOREIGN[:-4], ["stops without the line break"],
                     id="foreign-cut-inside-an-exponent"),
        pytest.param("mid-mantissa.csv", FOREIGN[:-9], ["stops without the line break"],
                     id="foreign-cut-inside-a-number"),
        pytest.param("no-loss.csv", FOREIGN + "30.0\n", ["its last row, '30.0', has 1 of the 2",
                     "a missing one is a row that stops early"], id="partial-row-with-break"),
        pytest.param("crlf.csv", FOREIGN.replace("\n", "\r\n")[:-3],
                     ["stops without the line break"], id="crlf-cut"),
        pytest.param("quoted.csv", 'note,lr,loss\n' + "".join(
            f'"a, b",{10 ** (-5 + i / 4):.6g},{2.3 - i * 0.05}\n' for i in range(20))
            + '"a, b",1.0\n', ["has 2 of the 3 cells"], id="quoted-cells-partial-row"),
        pytest.param("utf8.csv", ("lr,loss,note\n" + "".join(
            f"{10 ** (-5 + i / 4):.6g},{2.3 - i * 0.05},\u00e9t\u00e9\n" for i in range(20))
            + "1.0,0.5,\u00e9t\u00e9\n").encode()[:-3], ["stops without the line break"],
            id="cut-inside-a-utf8-character"),
        pytest.param("repeat.csv", "repeat,lr,loss\n" + "".join(
            f"0,{10 ** (-5 + i / 4):.6g},{2.3 - i * 0.05}\n" for i in range(20))
            + "1,0.001,2.2\n1,0.0", ["stops without the line break"], id="cut-inside-a-repeat"),
    ],
)  # fmt: skip
def test_other_tools_curves_cut_short_are_refused(
    tmp_path: Path, name: str, text: str | bytes, phrases: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = files_under(tmp_path)
    result = lrfind("analyze", path, "--out", tmp_path / "out")
    assert_refused(
        result, 2, f"{name} is not a complete CSV", CUT, *phrases, before=before, root=tmp_path
    )


@pytest.mark.parametrize(
    "text",
    [FOREIGN + "\n\n", FOREIGN + "   ", FOREIGN.replace("\n", "\r\n"), FOREIGN + "1000.0,\n"],
    ids=["blank-lines", "trailing-spaces", "crlf", "empty-last-loss"],
)
def test_whole_curves_that_end_oddly_still_read(tmp_path: Path, text: str) -> None:
    path = tmp_path / "curve.csv"
    path.write_text(text, newline="")
    (curve,) = read_curve_csv(path)
    assert len(curve.lrs) in (30, 31)


def test_sweep_csv_bytes_of_a_valid_run_are_unchanged(tmp_path: Path) -> None:
    """The rule reads; it never changes what lrfind writes (every row ends with a break)."""
    whole = sweep_csv(tmp_path / "sweep.csv", val=True)
    assert whole.endswith(b"\n") and whole.count(b"\n") == 41
    result = lrfind("analyze", tmp_path / "sweep.csv", "--out", tmp_path / "again")
    assert result.returncode in (0, 1), said(result)
    assert (tmp_path / "sweep.csv").read_bytes() == whole


# ---------------------------------------------------------------------------------------------
# Documents cut short


def test_a_result_json_cut_at_any_byte_is_refused_by_apply(tmp_path: Path) -> None:
    document = {
        "format_version": 2,
        "data": {"steps_per_epoch": 234},
        "recommendation": {"base_lr": 0.0453, "max_lr": 0.2561, "lr": 0.0853, "note": "é"},
    }
    whole = json.dumps(document, indent=2, ensure_ascii=False).encode()
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\n")
    step = max(1, len(whole) // 40)
    for length in [*range(1, len(whole) - 1, step), len(whole) - 1]:
        path = tmp_path / "result.json"
        path.write_bytes(whole[:length])
        before = files_under(tmp_path)
        result = lrfind("apply", path, config)
        output = said(result)
        assert result.returncode == 2, (length, output)
        assert "Traceback" not in output
        cut = "it ends inside the document" in output and CUT in output
        assert cut or "UTF-8" in output, (length, output)
        assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("options.yaml", "steps: 40\nscheduler: {kind: onecycle, max"),
        ("options.yaml", 'model: "len'),
        ("options.toml", 'steps = 40\nmodel = "len'),
        ("options.toml", "steps = 40\nrepeats = [1, 2"),
        ("options.json", '{"steps": 40, "model": "le'),
        ("options.json", '{"steps": 40'),
    ],
    ids=["yaml-flow", "yaml-quote", "toml-string", "toml-array", "json-string", "json-object"],
)
def test_an_option_file_cut_short_is_refused_before_any_work(
    tmp_path: Path, name: str, text: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    before = files_under(tmp_path)
    result = lrfind("run", "--config", config, "--out", tmp_path / "run")
    assert_refused(
        result,
        2,
        f"config file {config} is not readable",
        "it ends inside the document",
        CUT,
        before=before,
        root=tmp_path,
    )


def test_a_training_config_cut_short_is_refused_by_apply(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"recommendation": {"base_lr": 0.01, "max_lr": 0.1, "lr": 0.05}}))
    config = tmp_path / "train.toml"
    config.write_text('epochs = 5\nscheduler = { kind = "onecycle", max_lr = 0.')
    before = files_under(tmp_path)
    completed = lrfind("apply", result, config)
    assert_refused(
        completed, 2, "training config", "not readable TOML", CUT, before=before, root=tmp_path
    )


def test_analyze_notes_a_cut_result_json_beside_the_curve(tmp_path: Path) -> None:
    sweep_csv(tmp_path / "sweep.csv")
    (tmp_path / "result.json").write_text('{"format_version": 2, "sweep": {"stop_')
    completed = lrfind("analyze", tmp_path / "sweep.csv", "--out", tmp_path / "again")
    assert completed.returncode in (0, 1) and "Traceback" not in said(completed), said(completed)
    written = json.loads((tmp_path / "again" / "result.json").read_text())
    assert any("could not tell which sweeps" in note for note in written["diagnostics"])


# ---------------------------------------------------------------------------------------------
# Dataset files cut short


def run_arguments(data_dir: Path, out: Path) -> list[Any]:
    return ["run", "--dataset", "mnist", "--data-dir", data_dir, "--no-download",
            "--steps", "20", "--repeats", "0", "--batch-size", "32", "--device", "cpu",
            "--out", out]  # fmt: skip


@pytest.mark.parametrize("which", [0, 1], ids=["images", "labels"])
@pytest.mark.parametrize("share", [0.01, 0.5, 0.999])
def test_a_truncated_gzip_dataset_file_is_refused(
    mnist_dir: Path, tmp_path: Path, which: int, share: float
) -> None:
    path = mnist_dir / f"{data.idx_filenames('train')[which]}.gz"
    whole = path.read_bytes()
    path.write_bytes(whole[: max(1, int(len(whole) * share))])
    root = mnist_dir.parent
    before = files_under(root)
    result = lrfind(*run_arguments(mnist_dir, tmp_path / "run"))
    assert_refused(
        result, 1, str(path), "Delete it and fetch the dataset again", before=before, root=root
    )
    output = said(result)
    assert "damaged or truncated gzip" in output or "too short" in output or "empty" in output


@pytest.mark.parametrize("cut", [3, 10, 7])
def test_a_truncated_raw_idx_file_is_refused(mnist_dir: Path, tmp_path: Path, cut: int) -> None:
    name = data.idx_filenames("train")[1]
    raw = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
    (mnist_dir / f"{name}.gz").unlink()
    (mnist_dir / name).write_bytes(raw[: len(raw) - cut] if cut != 10 else raw[:10])
    root = mnist_dir.parent
    before = files_under(root)
    result = lrfind(*run_arguments(mnist_dir, tmp_path / "run"))
    assert_refused(result, 1, str(mnist_dir / name), "truncated", "again", before=before, root=root)
