"""Tasks beyond image classification, run as the real command in this process (issue 15):
a regression with `--loss mse` whose recommendation one-cycle training confirms, dict batches
with a model that computes its own loss, GoogLeNet's auxiliary outputs in train mode, and
targets that do not fit the loss refused before the sweep.

    pytest -q tests/test_any_task.py
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.conftest import assert_refused, files_under, lrfind, read_result, said, write_python

REGRESSION = """
def data():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8192, 8, generator=generator)
    weights = torch.linspace(-1.0, 1.0, 8)
    targets = inputs @ weights + 0.1 * torch.randn(8192, generator=generator)
    return torch.utils.data.TensorDataset(inputs, targets)


def model(input_shape):
    return nn.Sequential(nn.Linear(input_shape[0], 64), nn.ReLU(), nn.Linear(64, 1))
"""


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("task_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_training_loss(task: ModuleType, max_lr: float, epochs: int = 2) -> float:
    """One-cycle training of a fresh seeded model at `max_lr`: the mean loss of the last
    tenth of its steps (inf when it blew up)."""
    torch.manual_seed(0)
    model = task.model((8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=max_lr)
    loader = torch.utils.data.DataLoader(
        task.data(), batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    total = epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total)
    losses = []
    for _ in range(epochs):
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inputs).squeeze(1), targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
    tail = losses[-total // 10 :]
    value = sum(tail) / len(tail)
    return value if value == value else float("inf")


def test_a_regression_recommendation_trains_better_than_a_tenth_or_ten_times_it(
    tmp_path: Path,
) -> None:
    task_file = write_python(tmp_path / "regression.py", REGRESSION)
    out = tmp_path / "run"
    completed = lrfind(
        "run",
        "--model", f"{task_file}:model",
        "--dataset", f"{task_file}:data",
        "--loss", "mse",
        "--batch-size", "128",
        "--out", out,
    )  # fmt: skip
    assert completed.returncode == 0, said(completed)
    result = read_result(out)
    assert result["config"]["loss"] == "mse"
    max_lr = result["recommendation"]["max_lr"]
    task = load(task_file)
    recommended = final_training_loss(task, max_lr)
    lower, higher = final_training_loss(task, max_lr / 10), final_training_loss(task, max_lr * 10)
    assert recommended < lower and recommended < higher, (max_lr, recommended, lower, higher)


TEXT = """
class Tokens(torch.utils.data.Dataset):
    '''Sequences whose class is which of three tokens is most common: the Hugging Face shape.'''

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, 3, (2048,), generator=generator)
        noise = torch.randint(3, 30, (2048, 12), generator=generator)
        keep = torch.rand(2048, 12, generator=generator) < 0.5
        self.ids = torch.where(keep, self.labels[:, None], noise)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {
            "input_ids": self.ids[index],
            "attention_mask": torch.ones(12, dtype=torch.long),
            "labels": self.labels[index],
        }


def data():
    return Tokens()


class Classifier(nn.Module):
    def __init__(self, own_loss):
        super().__init__()
        self.embedding = nn.Embedding(30, 16)
        self.head = nn.Linear(16, 3)
        self.own_loss = own_loss

    def forward(self, input_ids, attention_mask, labels=None):
        mask = attention_mask.unsqueeze(-1).float()
        logits = self.head((self.embedding(input_ids) * mask).sum(1) / mask.sum(1))
        if self.own_loss and labels is not None:
            return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}
        return {"logits": logits}


def computes_its_loss():
    return Classifier(own_loss=True)


def gives_logits():
    return Classifier(own_loss=False)
"""


def test_dict_batches_sweep_a_model_that_computes_its_loss_and_one_that_gives_logits(
    tmp_path: Path,
) -> None:
    task_file = write_python(tmp_path / "text.py", TEXT)
    curves = {}
    for model in ("computes_its_loss", "gives_logits"):
        out = tmp_path / model
        completed = lrfind(
            "run",
            "--model", f"{task_file}:{model}",
            "--dataset", f"{task_file}:data",
            "--batch-size", "64",
            "--steps", "60",
            "--repeats", "0",
            "--out", out,
        )  # fmt: skip
        assert completed.returncode in (0, 1), said(completed)
        assert "Traceback" not in said(completed)
        curves[model] = (out / "sweep.csv").read_text()
    # the same seeded weights and data: the model's own cross-entropy is lrfind's
    assert curves["computes_its_loss"] == curves["gives_logits"]


GOOGLENET_DATA = """
def data():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (64,), generator=generator)
    images = torch.randn(64, 3, 32, 32, generator=generator) + labels[:, None, None, None]
    return torch.utils.data.TensorDataset(images, labels)
"""


def test_googlenet_sweeps_in_train_mode_where_it_returns_auxiliary_logits(
    tmp_path: Path,
) -> None:
    data_file = write_python(tmp_path / "images.py", GOOGLENET_DATA)
    out = tmp_path / "run"
    completed = lrfind(
        "run",
        "--model", "torchvision:googlenet",
        "--dataset", f"{data_file}:data",
        "--num-classes", "4",
        "--batch-size", "8",
        "--steps", "12",
        "--repeats", "0",
        "--out", out,
    )  # fmt: skip
    assert completed.returncode in (0, 1), said(completed)
    assert "Traceback" not in said(completed)
    result = read_result(out)
    assert result["config"]["num_classes"] == 4
    assert len((out / "sweep.csv").read_text().splitlines()) >= 11


def test_float_targets_under_cross_entropy_are_refused_before_the_sweep(tmp_path: Path) -> None:
    task_file = write_python(tmp_path / "regression.py", REGRESSION)
    before = files_under(tmp_path)
    completed = lrfind(
        "run",
        "--model", f"{task_file}:model",
        "--dataset", f"{task_file}:data",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert_refused(completed, 2, "needs class indices", "--loss mse", before=before, root=tmp_path)


def test_a_loss_spec_is_used_and_recorded(tmp_path: Path) -> None:
    task_file = write_python(
        tmp_path / "regression.py",
        REGRESSION + "\n\ndef doubled(outputs, targets):\n"
        "    return 2 * nn.functional.mse_loss(outputs.squeeze(1), targets)\n",
    )
    runs: dict[str, Any] = {}
    for loss in ("mse", f"{task_file}:doubled"):
        out = tmp_path / loss.rpartition(":")[2]
        completed = lrfind(
            "run",
            "--model", f"{task_file}:model",
            "--dataset", f"{task_file}:data",
            "--loss", loss,
            "--batch-size", "128",
            "--start-lr", "1e-4",
            "--steps", "12",
            "--repeats", "0",
            "--out", out,
        )  # fmt: skip
        assert "Traceback" not in said(completed)
        runs[loss] = read_result(out)
    user = runs[f"{task_file}:doubled"]
    assert user["config"]["loss"] == f"{task_file}:doubled"
    plain, doubled = (first_loss(tmp_path / name / "sweep.csv") for name in ("mse", "doubled"))
    assert doubled == 2 * plain


def first_loss(path: Path) -> float:
    with path.open(newline="") as handle:
        return float(next(csv.DictReader(handle))["loss"])
