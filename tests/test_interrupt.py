"""Ctrl-C, SIGTERM and SIGHUP during a sweep: stop after the step, write what was recorded,
exit 130; before the sweep, write nothing."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from lrfind.commands import run as pipeline
from lrfind.commands.analyze import analyze_file
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.records import StepRecord
from lrfind.core.settings import REPEATS
from lrfind.settings.options import RunConfig
from tests.conftest import (
    PNG_MAGIC,
    files_under,
    leftovers,
    lrfind,
    read_result,
    said,
    signal_when,
    started,
    tiny_run_arguments,
    write_python,
)


def test_a_stop_during_the_repeats_keeps_the_finished_ones(mnist_dir: Path, tmp_path: Path) -> None:
    records: list[StepRecord] = []
    sweeps: list[int] = []
    out = tmp_path / "run"
    outcome = pipeline.run(
        RunConfig(dataset="mnist", data_dir=mnist_dir, download=False, batch_size=32,
                  steps=40, start_lr=1e-3, end_lr=10.0, out=out, device="cpu"),
        on_step=records.append,
        on_sweep=lambda repeats, settings: sweeps.extend(repeats),
        stop_requested=lambda: len(sweeps) == 3 and records[-1].step == 4,
    )  # fmt: skip
    assert outcome.search.interrupted
    assert sweeps == [0, 1, 2] and len(outcome.search.sweeps[2].result.records) == 5
    recommendation = outcome.search.recommendation
    assert recommendation is not None and recommendation.repeats == 1
    document = json.loads((out / "result.json").read_text())
    assert document["interrupted"] is True
    assert document["repeats"][1]["stop_reason"] == "interrupted"
    assert any(f"Interrupted during repeat 2 (of at most {REPEATS})" in note
               for note in document["diagnostics"])  # fmt: skip
    with (out / "sweep.csv").open() as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == document["steps_total"]
    # Re-read from its sweep.csv, the run gives the answer its result.json holds: the cut
    # repeat is left out of the median as the run left it out.
    again = analyze_file(
        out / "sweep.csv", method=DEFAULT_METHOD, smoothing=0.9, divergence_factor=4.0
    )
    assert again.document["interrupted"] is True
    for key in ("max_lr", "base_lr", "lr", "confidence", "repeats", "suggestions", "interval"):
        assert again.document["recommendation"][key] == document["recommendation"][key], key


# A real process, signalled mid-sweep: the point of these tests is the signal itself.


@pytest.mark.parametrize(
    "signal_number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"]
)
def test_a_signal_mid_sweep_writes_the_partial_curve_and_exits_130(
    mnist_dir: Path, tmp_path: Path, signal_number: int
) -> None:
    """The installed command, in a real process, with a sweep far longer than the wait,
    stopped 3 s into it: the steps so far are written, nothing else is touched."""
    out = tmp_path / "runs" / "run"
    arguments = tiny_run_arguments(mnist_dir, out)
    for flag, value in (("--steps", "1000000"), ("--start-lr", "1e-7"), ("--end-lr", "1e-6")):
        arguments[arguments.index(flag) + 1] = value
    before = files_under(tmp_path)
    with started(*arguments, "--model", "mlp") as process:
        # The sweep starts right after the model is built.
        stdout, stderr = signal_when(process, "building model", 3.0, signal_number)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "Stopping after this step" in stderr and "Interrupted:" in stderr
    document = read_result(out)
    assert document["interrupted"] is True
    assert document["sweep"]["stop_reason"] == "interrupted"
    steps = document["sweep"]["steps_run"]
    assert 0 < steps < 1_000_000
    with (out / "sweep.csv").open() as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == steps
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert [path.name for path in out.parent.iterdir()] == ["run"]  # no staging folder left
    assert files_under(tmp_path, out.parent) == before
    assert leftovers(tmp_path) == []


def test_a_signal_while_a_factory_loads_writes_nothing(tmp_path: Path) -> None:
    """Before the sweep there is nothing to keep: exit 130 and no folder at all."""
    factory = write_python(
        tmp_path / "slow_data.py", "def build():\n    time.sleep(120)\n", imports="import time\n"
    )
    before = files_under(tmp_path)
    arguments = ["run", "--dataset", f"{factory}:build", "--device", "cpu", "--out"]
    with started(*arguments, tmp_path / "run") as process:
        stdout, stderr = signal_when(process, "loading data", 0.5, signal.SIGINT)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "Interrupted; nothing was written." in stderr
    assert files_under(tmp_path) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("signals", [1, 2])
def test_a_signal_while_the_results_are_written_finishes_them_and_a_second_aborts(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signals: int
) -> None:
    """After the sweeps, one stop signal lets the run folder be written whole (exit 130, not
    a lost run); a second one aborts and writes nothing."""
    write = pipeline.write_curve_files

    def signalled_write(*arguments: Any, **options: Any) -> None:
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)
        write(*arguments, **options)

    monkeypatch.setattr(pipeline, "write_curve_files", signalled_write)
    out = tmp_path / "run"
    arguments = [*tiny_run_arguments(mnist_dir, out)[1:], "--repeats", "0"]
    ran = lrfind("run", *arguments)
    assert ran.returncode == 130, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    if signals == 1:
        assert "finishing writing the results" in said(ran)
        assert "the results were written whole" in said(ran)
        document = json.loads((out / "result.json").read_text())
        assert document["interrupted"] is False and document["recommendation"] is not None
        assert sorted(path.name for path in out.iterdir()) == [
            "result.json",
            "sweep.csv",
            "sweep.png",
        ]
    else:
        assert "nothing was written" in said(ran)
        assert not out.exists() and leftovers(tmp_path) == []
