"""Errors raised inside the user's own code (model, dataset, loss, factory): one paragraph
that says where, exit code 1 or 2, no traceback unless --debug asks for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lrfind import range_test
from tests.conftest import (
    assert_clean_failure,
    invoke,
    tiny_model,
    tiny_run_arguments,
    tiny_task,
    write_python,
)

FAILING_MODEL = """
class FailsLater(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.linear = nn.Linear(28 * 28, num_classes)
        self.calls = 0

    def forward(self, inputs):
        self.calls += 1
        if self.training and self.calls > 8:
            raise RuntimeError("the custom layer lost its weights")
        return self.linear(inputs.flatten(1))


def build(num_classes):
    return FailsLater(num_classes)
"""

FAILING_DATASET = """
class Breaks(torch.utils.data.Dataset):
    classes = list(range(3))

    def __len__(self):
        return 64

    def __getitem__(self, index):
        if index == 50:
            raise KeyError(f"sample {index} is missing from the index file")
        return torch.full((8,), float(index % 3)), index % 3


def build():
    return Breaks()


def model(num_classes, input_shape):
    return nn.Linear(input_shape[0], num_classes)
"""


def test_a_forward_pass_that_fails_mid_sweep_is_one_paragraph(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = write_python(tmp_path / "failing_model.py", FAILING_MODEL)
    out = tmp_path / "run"
    arguments = [*tiny_run_arguments(mnist_dir, out), "--model", f"{factory}:build"]
    result = invoke(*arguments)
    assert_clean_failure(
        result,
        1,
        f"the run of model '{factory}:build' on 'mnist' raised in the model's forward or "
        "backward pass or the loss at step 7 of the sweep",
        out=out,
    )
    assert "RuntimeError: the custom layer lost its weights" in " ".join(result.output.split())
    monkeypatch.setenv("LRFIND_DEBUG", "1")
    debugged = invoke(*arguments)
    assert debugged.exit_code == 1
    assert "Traceback" in debugged.output and "in forward" in debugged.output
    monkeypatch.delenv("LRFIND_DEBUG")
    flagged = invoke("--debug", *arguments)
    assert flagged.exit_code == 1 and "Traceback" in flagged.output


def test_a_dataset_that_fails_on_one_sample_names_the_batch(tmp_path: Path) -> None:
    factory = write_python(tmp_path / "breaking_data.py", FAILING_DATASET)
    out = tmp_path / "run"
    result = invoke(
        "run", "--dataset", f"{factory}:build", "--model", f"{factory}:model",
        "--batch-size", "8", "--steps", "30", "--repeats", "0", "--out", str(out),
        "--device", "cpu",
    )  # fmt: skip
    assert_clean_failure(
        result, 1, "raised while the dataset or loader produced the batch of step", out=out
    )
    assert "KeyError" in result.output and "sample 50 is missing" in " ".join(result.output.split())


def test_a_factory_that_calls_sys_exit_is_an_error(tmp_path: Path, mnist_dir: Path) -> None:
    factory = write_python(tmp_path / "exits.py", "import sys\n\ndef build():\n    sys.exit(3)\n")
    out = tmp_path / "run"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--model", f"{factory}:build")
    assert_clean_failure(result, 2, "called sys.exit(", out=out)


def test_the_api_raises_the_users_own_error_with_a_note_saying_where() -> None:
    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss.calls += 1  # type: ignore[attr-defined]
        if loss.calls == 4:  # type: ignore[attr-defined]
            raise ValueError("labels do not fit")
        return nn.functional.cross_entropy(outputs, targets)

    loss.calls = 0  # type: ignore[attr-defined]
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="labels do not fit") as raised:
        range_test(model, optimizer, loss, tiny_task(), steps=20, seed=0)
    assert any("at step 3 of the sweep" in note for note in raised.value.__notes__)


DATASETS_THAT_FAIL = """
class Failing(torch.utils.data.Dataset):
    classes = [0, 1, 2]

    def __init__(self, fail_on):
        self.fail_on = fail_on

    def __len__(self):
        if self.fail_on == "length":
            raise ValueError("index file unreadable")
        return 64

    def __getitem__(self, index):
        if self.fail_on == "every item" or (self.fail_on == "held out" and index >= 60):
            raise OSError(f"cannot open sample {index}")
        return torch.full((8,), float(index % 3)), index % 3


def length():
    return Failing("length")


def first():
    return Failing("every item")


def held_out():
    return Failing("held out")


def model(num_classes, input_shape):
    return nn.Linear(input_shape[0], num_classes)
"""


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("length", "asked dataset '{spec}' for its length: ValueError: index file unreadable"),
        ("first", "while reading item 0 of dataset '{spec}': OSError: cannot open sample 0"),
        ("held_out", "while reading item 60 of dataset '{spec}': OSError: cannot open sample 60"),
    ],
)
def test_a_dataset_failing_before_the_sweep_names_the_item(
    tmp_path: Path, factory: str, message: str
) -> None:
    path = write_python(tmp_path / "failing_data.py", DATASETS_THAT_FAIL)
    spec = f"{path}:{factory}"
    out = tmp_path / "run"
    result = invoke(
        "run", "--dataset", spec, "--model", f"{path}:model", "--batch-size", "4",
        "--steps", "20", "--repeats", "0", "--val-batches", "1", "--out", str(out),
    )  # fmt: skip
    assert_clean_failure(result, 1, message.format(spec=spec), out=out)
