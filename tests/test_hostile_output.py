"""Output that cannot be written (issue 26, class 5): a pipe closed early (`| head`), a
terminal whose encoding lacks a character, a stream that fails, a disk that fills. A failing
terminal never changes what is on disk or the exit code of a finished command; a disk that
fills leaves nothing behind that blocks the rerun, and an existing run it was to replace
stays whole. Real processes only where the process is the point (a real closed pipe, the
interpreter's own encoding)."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrfind import cli
from lrfind.outputs import files
from lrfind.outputs.curves import write_sweep_csv
from lrfind.outputs.plots import CurveLines
from tests.conftest import files_under, lrfind, said

LRFIND = str(Path(sys.executable).parent / "lrfind")
ENVIRONMENT = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}


def run_arguments(data_dir: Path, out: Path) -> list[str]:
    return ["run", "--dataset", "mnist", "--data-dir", str(data_dir), "--no-download",
            "--steps", "60", "--repeats", "0", "--batch-size", "32", "--device", "cpu",
            "--start-lr", "1e-3", "--end-lr", "10", "--out", str(out)]  # fmt: skip


def curve(path: Path) -> Path:
    lrs = np.geomspace(1e-4, 10.0, 40)
    position = np.log10(lrs) + 1.5
    losses = 0.5 + 1.8 / (1 + np.exp(3 * position)) + np.where(position > 1.5, 30.0, 0.0)
    write_sweep_csv(path, [CurveLines(0, lrs, losses, losses)])
    return path


def assert_whole_run(out: Path) -> dict[str, Any]:
    assert sorted(path.name for path in out.iterdir()) == ["result.json", "sweep.csv", "sweep.png"]
    assert [path.name for path in out.parent.iterdir() if ".partial-" in path.name] == []
    document: dict[str, Any] = json.loads((out / "result.json").read_text())
    return document


# ---------------------------------------------------------------------------------------------
# A real closed pipe and a real ASCII terminal


@pytest.mark.parametrize("together", [False, True], ids=["stdout-closed", "stdout-and-stderr"])
def test_a_pipe_closed_after_two_lines_costs_neither_the_run_nor_its_exit_code(
    mnist_dir: Path, tmp_path: Path, together: bool
) -> None:
    """`lrfind run ... | head -2` (and `2>&1 | head -2`): the sweep finishes, the run folder
    is written whole, and the command exits 0 without a word about the pipe."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        [LRFIND, *run_arguments(mnist_dir, out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if together else subprocess.PIPE,
        env=ENVIRONMENT,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    first = [process.stdout.readline(), process.stdout.readline()]
    process.stdout.close()  # what `head -2` does after its two lines
    stderr = process.stderr.read().decode() if process.stderr is not None else ""
    assert process.wait(timeout=300) == 0, stderr
    assert all(first)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception" not in stderr
    assert assert_whole_run(out)["sweep"]["steps_run"] > 0


def test_a_non_ascii_out_on_an_ascii_terminal_is_printed_as_an_escape(
    mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r\u00e9sultat"
    completed = subprocess.run(
        [LRFIND, *run_arguments(mnist_dir, out)],
        capture_output=True,
        env={**ENVIRONMENT, "PYTHONIOENCODING": "ascii"},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    output = completed.stdout.decode("ascii") + completed.stderr.decode("ascii")
    assert completed.returncode == 0, output
    assert "Traceback" not in output
    assert "r\\xe9sultat" in output  # the path, as an escape the terminal can show
    assert_whole_run(out)


# ---------------------------------------------------------------------------------------------
# A stream that fails, in this process


class Failing:
    """A terminal stream that fails the way `error` says at every write."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        raise self.error

    def flush(self) -> None:
        raise self.error

    def isatty(self) -> bool:
        return False


FAILURES = {
    "broken-pipe": BrokenPipeError(errno.EPIPE, "Broken pipe"),
    "io-error": OSError(errno.EIO, "Input/output error"),
    "disk-full": OSError(errno.ENOSPC, "No space left on device"),
    "closed": ValueError("I/O operation on closed file."),
}


@pytest.fixture(params=list(FAILURES))
def failing_terminal(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    stream = Failing(FAILURES[request.param])
    for terminal in (cli.stdout, cli.stderr):
        monkeypatch.setattr(terminal, "_lost", None)
    monkeypatch.setattr(cli._Terminal, "stream", property(lambda self: stream))
    yield request.param


def test_analyze_writes_the_same_run_whatever_the_terminal_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_terminal: str
) -> None:
    path = curve(tmp_path / "sweep.csv")
    sink = io.StringIO()
    with monkeypatch.context() as working:
        working.setattr(cli._Terminal, "stream", property(lambda self: sink))
        expected_code = lrfind("analyze", path, "--out", tmp_path / "seen").returncode
    result = lrfind("analyze", path, "--out", tmp_path / "unseen")
    assert result.returncode == expected_code, said(result)
    assert "Traceback" not in result.stderr, result.stderr
    seen, unseen = (assert_whole_run(tmp_path / name) for name in ("seen", "unseen"))
    for document in (seen, unseen):
        document.pop("created")
    assert seen == unseen
    assert (tmp_path / "seen" / "sweep.csv").read_bytes() == (
        tmp_path / "unseen" / "sweep.csv"
    ).read_bytes()


def test_apply_edits_the_config_whatever_the_terminal_does(
    tmp_path: Path, failing_terminal: str
) -> None:
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"recommendation": {"base_lr": 0.01, "max_lr": 0.1, "lr": 0.05}}))
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet  # mine\n")
    completed = lrfind("apply", result, config)
    assert completed.returncode == 0, completed.stderr
    assert config.read_text().startswith("model: lenet  # mine\nscheduler:\n  kind: onecycle\n")


def test_an_error_on_a_failing_terminal_keeps_its_exit_code(
    tmp_path: Path, failing_terminal: str
) -> None:
    before = files_under(tmp_path)
    completed = lrfind("apply", tmp_path / "missing.json", tmp_path / "train.yaml")
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    assert files_under(tmp_path) == before


def test_a_character_the_terminal_cannot_encode_is_escaped_in_process(tmp_path: Path) -> None:
    path = curve(tmp_path / "sweep.csv")
    out = tmp_path / "\u00e9t\u00e9-\u2603"
    result = lrfind("analyze", path, "--out", out, charset="ascii")
    assert result.returncode in (0, 1), said(result)
    assert "Traceback" not in result.stderr, result.stderr
    assert "\\xe9t\\xe9-\\u2603" in result.stdout + result.stderr
    assert_whole_run(out)


# ---------------------------------------------------------------------------------------------
# A disk that fills


def full_disk(*arguments: Any, **options: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_disk_full_while_writing_leaves_nothing_and_the_rerun_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = curve(tmp_path / "sweep.csv")
    out = tmp_path / "again"
    before = files_under(tmp_path)
    with monkeypatch.context() as disk:
        disk.setattr(files.os, "fsync", full_disk)
        result = lrfind("analyze", path, "--out", out)
    output = said(result)
    assert result.returncode == 1 and "Traceback" not in output, output
    assert f"cannot write {out}/" in output and "No space left on device" in output
    assert ".partial-" not in output  # the run folder is named, not its staging folder
    assert files_under(tmp_path) == before and not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sweep.csv"]
    rerun = lrfind("analyze", path, "--out", out)  # no --overwrite needed
    assert rerun.returncode in (0, 1), said(rerun)
    assert_whole_run(out)


def test_a_disk_full_before_the_claim_is_written_leaves_no_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = curve(tmp_path / "sweep.csv")
    out = tmp_path / "again"
    original = Path.write_text

    def claim_fails(self: Path, *arguments: Any, **options: Any) -> int:
        if self.name.startswith(files.CLAIM_FILE):
            full_disk()
        return original(self, *arguments, **options)

    with monkeypatch.context() as disk:
        disk.setattr(Path, "write_text", claim_fails)
        result = lrfind("analyze", path, "--out", out)
    output = said(result)
    assert result.returncode == 1 and "No space left on device" in output, output
    assert not out.exists()
    assert lrfind("analyze", path, "--out", out).returncode in (0, 1)
    assert_whole_run(out)


def test_a_disk_full_while_replacing_a_run_keeps_the_old_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = curve(tmp_path / "sweep.csv")
    out = tmp_path / "again"
    assert lrfind("analyze", path, "--out", out).returncode in (0, 1)
    old = files_under(out)
    original = os.replace

    def staging_fails(source: Any, target: Any, *arguments: Any, **options: Any) -> None:
        if ".partial-" in str(source):
            full_disk()
        original(source, target, *arguments, **options)

    with monkeypatch.context() as disk:
        disk.setattr(files.os, "replace", staging_fails)
        result = lrfind("analyze", path, "--out", out, "--overwrite", "--method", "valley")
    output = said(result)
    assert result.returncode == 1 and "No space left on device" in output, output
    assert files_under(out) == old
    assert sorted(path.name for path in tmp_path.iterdir()) == ["again", "sweep.csv"]
