"""torchrun with 2 CPU ranks (gloo): the same curve as one process with the same global batch.

Each rank trains on its half of every global batch inside DistributedDataParallel, which
averages the gradients; the recorded loss is the mean over ranks. That is the single-process
computation split in two, so the curves agree up to float summation order: within 1e-5
relative (measured: 2e-7 on real Fashion-MNIST, 40 steps).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import lrfind

TOLERANCE = 1e-5


def sweep_losses(out: Path) -> list[tuple[int, int, float, float]]:
    with (out / "sweep.csv").open() as handle:
        return [
            (int(row["repeat"]), int(row["step"]), float(row["lr"]), float(row["loss"]))
            for row in csv.DictReader(handle)
        ]


def test_two_ranks_trace_the_single_process_curve(mnist_dir: Path, tmp_path: Path) -> None:
    arguments = [
        "run", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--no-download",
        "--batch-size", "32", "--steps", "40", "--start-lr", "1e-3", "--end-lr", "10",
        "--repeats", "1", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", "-m", "lrfind"]  # fmt: skip
    distributed = subprocess.run(
        [*launcher, *arguments, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert distributed.returncode == 0, distributed.stdout[-3000:] + distributed.stderr[-3000:]
    assert distributed.stdout.count("lrfind recommendation") == 1  # rank 0 alone reports
    single = lrfind(*arguments, "--out", tmp_path / "single")  # in this process, one thread
    assert single.returncode == 0, single.stderr[-3000:]

    ours, reference = sweep_losses(tmp_path / "ddp"), sweep_losses(tmp_path / "single")
    assert [row[:3] for row in ours] == [row[:3] for row in reference]  # same steps and LRs
    assert {row[0] for row in ours} == {0, 1}  # the full sweep and its repeat
    for (*_, loss), (*_, expected) in zip(ours, reference, strict=True):
        assert loss == pytest.approx(expected, rel=TOLERANCE)
    written = sorted(path.name for path in (tmp_path / "ddp").iterdir())
    assert written == ["result.json", "sweep.csv", "sweep.png"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(
    mnist_dir: Path, tmp_path: Path
) -> None:
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "lrfind", "run", "--dataset", "mnist", "--data-dir", str(mnist_dir),
         "--no-download", "--batch-size", "33", "--device", "cpu", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert launched.returncode != 0
    assert "batch_size 33 does not split evenly over 2 ranks" in " ".join(launched.stderr.split())
    assert not (tmp_path / "x").exists()
