"""Inputs a careless or hostile user gives: each is refused before any work, in one
paragraph that names the value and the fix, with a usage-error exit code and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import assert_clean_failure, invoke


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("home.yaml", "out: ~nosuchuser-lrfind/x\n", "whose ~user is not a user of this machine"),
        ("seed.yaml", f"seed: {2**64}\n", "seed must be between 0 and"),
        ("nested.json", "[" * 100_000 + "]" * 100_000, "nests its values too deeply"),
        ("nested.yaml", "a: " + "[" * 1_200 + "]" * 1_200 + "\n", "nests its values too deeply"),
    ],
)
def test_run_refuses_bad_option_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    out = tmp_path / "run"
    result = invoke("run", "--config", write(tmp_path / name, text), "--out", out)
    assert_clean_failure(result, 2, message, out=out)


def test_a_constant_schedule_with_a_base_lr_is_refused(tmp_path: Path) -> None:
    config = write(
        tmp_path / "train.yaml", "scheduler:\n  kind: constant\n  lr: 0.1\n  base_lr: 0.01\n"
    )
    out = tmp_path / "run"
    result = invoke("train", "--config", config, "--out", out)
    assert_clean_failure(result, 2, "a constant schedule with key(s) base_lr", out=out)


@pytest.mark.parametrize("command", ["run", "train"])
def test_tensorboard_pointing_at_a_file_is_refused_before_work(
    tmp_path: Path, command: str
) -> None:
    target = write(tmp_path / "events.txt", "not a folder")
    out = tmp_path / "run"
    result = invoke(command, "--tensorboard", target / "runs", "--out", out)
    assert_clean_failure(result, 2, f"{target} is a file", out=out)
    assert target.read_text() == "not a folder"
