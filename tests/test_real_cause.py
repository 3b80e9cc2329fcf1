"""Issue 26, class 7: messages that name the real cause.

A loss from a file that reads class scores, on a built-in model lrfind sized by the targets
(one output), names the output count and --num-classes, not only an out-of-bounds target; a
sweep range beyond float32 is refused as a range, not blamed on the user's code. Each run is
refused with its exit code, one paragraph, no traceback, and every file around unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import lrfind
from lrfind.errors import ConfigError
from tests.conftest import assert_refused, files_under, said, tiny_model, tiny_task, write_python
from tests.conftest import lrfind as run_lrfind

SCORES_LOSS = """
def focal(outputs, targets):
    return nn.functional.cross_entropy(outputs, targets)
"""


def run_arguments(mnist_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--no-download",
            "--batch-size", "32", "--steps", "10", "--repeats", "0", "--device", "cpu",
            "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_a_scores_loss_on_a_one_output_model_names_num_classes(
    mnist_dir: Path, tmp_path: Path, model: str
) -> None:
    loss = write_python(tmp_path / "focal.py", SCORES_LOSS)
    before = files_under(tmp_path)
    completed = run_lrfind(
        *run_arguments(mnist_dir, tmp_path / "out", "--model", model, "--loss", f"{loss}:focal")
    )
    assert_refused(
        completed, 2,
        f"loss '{loss}:focal' raised on the first batch (IndexError: Target",
        f"model '{model}' gives 1 output per sample",
        "pass --num-classes 10 (the dataset has 10 classes)",
        before=before, root=tmp_path,
    )  # fmt: skip


def test_with_num_classes_the_same_loss_runs(mnist_dir: Path, tmp_path: Path) -> None:
    loss = write_python(tmp_path / "focal.py", SCORES_LOSS)
    out = tmp_path / "out"
    completed = run_lrfind(
        *run_arguments(mnist_dir, out, "--loss", f"{loss}:focal", "--num-classes", "10")
    )
    assert "Error:" not in said(completed) and "Traceback" not in said(completed)
    assert (out / "sweep.csv").is_file()  # it swept (an answer needs more than 10 steps)


def test_a_loss_that_fails_for_its_own_reason_is_not_blamed_on_the_count(
    mnist_dir: Path, tmp_path: Path
) -> None:
    """--num-classes given: the count is the user's, so the error stays the loss's own."""
    loss = write_python(tmp_path / "broken.py", "def broken(outputs, targets):\n    1 / 0\n")
    before = files_under(tmp_path)
    completed = run_lrfind(
        *run_arguments(mnist_dir, tmp_path / "out", "--loss", f"{loss}:broken",
                       "--num-classes", "10")
    )  # fmt: skip
    assert_refused(
        completed, 1, "ZeroDivisionError: division by zero", before=before, root=tmp_path
    )
    assert "--num-classes" not in said(completed)


@pytest.mark.parametrize(
    ("flags", "phrases"),
    [
        (["--end-lr", "1e39"], ["end_lr 1e+39 is beyond the largest float32", "--end-lr 10"]),
        (["--start-lr", "1e30", "--end-lr", "1e300"], ["end_lr 1e+300 is beyond"]),
        (["--end-lr", "inf"], ["end_lr must be a positive, finite number"]),
    ],
)
def test_a_range_beyond_float32_is_refused_as_a_range(
    mnist_dir: Path, tmp_path: Path, flags: list[str], phrases: list[str]
) -> None:
    before = files_under(tmp_path)
    completed = run_lrfind(*run_arguments(mnist_dir, tmp_path / "out", *flags))
    assert_refused(completed, 2, *phrases, before=before, root=tmp_path)
    assert "raised" not in said(completed)  # not "your code raised"


def test_the_api_refuses_the_same_range_before_training() -> None:
    model = tiny_model()
    before = [parameter.detach().clone() for parameter in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="beyond the largest float32"):
        lrfind.range_test(
            model, optimizer, nn.functional.cross_entropy, tiny_task(), start_lr=1e-3,
            end_lr=1e300, progress=False,
        )  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
