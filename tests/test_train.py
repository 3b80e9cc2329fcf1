"""`lrfind train` and `--tensorboard`: schedules trained from one seed against a baseline,
bounds from a result, a config or a fresh sweep, and every bad input refused cleanly."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lrfind.core.schedules import Bounds, readable, schedule_section
from lrfind.errors import LrfindError
from lrfind.outputs.documents import read_result
from lrfind.outputs.tensorboard import check_tensorboard
from tests.conftest import invoke, write_python


def tiny_config(folder: Path, data_dir: Path, **extra: Any) -> Path:
    """MNIST-format files of 600 samples at batch 32: 18 steps per epoch."""
    values = {
        "model": "lenet", "dataset": "mnist", "data_dir": str(data_dir), "download": False,
        "batch_size": 32, "epochs": 2, "device": "cpu", **extra,
    }  # fmt: skip
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def tiny_sweep(data_dir: Path, out: Path) -> Path:
    result = invoke(
        "run", "--dataset", "mnist", "--data-dir", data_dir, "--no-download", "--batch-size",
        "32", "--steps", "40", "--start-lr", "1e-3", "--end-lr", "10", "--repeats", "1",
        "--device", "cpu", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "result.json"


def history_rows(out: Path) -> list[dict[str, str]]:
    with (out / "history.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_fresh_sweep_then_schedules_and_baseline(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "trained"
    config = tiny_config(tmp_path, mnist_dir)
    result = invoke(
        "train", "--config", config, "--schedule", "onecycle", "--schedule", "triangular",
        "--baseline", "constant", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "schedules compared" in result.output and "a fresh sweep" in result.output
    rows = history_rows(out)
    assert list(rows[0]) == [
        "schedule", "epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy"
    ]  # fmt: skip
    assert [(row["schedule"], row["epoch"]) for row in rows] == [
        ("onecycle", "1"), ("onecycle", "2"), ("triangular", "1"), ("triangular", "2"),
        ("constant", "1"), ("constant", "2"),
    ]  # fmt: skip
    assert all(0.0 <= float(row["test_accuracy"]) <= 1.0 for row in rows)
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sweep = json.loads((out / "sweep" / "result.json").read_text())["recommendation"]
    assert sweep["horizon"]["training_steps"] == 2 * 18  # the sweep answers for this training
    assert sweep["horizon"]["source"] == "2 epochs of 18 steps"
    document = json.loads((out / "train.json").read_text())
    schedules = document["schedules"]
    assert schedules["constant"]["parameters"] == {"kind": "constant", "lr": readable(sweep["lr"])}
    assert schedules["onecycle"]["parameters"]["max_lr"] == readable(sweep["max_lr"])
    triangular = schedules["triangular"]["parameters"]
    assert triangular["step_size_up"] == 18  # 2 epochs of 18 steps: one whole cycle
    assert document["steps_per_epoch"] == 18
    # the baseline trains at the rate its section describes, every epoch
    constant_rows = [row for row in rows if row["schedule"] == "constant"]
    assert {float(row["lr"]) for row in constant_rows} == {readable(sweep["lr"])}


def test_bounds_from_a_result_file_skip_the_sweep(mnist_dir: Path, tmp_path: Path) -> None:
    result_file = tiny_sweep(mnist_dir, tmp_path / "sweep")
    out = tmp_path / "trained"
    config = tiny_config(tmp_path, mnist_dir, epochs=1)
    result = invoke("train", "--config", config, "--result", result_file, "--out", out)
    assert result.exit_code == 0, result.output
    assert not (out / "sweep").exists()
    document = json.loads((out / "train.json").read_text())
    assert document["bounds_source"] == str(result_file)
    expected = schedule_section("onecycle", Bounds.of(read_result(result_file)), 18, 1)
    assert document["schedules"]["onecycle"]["parameters"] == expected


def test_bounds_written_by_apply_are_trained_as_written(mnist_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, mnist_dir, epochs=1)
    section = {"kind": "triangular", "base_lr": 0.01, "max_lr": 0.05, "step_size_up": 9}
    document = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**document, "scheduler": section, "lr": 0.02}))
    out = tmp_path / "trained"
    result = invoke("train", "--config", config, "--baseline", "constant", "--out", out)
    assert result.exit_code == 0, result.output
    assert "Bounds from the training config" in " ".join(result.output.split())
    trained = json.loads((out / "train.json").read_text())["schedules"]
    assert trained["triangular"]["parameters"] == section
    assert trained["constant"]["parameters"] == {"kind": "constant", "lr": 0.02}
    assert not (out / "sweep").exists()
    rows = history_rows(out)
    assert float(rows[0]["lr"]) == pytest.approx(0.01 + 0.04 / 9)  # the last of 18 steps


def test_schedules_start_from_the_same_weights_and_data(mnist_dir: Path, tmp_path: Path) -> None:
    """Two identical schedules under different names train identically: same seed, init and
    data order for every schedule compared."""
    config = tiny_config(tmp_path, mnist_dir, epochs=1, lr=0.05)
    out = tmp_path / "trained"
    result = invoke(
        "train", "--config", config, "--schedule", "constant", "--baseline", "constant",
        "--out", out, "--result", tiny_sweep(mnist_dir, tmp_path / "sweep"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = history_rows(out)
    assert len(rows) == 1  # the baseline is the constant schedule itself, trained once

    second = tmp_path / "again"
    assert invoke("train", "--config", config, "--schedule", "constant", "--out", second,
                  "--result", tmp_path / "sweep" / "result.json").exit_code == 0  # fmt: skip
    assert history_rows(second) == rows


def test_a_user_dataset_is_evaluated_on_a_held_out_tenth(tmp_path: Path) -> None:
    factory = write_python(
        tmp_path / "blobs.py",
        "def build():\n"
        "    generator = torch.Generator().manual_seed(0)\n"
        "    labels = torch.randint(0, 3, (300,), generator=generator)\n"
        "    inputs = torch.randn(300, 8, generator=generator) + labels[:, None].float() * 4\n"
        "    dataset = torch.utils.data.TensorDataset(inputs, labels)\n"
        "    dataset.classes = ['a', 'b', 'c']\n"
        "    return dataset\n",
    )
    model = write_python(
        tmp_path / "net.py",
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, num_classes))\n",
    )
    config = tmp_path / "train.toml"
    config.write_text(
        f'model = "{model}:build"\ndataset = "{factory}:build"\nbatch_size = 30\nepochs = 8\n'
        'device = "cpu"\n\n[scheduler]\nkind = "warmup-cosine"\nlr = 0.1\nwarmup_iters = 3\n'
    )
    out = tmp_path / "trained"
    result = invoke("train", "--config", config, "--out", out)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "train.json").read_text())
    assert document["test_set"].startswith("the last 30 of 300 samples")
    assert document["steps_per_epoch"] == 270 // 30
    assert float(history_rows(out)[-1]["test_accuracy"]) > 0.6  # separable blobs (chance 1/3)


def test_a_result_from_another_setup_is_refused(mnist_dir: Path, tmp_path: Path) -> None:
    result_file = tiny_sweep(mnist_dir, tmp_path / "sweep")
    config = tiny_config(tmp_path, mnist_dir, model="mlp")
    out = tmp_path / "trained"
    result = invoke("train", "--config", config, "--result", result_file, "--out", out)
    assert result.exit_code == 2
    assert "model lenet (sweep) vs mlp" in " ".join(result.output.split())
    assert not out.exists() and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("extra", "arguments", "message"),
    [
        ({}, ["--schedule", "cosine"], "unknown schedule kind 'cosine'"),
        ({}, ["--baseline", "linear"], "unknown baseline 'linear'"),
        ({"scheduler": {"max_lr": 0.1}}, [], "scheduler in the training config has no `kind`"),
        ({"scheduler": {"kind": "onecycle", "max_lr": -1}}, [], "max_lr must be a positive"),
        ({"epocs": 3}, [], "unknown option 'epocs'"),
        ({"epochs": 0}, [], "epochs must be a positive integer; got 0"),
        ({"scheduler": "onecycle"}, [], "scheduler in"),
        ({}, ["--result", "missing.json"], "missing.json does not exist"),
    ],
)
def test_bad_training_input_is_refused_cleanly(
    mnist_dir: Path, tmp_path: Path, extra: dict, arguments: list[str], message: str
) -> None:
    config = tiny_config(tmp_path, mnist_dir, **extra)
    out = tmp_path / "trained"
    result = invoke("train", "--config", config, "--out", out, *arguments)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists()


def test_tensorboard_scalars_for_training_and_sweeps(mnist_dir: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "board"
    config = tiny_config(tmp_path, mnist_dir, epochs=2)
    out = tmp_path / "trained"
    result = invoke(
        "train", "--config", config, "--baseline", "constant", "--out", out,
        "--tensorboard", board, "--result", tiny_sweep(mnist_dir, tmp_path / "sweep"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("onecycle", "constant"):
        events = EventAccumulator(str(board / "trained" / name))
        events.Reload()
        assert {"lr", "train_loss", "test_accuracy"} <= set(events.Tags()["scalars"])
        assert len(events.Scalars("lr")) == 36
        assert [event.step for event in events.Scalars("test_accuracy")] == [18, 36]

    run = invoke(
        "run", "--dataset", "mnist", "--data-dir", mnist_dir, "--no-download", "--batch-size",
        "32", "--steps", "40", "--start-lr", "1e-3", "--end-lr", "10", "--repeats", "2",
        "--device", "cpu", "--out", tmp_path / "swept",
        "--tensorboard", board,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    swept = json.loads((tmp_path / "swept" / "result.json").read_text())
    for name, sweep in (("full", swept["sweep"]), ("repeat-1", swept["repeats"][0])):
        events = EventAccumulator(str(board / "swept" / name))
        events.Reload()
        assert len(events.Scalars("sweep/lr")) == sweep["steps_run"]
        assert events.Scalars("sweep/loss")[0].value == pytest.approx(sweep["first_loss"])


def test_missing_tensorboard_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(LrfindError, match=r"pip install 'lrfind\[tensorboard\]'"):
        check_tensorboard()
    result = invoke("run", "--tensorboard", "board", "--out", "never")
    assert result.exit_code == 1 and "lrfind[tensorboard]" in result.output
    assert not Path("never").exists()
