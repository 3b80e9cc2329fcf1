"""Paths the operating system refuses (issue 26, class 4): a name over 255 bytes, a path over
the system's limit, a file where a folder should be, a loop of symbolic links, a folder where
a file should be, in every path argument of every command. Each is one message that names the
argument, the path, the reason and the fix (lrfind.settings.paths.os_refusal), with its exit
code, no traceback, and every file around as it was."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from lrfind.settings.paths import os_refusal
from tests.conftest import assert_refused, files_under, lrfind

LONG = "x" * 300  # one name over the 255 bytes a file system allows
TOO_LONG_NAME = "a name in it is"
LOOP = "its symbolic links lead in a loop"
RAW = ("Errno",)  # what a raw OSError says, never shown


@pytest.fixture
def place(mnist_dir: Path, tmp_path: Path) -> Path:
    """A folder with a dataset, a config, a result, a curve and a file to put paths under."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "options.yaml").write_text("steps: 20\nrepeats: 0\n")
    (folder / "train.yaml").write_text("model: lenet\n")
    (folder / "result.json").write_text(
        '{"format_version": 2, "recommendation": {"base_lr": 0.01, "max_lr": 0.1, "lr": 0.05}}'
    )
    (folder / "curve.csv").write_text(
        "lr,loss\n" + "".join(f"{10 ** (-5 + i / 4)},{2.3 - i * 0.05}\n" for i in range(20))
    )
    (folder / "plain-file").write_text("not a folder\n")
    (folder / "loop").symlink_to("loop")
    (folder / "folder").mkdir()
    return folder


def run_arguments(data_dir: Path) -> list[Any]:
    return ["run", "--dataset", "mnist", "--data-dir", data_dir, "--no-download",
            "--steps", "20", "--repeats", "0", "--batch-size", "32", "--device", "cpu"]  # fmt: skip


@pytest.mark.parametrize(
    ("argument", "code"),
    [("--out", 1), ("--config", 2), ("--weights", 2), ("--data-dir", 2), ("--model", 2),
     ("--dataset", 2), ("--tensorboard", 2)],
)  # fmt: skip
def test_run_names_every_path_argument_whose_name_is_too_long(
    place: Path, mnist_dir: Path, argument: str, code: int
) -> None:
    value = {"--model": f"{LONG}.py:build", "--dataset": f"folder:{LONG}",
             "--config": f"{LONG}.yaml", "--weights": f"{LONG}.pt"}.get(argument, LONG)  # fmt: skip
    arguments = run_arguments(mnist_dir)
    if argument == "--data-dir":
        arguments = arguments[:3] + arguments[5:]
    out = [] if argument == "--out" else ["--out", "run"]
    root = place.parent
    before = files_under(root)
    result = lrfind(*arguments, *out, argument, value, cwd=place)
    assert_refused(
        result,
        code,
        f"{argument} {LONG}",
        "is 30",
        "at most 255 bytes in one name",
        "Choose a shorter name",
        before=before,
        root=root,
        alone=True,
        unsaid=RAW,
    )
    assert not (place / "run").exists()


@pytest.mark.parametrize(
    ("arguments", "code", "phrases"),
    [
        (["analyze", f"{LONG}.csv"], 2, [f"curve file {LONG}.csv", TOO_LONG_NAME]),
        (["analyze", "curve.csv", "--out", LONG], 1, [f"--out {LONG}", TOO_LONG_NAME]),
        (["apply", f"{LONG}.json", "train.yaml"], 2, [f"result file {LONG}.json", TOO_LONG_NAME]),
        (["apply", "result.json", f"{LONG}.yaml"], 2,
         [f"training config {LONG}.yaml", TOO_LONG_NAME]),
        (["train", "--config", f"{LONG}.yaml"], 2, [f"--config {LONG}.yaml", TOO_LONG_NAME]),
        (["train", "--config", "train.yaml", "--result", f"{LONG}.json"], 2,
         [f"{LONG}.json", TOO_LONG_NAME]),
        (["train", "--config", "train.yaml", "--out", LONG], 1, [f"--out {LONG}", TOO_LONG_NAME]),
        (["analyze", "plain-file/curve.csv"], 2,
         ["curve file plain-file/curve.csv: plain-file is a file, where a folder is needed"]),
        (["analyze", "curve.csv", "--out", "plain-file/again"], 1,
         ["plain-file is not a writable folder"]),
        (["apply", "plain-file/result.json", "train.yaml"], 2,
         ["result file plain-file/result.json", "is a file, where a folder is needed"]),
        (["apply", "result.json", "plain-file/train.yaml"], 2,
         ["training config plain-file/train.yaml", "is a file, where a folder is needed"]),
        (["analyze", "loop"], 2, ["curve file loop", LOOP, "Fix the link"]),
        (["apply", "loop", "train.yaml"], 2, ["result file loop", LOOP]),
        (["apply", "result.json", "loop.yaml"], 2, ["does not exist"]),
        (["analyze", "folder"], 2, ["curve file folder: it is a folder, where a file is needed"]),
        (["apply", "folder", "train.yaml"], 2, ["result file folder is a folder",
                                                "folder/result.json"]),
        (["apply", "result.json", "folder"], 2, ["unknown extension"]),
    ],
)  # fmt: skip
def test_every_other_command_says_what_the_os_refused(
    place: Path, arguments: list[str], code: int, phrases: list[str]
) -> None:
    if "loop.yaml" in arguments:
        (place / "loop.yaml").symlink_to("loop.yaml")
        phrases = ["training config loop.yaml", "a symbolic link that leads back to itself"]
    root = place.parent
    before = files_under(root)
    completed = lrfind(*arguments, cwd=place)
    assert_refused(completed, code, *phrases, before=before, root=root, alone=True, unsaid=RAW)


def test_a_data_dir_that_is_a_file_is_refused(place: Path, mnist_dir: Path) -> None:
    image_file = next(mnist_dir.glob("train-images*"))
    root = place.parent
    before = files_under(root)
    result = lrfind(*run_arguments(image_file), "--out", "run", cwd=place)
    phrases = (f"--data-dir {image_file} is a file, not a folder", f"--data-dir {mnist_dir}")
    assert_refused(result, 2, *phrases, before=before, root=root, alone=True, unsaid=RAW)


@pytest.mark.parametrize(
    ("value", "phrases"),
    [
        ("plain-file/data", ["--data-dir plain-file/data: plain-file is a file"]),
        ("loop", ["--data-dir loop", LOOP]),
        ("/".join(["d" * 200] * 25), ["the path is", "bytes long, more than the file system",
                                      "Choose a shorter path"]),
    ],
    ids=["file-on-the-way", "link-loop", "whole-path-too-long"],
)  # fmt: skip
def test_a_data_dir_the_os_refuses_is_named(place: Path, value: str, phrases: list[str]) -> None:
    root = place.parent
    before = files_under(root)
    result = lrfind(*run_arguments(Path(value)), "--out", "run", cwd=place)
    assert_refused(result, 2, *phrases, before=before, root=root, alone=True, unsaid=RAW)


def test_lrfind_data_dir_from_the_environment_is_checked_too(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LRFIND_DATA_DIR", str(place / "plain-file"))
    root = place.parent
    before = files_under(root)
    arguments = [argument for argument in run_arguments(place) if argument != place]
    arguments.remove("--data-dir")
    result = lrfind(*arguments, "--out", "run", cwd=place)
    phrases = ("LRFIND_DATA_DIR", "is a file, not a folder")
    assert_refused(result, 2, *phrases, before=before, root=root, alone=True, unsaid=RAW)


@pytest.mark.parametrize(
    ("code", "phrases"),
    [
        (errno.EACCES, ["permission denied", "Check the permissions"]),
        (errno.EPERM, ["permission denied"]),
        (errno.EROFS, ["read-only file system", "writable disk"]),
        (errno.ENOSPC, ["disk (or your quota) is full", "Free some space"]),
        (errno.EISDIR, ["it is a folder, where a file is needed"]),
        (errno.ENOENT, ["it does not exist"]),
        (errno.EIO, ["Input/output error", "choose another"]),
    ],
)
def test_every_refusal_of_the_os_reads_as_a_reason_and_a_fix(code: int, phrases: list[str]) -> None:
    message = os_refusal(OSError(code, os.strerror(code), "some/where.csv"), "--config")
    assert message.startswith("--config some/where.csv: ")
    for phrase in phrases:
        assert phrase in message
    assert message.endswith(".")
