"""The command line: what reaches the pipeline, what is written, and every bad input."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from lrfind.cli import app
from lrfind.commands import run as pipeline
from lrfind.core.methods import DEFAULT_METHOD, METHODS
from lrfind.core.settings import REPEATS
from lrfind.settings.options import RunConfig
from lrfind.setup import models
from tests.conftest import (
    assert_clean_failure,
    invoke,
    tiny_run_arguments,
    write_mnist_files,
    write_python,
)


def test_run_writes_the_curve_the_plot_and_the_result(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "tiny"
    result = invoke(*tiny_run_arguments(mnist_dir, out))
    assert result.exit_code == 0, result.output
    assert "max_lr" in result.output and "OneCycleLR(optimizer, max_lr=" in result.output

    with (out / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["repeat", "step", "lr", "loss", "smoothed_loss", "val_loss"]
    full = [row for row in rows if row["repeat"] == "0"]
    assert [int(row["step"]) for row in full] == list(range(len(full)))
    assert float(rows[0]["lr"]) == 1e-3
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    document = json.loads((out / "result.json").read_text())
    recommendation = document["recommendation"]
    assert 0 < recommendation["base_lr"] < recommendation["max_lr"] < 100
    assert recommendation["confidence"] in ("high", "medium", "low")
    assert recommendation["schedules"]["triangular"]["step_size_up"] == 4 * (600 // 32)
    assert document["config"]["seed"] == 0 and document["config"]["out"] == str(out)
    assert document["sweep"]["steps_run"] == len(full)
    repeats = recommendation["repeats"]  # at least 3; more until their median is pinned
    assert 3 <= repeats <= REPEATS
    assert len(document["repeats"]) == repeats == len({row["repeat"] for row in rows}) - 1
    assert document["steps_total"] == len(rows)
    assert 1 <= len(recommendation["suggestions"]) <= repeats
    low, high = recommendation["interval"]
    assert low <= recommendation["max_lr"] <= high
    assert document["sweep"]["stop_reason"] in ("diverged", "non_finite", "completed")
    assert document["environment"]["packages"]["torch"]
    assert document["data"]["source"] == str(mnist_dir)
    assert document["timings"]["sweep_s"] > 0
    assert [path.name for path in out.parent.iterdir()] == ["tiny"]


def test_existing_run_is_kept_without_overwrite_and_replaced_with_it(
    mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "run"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--repeats", "1")
    assert result.exit_code == 0, result.output
    first = (out / "result.json").read_bytes()
    result = invoke(*tiny_run_arguments(mnist_dir, out))
    assert_clean_failure(result, 1, "already exists. Pass --overwrite", out=None)
    assert (out / "result.json").read_bytes() == first

    result = invoke(*tiny_run_arguments(mnist_dir, out), "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == ["result.json", "sweep.csv", "sweep.png"]
    assert (out / "result.json").read_bytes() != first
    assert [path.name for path in out.parent.iterdir()] == ["run"]


def test_overwrite_refuses_a_folder_that_is_not_an_lrfind_run(
    mnist_dir: Path, tmp_path: Path
) -> None:
    """--overwrite replaces an lrfind run; a project folder (or a folder with a stray file
    beside a run's) is refused before any work, byte for byte as it was."""
    project = tmp_path / "myproject"
    (project / "data").mkdir(parents=True)
    (project / "train.py").write_text("print('mine')\n")
    (project / "data" / "x.bin").write_bytes(b"\x00\x01")
    result = invoke(*tiny_run_arguments(mnist_dir, project), "--overwrite")
    assert_clean_failure(result, 1, "is not one: it holds data, train.py", out=None)
    assert (project / "train.py").read_text() == "print('mine')\n"
    assert (project / "data" / "x.bin").read_bytes() == b"\x00\x01"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
    stray = tmp_path / "almost-a-run"
    stray.mkdir()
    (stray / "sweep.csv").write_text("lr,loss\n")
    result = invoke(*tiny_run_arguments(mnist_dir, stray), "--overwrite")
    assert_clean_failure(result, 1, "it has no result.json or train.json", out=None)


def test_out_cannot_be_the_current_folder_or_above_it(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", "..", str(work)):
        result = invoke(*tiny_run_arguments(mnist_dir, Path(out)), "--overwrite")
        assert_clean_failure(result, 1, "is the current folder or one that holds it", out=None)
    assert list(work.iterdir()) == []
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_a_new_run_folder_follows_the_umask(mnist_dir: Path, tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        result = invoke(*tiny_run_arguments(mnist_dir, tmp_path / "run"), "--repeats", "0")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "run" / "result.json").stat().st_mode & 0o777 == 0o640


@pytest.fixture(scope="module")
def real_outcome(tmp_path_factory: pytest.TempPathFactory) -> pipeline.RunOutcome:
    """A real tiny run's outcome, made once for the tests that patch the pipeline."""
    folder = tmp_path_factory.mktemp("real")
    return pipeline.run(
        RunConfig(dataset="mnist", data_dir=write_mnist_files(folder / "mnist-files"),
                  download=False, batch_size=32, steps=40, start_lr=1e-3, end_lr=10.0,
                  out=folder / "real", device="cpu")
    )  # fmt: skip


@pytest.fixture
def captured_config(
    monkeypatch: pytest.MonkeyPatch, real_outcome: pipeline.RunOutcome
) -> list[RunConfig]:
    """Patch the pipeline: record the config it gets, answer with a real tiny outcome."""
    received: list[RunConfig] = []

    def fake_run(config: RunConfig, **_: Any) -> pipeline.RunOutcome:
        received.append(config)
        return real_outcome

    monkeypatch.setattr(pipeline, "run", fake_run)
    return received


def test_flags_override_the_config_file(captured_config: list[RunConfig], tmp_path: Path) -> None:
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text("steps: 50\noptimizer: adam\nbatch_size: 64\n")
    result = invoke("run", "--config", config_file, "--steps", "120", "--model", "mlp", "-q")
    assert result.exit_code == 0, result.output
    (config,) = captured_config
    assert (config.steps, config.optimizer, config.batch_size) == (120, "adam", 64)
    assert (config.model, config.quiet, config.end_lr) == ("mlp", True, 10.0)


def test_every_flag_reaches_the_pipeline(captured_config: list[RunConfig], tmp_path: Path) -> None:
    result = invoke(
        "run", "--model", "cnn", "--dataset", "mnist", "--data-dir", tmp_path, "--no-download",
        "--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "5e-4",
        "--batch-size", "128", "--start-lr", "1e-6", "--end-lr", "3", "--steps", "60",
        "--mode", "linear", "--smoothing", "0.8", "--divergence-factor", "5",
        "--method", "minimum", "--seed", "7", "--device", "cpu", "--out", tmp_path / "o",
        "--overwrite", "--quiet", "--repeats", "2", "--no-refine", "--auto-range",
        "--val-batches", "3", "--weights", tmp_path / "w.pt",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (config,) = captured_config
    assert config == RunConfig(
        model="cnn", dataset="mnist", data_dir=tmp_path, download=False, optimizer="sgd",
        momentum=0.9, weight_decay=5e-4, batch_size=128, start_lr=1e-6, end_lr=3.0, steps=60,
        mode="linear", smoothing=0.8, divergence_factor=5.0, method="minimum", seed=7,
        device="cpu", out=tmp_path / "o", overwrite=True, quiet=True, repeats=2, refine=False,
        auto_range=True, val_batches=3, weights=tmp_path / "w.pt",
    )  # fmt: skip


def test_list_names_models_and_datasets() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    for name in ("lenet", "mlp", "cnn", "torchvision:<name>", "fashion-mnist", "mnist"):
        assert name in result.output


def test_env_reports_versions_and_devices() -> None:
    result = invoke("env")
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "auto device" in result.output


@pytest.mark.parametrize(
    ("extra", "exit_code", "message"),
    [
        (["--model", "resnet"], 2, "unknown model 'resnet'"),
        (["--dataset", "cifar10"], 2, "unknown dataset 'cifar10'. Built-in datasets:"),
        (["--start-lr", "1", "--end-lr", "0.1"], 2, "start_lr must be below end_lr; got 1 >= 0.1"),
        (["--steps", "5"], 2, "steps must be between 10"),
        (["--batch-size", "-4"], 2, "batch_size must be a positive integer; got -4"),
        (["--start-lr", "-1e-3"], 2, "start_lr must be a positive"),
        (["--optimizer", "lion"], 2, "unknown optimizer 'lion'. torch.optim has: adadelta"),
        (["--optimizer-arg", "alpha"], 2, "--optimizer-arg 'alpha' is not name=value"),
        (["--optimizer", "adam", "--momentum", "0.9"], 2, "momentum applies to optimizers with"),
        (["--model", "missing_file.py:build"], 2, "file missing_file.py does not exist"),
        (["--device", "cuda"], 2, "sees no CUDA device"),
        (["--steps", "many"], 2, "steps in flags must be an integer; got 'many'"),
        (["--end-lr", "high"], 2, "end_lr in flags must be a number; got 'high'"),
        (["--momentum", "0.9x"], 2, "momentum in flags must be a number; got '0.9x'"),
        (["--repeats", "-2"], 2, "repeats must be between 0 and 100; got -2"),
        (["--val-batches", "-1"], 2, "val_batches must be between 0 and 1000; got -1"),
    ],
)
def test_bad_flags_fail_cleanly_before_any_output(
    mnist_dir: Path, tmp_path: Path, extra: list[str], exit_code: int, message: str
) -> None:
    out = tmp_path / "out"
    result = invoke(*tiny_run_arguments(mnist_dir, out), *extra)
    assert_clean_failure(result, exit_code, message, out)


def test_unknown_config_key_fails_with_the_file_name(tmp_path: Path) -> None:
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text("learning_rate: 0.1\n")
    result = invoke("run", "--config", config_file)
    assert_clean_failure(result, 2, f"unknown option 'learning_rate' in {config_file}", out=None)


def test_data_missing_offline_says_how_to_get_it(isolated_data: Path, tmp_path: Path) -> None:
    result = invoke("run", "--no-download", "--out", tmp_path / "out")
    assert_clean_failure(
        result, 1, "fashion-mnist was not found and --no-download is set", tmp_path / "out"
    )
    assert "apt-get install dataset-fashion-mnist" in result.output


def test_corrupt_idx_file_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    labels = mnist_dir / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(b"not gzip at all")
    result = invoke(*tiny_run_arguments(mnist_dir, tmp_path / "out"))
    assert_clean_failure(result, 1, f"{labels} is named .gz but is not gzip data", tmp_path / "out")


@pytest.mark.parametrize(
    ("body", "function", "message"),
    [
        ("def build():\n    return 'a model'\n", "build", "returned a str, not a torch.nn.Module"),
        (
            "def build():\n    return nn.Linear(784, 10)\n",
            "make",
            "has no function 'make'. Functions it defines: build",
        ),
        (
            "def build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 3))\n",
            "build",
            "returns 3 outputs per sample, but the dataset has 10 classes",
        ),
    ],
    ids=["wrong-type", "missing-function", "output-does-not-fit"],
)
def test_bad_model_factories_fail_cleanly(
    mnist_dir: Path, tmp_path: Path, body: str, function: str, message: str
) -> None:
    path = write_python(tmp_path / "user_model.py", body)
    out = tmp_path / "out"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--model", f"{path}:{function}")
    assert_clean_failure(result, 2, message, out)


def test_nan_loss_at_the_first_step(mnist_dir: Path, tmp_path: Path) -> None:
    path = write_python(
        tmp_path / "user_model.py",
        "class NaNNet(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.linear = nn.Linear(784, 10)\n"
        "    def forward(self, x):\n"
        "        return self.linear(x.flatten(1)) * float('nan')\n\n"
        "def build():\n    return NaNNet()\n",
    )
    out = tmp_path / "out"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--model", f"{path}:build")
    assert_clean_failure(result, 1, "the loss was nan at the very first step", out)


def test_output_under_something_not_a_folder_fails_before_the_sweep(
    mnist_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "results.txt"  # a file where the run folder's parent should be
    blocker.write_text("not a folder")
    result = invoke(*tiny_run_arguments(mnist_dir, blocker / "run"))
    assert_clean_failure(result, 1, f"{blocker} is not a writable folder", out=None)
    assert "sweeping" not in result.output
    assert blocker.read_text() == "not a folder"


def test_user_dataset_and_user_model_run_end_to_end(isolated_data: Path, tmp_path: Path) -> None:
    factories = write_python(
        tmp_path / "project.py",
        "from torch.utils.data import TensorDataset\n\n"
        "def train_set():\n"
        "    generator = torch.Generator().manual_seed(0)\n"
        "    inputs = torch.randn(512, 3, 8, 8, generator=generator)\n"
        "    targets = inputs.mean(dim=(2, 3)).argmax(dim=1)\n"
        "    dataset = TensorDataset(inputs, targets)\n"
        "    dataset.classes = ['red', 'green', 'blue']\n"
        "    return dataset\n\n"
        "def net(num_classes, input_shape):\n"
        "    channels, height, width = input_shape\n"
        "    inputs = channels * height * width\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, num_classes))\n",
    )
    out = tmp_path / "runs" / "user"
    result = invoke(
        "run", "--dataset", f"{factories}:train_set", "--model", f"{factories}:net",
        "--batch-size", "128", "--steps", "40", "--start-lr", "1e-2", "--end-lr", "1e2",
        "--out", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((out / "result.json").read_text())
    assert document["data"]["input_shape"] == [3, 8, 8]
    assert document["data"]["num_classes"] == 3
    assert document["data"]["steps_per_epoch"] == 512 // 128
    assert document["model"]["parameters"] == 3 * 8 * 8 * 3 + 3
    assert document["recommendation"]["max_lr"] is not None


def test_interrupt_exits_130_without_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted(config: RunConfig, **_: Any) -> pipeline.RunOutcome:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    result = invoke("run", "--out", tmp_path / "run")
    assert_clean_failure(result, 130, "Interrupted; nothing was written.", tmp_path / "run")


def test_a_curve_without_descent_exits_1_and_keeps_the_curve(
    mnist_dir: Path, tmp_path: Path
) -> None:
    """Starting far above the useful range: the loss diverges at once, so there is no rate to
    recommend; the run says so, exits 1, and still writes the curve for inspection."""
    out = tmp_path / "runs" / "too-high"
    arguments = tiny_run_arguments(mnist_dir, out)
    arguments[arguments.index("--start-lr") + 1] = "100"
    arguments[arguments.index("--end-lr") + 1] = "1e6"
    result = invoke(*arguments)
    assert result.exit_code == 1, result.output
    assert "No recommendation" in result.output and "Lower --start-lr" in result.output
    assert "max_lr" not in result.output and "OneCycleLR" not in result.output
    assert "Traceback" not in result.output
    document = json.loads((out / "result.json").read_text())
    assert document["recommendation"] is None
    assert any("lower --start-lr" in reason for reason in document["no_recommendation"])
    assert (out / "sweep.csv").is_file() and (out / "sweep.png").is_file()


def test_analyze_reproduces_the_runs_recommendation_from_its_csv(
    mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "tiny"
    assert invoke(*tiny_run_arguments(mnist_dir, out)).exit_code == 0
    result = invoke("analyze", out / "sweep.csv")
    assert result.exit_code == 0, result.output
    again = json.loads((out / f"reanalysed-{DEFAULT_METHOD}" / "result.json").read_text())
    original = json.loads((out / "result.json").read_text())
    for key in ("base_lr", "max_lr", "lr", "interval", "suggestions"):
        assert again["recommendation"][key] == pytest.approx(original["recommendation"][key])
    assert again["sweep"]["divergence_step"] == original["sweep"]["divergence_step"]
    assert (out / f"reanalysed-{DEFAULT_METHOD}" / "sweep.png").is_file()


def test_analyze_reads_a_foreign_csv_with_any_method(tmp_path: Path) -> None:
    """A descent centred at step 35 of 60, then an explosion from step 52."""
    rows = []
    for index in range(60):
        loss = 2.3 - 1.5 / (1 + 10 ** (-(index - 35) / 6)) + max(0, index - 52)
        rows.append(f"{10 ** (-6 + index / 10)},{loss}\n")
    path = tmp_path / "other-tool.csv"
    path.write_text("lr,loss\n" + "".join(rows))
    for method in METHODS:
        result = invoke("analyze", path, "--method", method, "--out", tmp_path / method)
        assert result.exit_code == 0, result.output
        document = json.loads((tmp_path / method / "result.json").read_text())
        assert document["recommendation"]["method"] == method
        assert 1e-6 < document["recommendation"]["max_lr"] < 10 ** (-6 + 52 / 10)


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        ("rate,value\n1,2\n", 2, "has no 'lr' or 'loss' column"),
        ("lr,loss\n" + "1e-3,2.3\n" * 12, 2, "repeats the one before"),
        (None, 2, "does not exist"),
    ],
)
def test_analyze_refuses_bad_files_cleanly(
    tmp_path: Path, content: str | None, code: int, message: str
) -> None:
    path = tmp_path / "curve.csv"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    result = invoke("analyze", path, "--out", out)
    assert_clean_failure(result, code, message, out)


def test_analyze_refuses_an_unknown_method(tmp_path: Path) -> None:
    result = invoke("analyze", tmp_path / "x.csv", "--method", "magic")
    assert_clean_failure(result, 2, "unknown method 'magic'", None)


def test_val_batches_record_a_held_out_curve(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "val"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--val-batches", "2", "--repeats", "1")
    assert result.exit_code == 0, result.output
    with (out / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(row["val_loss"]) > 0 for row in rows)
    document = json.loads((out / "result.json").read_text())
    assert document["data"]["held_out_samples"] == 64
    assert document["data"]["steps_per_epoch"] == (600 - 64) // 32


def test_val_batches_that_leave_no_training_data_are_refused(
    mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "val"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--val-batches", "19")
    assert_clean_failure(result, 2, "--val-batches 19 holds out 608 of the dataset's 600", out)


def test_weights_start_every_sweep_from_the_checkpoint(mnist_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(5)
    checkpoint = tmp_path / "start.pt"
    torch.save(models.build_model("lenet", (1, 28, 28), 10).state_dict(), checkpoint)
    first_losses = []
    runs = {
        "fresh": [],
        "from-weights": ["--weights", checkpoint],
        "other-order": ["--weights", checkpoint, "--seed", "3"],
    }
    for name, extra in runs.items():
        out = tmp_path / name
        result = invoke(*tiny_run_arguments(mnist_dir, out), "--repeats", "0", *extra)
        assert result.exit_code == 0, result.output
        first_losses.append(json.loads((out / "result.json").read_text())["sweep"]["first_loss"])
    fresh, from_weights, other_order = first_losses
    assert from_weights != fresh  # another starting point than the seeded initialisation
    assert other_order != from_weights  # same weights, another first batch


def test_weights_that_do_not_exist_fail_before_any_work(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--weights", tmp_path / "no.pt")
    assert_clean_failure(result, 2, f"--weights {tmp_path / 'no.pt'} does not exist", out)


def test_weights_of_another_model_are_refused_with_the_keys(
    mnist_dir: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "mlp.pt"
    torch.save(models.build_model("mlp", (1, 28, 28), 10).state_dict(), checkpoint)
    out = tmp_path / "run"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--weights", checkpoint)
    assert_clean_failure(result, 2, "does not match the model (missing from the file: 0.bias", out)


@pytest.mark.parametrize("failing_write", [1, 2, 3])
def test_a_disk_that_fills_up_while_writing_leaves_nothing_half_written(
    monkeypatch: pytest.MonkeyPatch, mnist_dir: Path, tmp_path: Path, failing_write: int
) -> None:
    """ENOSPC on the first, second or third file (sweep.csv, sweep.png, result.json), and
    the previous run in the folder, replaced with --overwrite, must survive intact."""
    out = tmp_path / "runs" / "run"
    out.mkdir(parents=True)
    (out / "result.json").write_text('{"previous": true}')
    real_fsync = os.fsync
    calls = []

    def filling_fsync(descriptor: int) -> None:
        calls.append(descriptor)
        if len(calls) == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", filling_fsync)
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--overwrite", "--repeats", "1")
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "No space left on device" in message and "disk has space" in message
    assert "Traceback" not in result.output
    assert [path.name for path in out.parent.iterdir()] == ["run"]
    assert [path.name for path in out.iterdir()] == ["result.json"]
    assert (out / "result.json").read_text() == '{"previous": true}'


def test_precision_and_accumulation_reach_the_engine_and_result(
    monkeypatch: pytest.MonkeyPatch, mnist_dir: Path, tmp_path: Path
) -> None:
    """Every sweep of the plan gets the flags, its model is in channels-last memory, and
    result.json counts the steps the fp16 scaler skipped across the sweeps."""
    seen: list[dict[str, Any]] = []
    real_range_test = pipeline.range_test

    def spy(model: torch.nn.Module, *arguments: Any, **options: Any) -> Any:
        weight = next(parameter for parameter in model.parameters() if parameter.dim() == 4)
        seen.append({**options, "nhwc": weight.is_contiguous(memory_format=torch.channels_last)})
        result = real_range_test(model, *arguments, **options)
        seen[-1]["skipped"] = result.skipped_steps
        return result

    monkeypatch.setattr(pipeline, "range_test", spy)
    out = tmp_path / "run"
    arguments = [*tiny_run_arguments(mnist_dir, out), "--repeats", "1"]
    result = invoke(*arguments, "--precision", "fp16", "--accumulate", "2", "--channels-last")
    assert result.exit_code == 0, result.output
    assert len(seen) == 2
    for options in seen:
        assert (options["precision"], options["accumulate"]) == ("fp16", 2)
        assert options["channels_last"] is True and options["nhwc"] is True
    document = json.loads((out / "result.json").read_text())
    assert document["config"]["precision"] == "fp16" and document["config"]["accumulate"] == 2
    assert document["skipped_steps"] == sum(options["skipped"] for options in seen)


def test_version_prints_the_package_version() -> None:
    from lrfind import __version__

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"lrfind {__version__}"


def command_options(command: str) -> dict[str, Any]:
    """The options of one command, by their long name, as Typer built them."""
    import typer.main

    group: Any = typer.main.get_command(app)
    params = group.commands[command].params
    return {param.opts[0]: param for param in params if param.param_type_name == "option"}


@pytest.mark.parametrize("command", ["run", "analyze", "apply", "train"])
def test_every_option_says_its_default_and_no_flag_asks_for_a_value(command: str) -> None:
    """Each option's help ends with its default; flags show no `<bool>` value to type."""
    options = command_options(command)
    assert len(options) >= 5
    for name, option in options.items():
        assert option.help and "[default: " in option.help, name
        if option.is_flag:
            assert option.metavar == "", name
    output = " ".join(invoke(command, "--help").output.split())
    assert "<bool>" not in output


def test_run_help_shows_the_defaults_the_settings_declare() -> None:
    options = command_options("run")
    for flag, value in (("--batch-size", RunConfig.batch_size), ("--steps", RunConfig.steps)):
        assert options[flag].help.endswith(f"[default: {value}]")
    assert options["--model"].help.endswith(f"[default: {RunConfig.model}]")


def test_overwrite_looks_inside_a_runs_sweep_folder(mnist_dir: Path, tmp_path: Path) -> None:
    """A `sweep/` beside a train.json is replaced only when it is an lrfind run itself."""
    out = tmp_path / "train-run"
    (out / "sweep").mkdir(parents=True)
    (out / "train.json").write_text("{}")
    (out / "sweep" / "my-notes.md").write_text("keep me")
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--overwrite")
    assert_clean_failure(result, 1, "it holds my-notes.md, which lrfind did not write", out=None)
    assert (out / "sweep" / "my-notes.md").read_text() == "keep me"
