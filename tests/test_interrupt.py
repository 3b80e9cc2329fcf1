"""Ctrl-C and SIGTERM during a sweep: stop after the step, write what was recorded, exit 130."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrfind.commands import run as pipeline
from lrfind.commands.analyze import analyze_file
from lrfind.core.records import StepRecord
from lrfind.core.settings import REPEATS
from lrfind.settings.options import RunConfig


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
    again = analyze_file(out / "sweep.csv", method="bottom", smoothing=0.9, divergence_factor=4.0)
    assert again.document["interrupted"] is True
    for key in ("max_lr", "base_lr", "lr", "confidence", "repeats", "suggestions", "interval"):
        assert again.document["recommendation"][key] == document["recommendation"][key], key


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_sweep_writes_the_partial_curve_and_exits_130(
    mnist_dir: Path, tmp_path: Path, signal_number: int
) -> None:
    """The installed command, in a real process, with a sweep far longer than the wait."""
    out = tmp_path / "runs" / "run"
    command = Path(sys.executable).parent / "lrfind"
    process = subprocess.Popen(
        [str(command), "run", "--model", "mlp", "--dataset", "mnist", "--data-dir",
         str(mnist_dir), "--no-download", "--batch-size", "32", "--steps", "1000000",
         "--start-lr", "1e-7", "--end-lr", "1e-6", "--device", "cpu", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:  # the sweep starts right after the model is built
        if "building model" in line:
            break
    time.sleep(3.0)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert "Stopping after this step" in stderr and "Interrupted:" in stderr
    document = json.loads((out / "result.json").read_text())
    assert document["interrupted"] is True
    assert document["sweep"]["stop_reason"] == "interrupted"
    steps = document["sweep"]["steps_run"]
    assert 0 < steps < 1_000_000
    with (out / "sweep.csv").open() as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == steps
    assert (out / "sweep.png").stat().st_size > 0
    assert [path.name for path in out.parent.iterdir()] == ["run"]  # no staging folder left
