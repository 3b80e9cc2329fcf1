"""The real path: the installed `lrfind` command on the real Fashion-MNIST files.

These fail (not skip) when CI is set and the files are missing: see conftest.fashion_mnist_dir.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from lrfind import range_test
from lrfind.core.settings import REPEATS
from lrfind.setup import data
from lrfind.setup.models import build_model
from tests.conftest import invoke

pytestmark = pytest.mark.realdata


class Headline(NamedTuple):
    completed: subprocess.CompletedProcess[str]
    out: Path


def test_real_fashion_mnist_has_its_published_shape_and_statistics(
    fashion_mnist_dir: Path,
) -> None:
    loaded = data.load_builtin("fashion-mnist", fashion_mnist_dir, allow_download=False)
    assert loaded.images.shape == (60_000, 1, 28, 28)
    assert torch.bincount(loaded.labels).tolist() == [6000] * 10
    assert loaded.mean / 255 == pytest.approx(0.2860, abs=5e-4)
    assert loaded.std / 255 == pytest.approx(0.3530, abs=5e-4)
    test_split = data.load_builtin("fashion-mnist", fashion_mnist_dir, False, split="test")
    assert test_split.images.shape == (10_000, 1, 28, 28)


@pytest.fixture(scope="module")
def headline(fashion_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Headline:
    """`lrfind run --model lenet --dataset fashion-mnist` (the command scripts/run.sh runs),
    as installed, in a fresh process: one real sweep, which the tests below share."""
    command = Path(sys.executable).parent / "lrfind"
    out = tmp_path_factory.mktemp("headline") / "headline"
    completed = subprocess.run(
        [str(command), "run", "--model", "lenet", "--dataset", "fashion-mnist",
         "--data-dir", str(fashion_mnist_dir), "--no-download", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    return Headline(completed, out)


def test_headline_command_end_to_end(headline: Headline) -> None:
    completed, out = headline
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert "Traceback" not in completed.stderr
    document = json.loads((out / "result.json").read_text())
    sweep, recommendation = document["sweep"], document["recommendation"]
    # Plain SGD on LeNet learns between ~1e-2 and ~1 and fails above that.
    assert sweep["stop_reason"] == "diverged"
    assert 0.3 < sweep["divergence_lr"] < 10
    assert 1e-3 < recommendation["base_lr"] < recommendation["max_lr"] < sweep["divergence_lr"]
    assert document["data"]["samples"] == 60_000
    # The default plan's focused repeats pin their median within a quarter decade and put
    # the peak clear of the cliff (one-cycle training at 0.56 already loses half its
    # accuracy; see bench_quality.py).
    assert 3 <= recommendation["repeats"] == len(document["repeats"]) <= REPEATS
    assert 0.1 < recommendation["max_lr"] < 0.45
    assert recommendation["interval_log10_width"] <= 0.25
    assert recommendation["confidence"] != "low"
    with (out / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sum(row["repeat"] == "0" for row in rows) == sweep["steps_run"]
    assert len(rows) == document["steps_total"]
    assert (out / "sweep.png").stat().st_size > 10_000


def test_library_range_test_on_real_batches(fashion_mnist_dir: Path) -> None:
    loaded = data.load_builtin("fashion-mnist", fashion_mnist_dir, allow_download=False)
    batches = data.TensorBatches(loaded, batch_size=128, seed=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("mlp", loaded.input_shape, 10)
    optimizer = torch.optim.Adam(model.parameters())
    before = {key: value.clone() for key, value in model.state_dict().items()}
    result = range_test(model, optimizer, nn.functional.cross_entropy, batches,
                        start_lr=1e-6, end_lr=10.0, steps=60, seed=0)  # fmt: skip
    assert result.stop_reason in ("diverged", "non_finite")
    recommendation = result.recommendation
    assert recommendation is not None
    # Adam's useful range for such an MLP is around 1e-4..1e-2.
    assert 1e-5 < recommendation.max_lr < 3e-2
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_train_one_epoch_of_lenet_beats_chance_by_far(
    fashion_mnist_dir: Path, tmp_path: Path, headline: Headline
) -> None:
    """`lrfind train` on the real data, bounds from the headline's real sweep: one epoch of
    one-cycle and the constant baseline both learn (chance is 0.10; one epoch reaches about
    0.75). The fresh sweep `train` runs without --result is test_train's, on tiny data."""
    assert headline.completed.returncode == 0, headline.completed.stderr
    result_file = headline.out / "result.json"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: lenet\ndataset: fashion-mnist\ndata_dir: {fashion_mnist_dir}\n"
        "download: false\nepochs: 1\ndevice: cpu\nscheduler:\n  kind: onecycle\n"
    )
    out = tmp_path / "trained"
    result = invoke(
        "train", "--config", config, "--result", result_file, "--baseline", "constant",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with (out / "history.csv").open() as handle:
        rows = {row["schedule"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"onecycle", "constant"}
    assert all(float(row["test_accuracy"]) > 0.6 for row in rows.values())
    document = json.loads((out / "train.json").read_text())
    assert document["steps_per_epoch"] == 60_000 // 256
    assert "10000 samples" in document["test_set"]
    assert document["bounds_source"] == str(result_file)
