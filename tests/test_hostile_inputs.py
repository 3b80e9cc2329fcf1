"""Inputs a careless or hostile user gives, run as the command (in this process, as
conftest.lrfind does; two runs racing for one folder as real processes).

    pytest -q tests/test_hostile_inputs.py

Issue 14: never lose a file, never hand out a number that means nothing. Every case checks
the exit code, that the message names the bad value and the fix, that no traceback is
printed, that every file that must not change is byte-identical afterwards, and that no
staging folder (`.<name>.partial-*`) or claim file (`.lrfind-claim`) is left behind.
`lrfind apply` against hostile config files is in test_hostile_apply.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import (
    PNG_MAGIC,
    SETUP,
    assert_refused,
    files_under,
    leftovers,
    lrfind,
    read_result,
    said,
    started,
    tiny_run_arguments,
    write_python,
    write_result,
)


def write_curve(path: Path, lrs: np.ndarray, losses: np.ndarray, header: str = "lr,loss") -> Path:
    rows = "".join(f"{float(lr)!r},{float(loss)!r}\n" for lr, loss in zip(lrs, losses, strict=True))
    path.write_text(f"{header}\n{rows}")
    return path


def good_losses(points: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A descent centred at step 35, then an explosion from step 52, ten steps a decade."""
    index = np.arange(points)
    losses = 2.3 - 1.5 / (1 + 10 ** (-(index - 35) / 6)) + np.maximum(0, index - 52)
    return 10 ** (-6 + index / 10), losses


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder: a script and a data folder, nothing lrfind wrote."""
    folder = tmp_path / "myproject"
    (folder / "data").mkdir(parents=True)
    (folder / "train.py").write_text("print('my training script')\n")
    (folder / "data" / "x.bin").write_bytes(b"\x00\x01\x02")
    return folder


def fake_run_folder(folder: Path) -> Path:
    """What an earlier lrfind run left: its three files."""
    folder.mkdir(parents=True)
    (folder / "sweep.csv").write_text(
        "repeat,step,lr,loss,smoothed_loss,val_loss\n0,0,0.001,2.3,,\n"
    )
    (folder / "sweep.png").write_bytes(PNG_MAGIC + b"earlier plot")
    (folder / "result.json").write_text('{"format_version": 2, "recommendation": null}\n')
    return folder


# ---------------------------------------------------------------------------------------------
# Files: a run never replaces what it did not write


def test_overwrite_refuses_a_project_folder_and_names_its_files(
    mnist_dir: Path, tmp_path: Path, project: Path
) -> None:
    before = files_under(tmp_path)
    completed = lrfind(*tiny_run_arguments(mnist_dir, project), "--repeats", "0", "--overwrite")
    assert_refused(
        completed,
        1,
        f"{project} is not one: it holds data, train.py",
        "which lrfind did not write",
        "Choose another folder with --out",
        before=before,
        root=tmp_path,
    )


@pytest.mark.parametrize("out", [".", ".."])
def test_out_cannot_be_the_working_folder_or_one_above_it(
    mnist_dir: Path, tmp_path: Path, out: str
) -> None:
    work = tmp_path / "work"
    (work / "notes.txt").parent.mkdir()
    (work / "notes.txt").write_text("keep me\n")
    before = files_under(tmp_path)
    completed = lrfind(*tiny_run_arguments(mnist_dir, Path(out)), "--overwrite", cwd=work)
    assert_refused(
        completed,
        1,
        f"--out {out} is the current folder or one that holds it",
        "Pass e.g. --out runs/my-sweep",
        before=before,
        root=tmp_path,
    )


def test_out_under_a_regular_file_is_refused_before_any_work(
    mnist_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder\n")
    before = files_under(tmp_path)
    completed = lrfind(*tiny_run_arguments(mnist_dir, blocker / "run"))
    assert_refused(
        completed,
        1,
        f"{blocker} is not a writable folder",
        "Choose another folder with --out",
        before=before,
        root=tmp_path,
    )
    assert "loading data" not in completed.stderr and "full sweep" not in completed.stderr


def test_out_under_proc_is_refused_before_the_sweep(mnist_dir: Path, tmp_path: Path) -> None:
    before = files_under(tmp_path)
    completed = lrfind(*tiny_run_arguments(mnist_dir, Path("/proc/lrfind-x/run")))
    assert_refused(
        completed,
        1,
        "/proc/lrfind-x/run",  # as root it cannot be made; as anyone else /proc is read-only
        "another folder with --out",
        before=before,
        root=tmp_path,
    )
    assert "full sweep" not in completed.stderr and "loading data" not in completed.stderr
    assert not Path("/proc/lrfind-x").exists()


@pytest.mark.parametrize("command", ["run", "analyze"])
def test_an_existing_run_is_kept_byte_for_byte_without_overwrite(
    mnist_dir: Path, tmp_path: Path, command: str
) -> None:
    earlier = fake_run_folder(tmp_path / "runs" / "earlier")
    curve = write_curve(tmp_path / "sweep.csv", *good_losses())
    arguments = {
        "run": tiny_run_arguments(mnist_dir, earlier),
        "analyze": ["analyze", curve, "--out", earlier],
    }[command]
    before = files_under(tmp_path)
    completed = lrfind(*arguments)
    assert_refused(
        completed,
        1,
        f"run folder {earlier} already exists",
        "Pass --overwrite to replace it",
        before=before,
        root=tmp_path,
    )


def test_a_folder_a_live_run_has_claimed_is_refused_even_with_overwrite(
    mnist_dir: Path, tmp_path: Path
) -> None:
    """The claim names this test's own process, which is certainly alive."""
    claimed = fake_run_folder(tmp_path / "runs" / "busy")
    (claimed / ".lrfind-claim").write_text(f"{os.getpid()} 0123456789abcdef\n")
    before = files_under(tmp_path)
    completed = lrfind(*tiny_run_arguments(mnist_dir, claimed), "--overwrite")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "Traceback" not in output
    assert f"another lrfind run (process {os.getpid()}) is writing to {claimed}" in said(completed)
    assert "Wait for it" in said(completed)
    assert files_under(tmp_path) == before  # the live run's claim is untouched


@pytest.mark.parametrize("command", ["run", "train"])
def test_tensorboard_pointing_at_a_file_is_refused_before_work(
    mnist_dir: Path, tmp_path: Path, command: str
) -> None:
    target = tmp_path / "events.txt"
    target.write_text("not a folder")
    out = tmp_path / "run"
    arguments = [command, "--tensorboard", target / "runs", "--out", out, "--device", "cpu"]
    before = files_under(tmp_path)
    completed = lrfind(*arguments)
    assert_refused(
        completed,
        2,
        f"{target} is a file",
        "Give a folder for the TensorBoard runs",
        before=before,
        root=tmp_path,
    )
    assert "loading data" not in completed.stderr


def test_analyze_refuses_to_overwrite_a_project_folder(tmp_path: Path, project: Path) -> None:
    curve = write_curve(tmp_path / "sweep.csv", *good_losses())
    before = files_under(tmp_path)
    completed = lrfind("analyze", curve, "--out", project, "--overwrite")
    assert_refused(
        completed,
        1,
        f"{project} is not one: it holds data, train.py",
        "Choose another folder with --out",
        before=before,
        root=tmp_path,
    )


def test_two_runs_started_at_once_on_one_folder_lose_nothing(
    mnist_dir: Path, tmp_path: Path
) -> None:
    """Exactly one owns --out. The other either stops at its start (so it has nothing to
    lose) or, if both swept, keeps its curve where its message says."""
    out = tmp_path / "runs" / "shared"
    seeds = (0, 1)
    arguments = [*tiny_run_arguments(mnist_dir, out), "--repeats", "0", "--seed"]
    before = files_under(tmp_path)
    with started(*arguments, seeds[0]) as first, started(*arguments, seeds[1]) as second:
        processes = [first, second]
        outputs = [process.communicate(timeout=300) for process in processes]
    codes = [process.returncode for process in processes]
    assert sorted(codes) == [0, 1], outputs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert all("Traceback" not in stdout + stderr for stdout, stderr in outputs)
    assert "full sweep" in outputs[winner][1]
    assert read_result(out)["config"]["seed"] == seeds[winner]
    assert sorted(path.name for path in out.iterdir()) == ["result.json", "sweep.csv", "sweep.png"]
    message = " ".join(outputs[loser][1].split())
    kept = [path for path in out.parent.iterdir() if path.name.startswith("shared-not-replaced-")]
    if kept:  # both swept: the loser's files are where its message says
        (folder,) = kept
        assert f"This run's files are in {folder / 'run'}" in message
        assert read_result(folder / "run")["config"]["seed"] == seeds[loser]
    else:  # refused at its start, before it swept
        assert (
            f"another lrfind run (process {processes[winner].pid}) is writing to {out}" in message
            or f"another lrfind run is writing to {out}" in message
            or f"run folder {out} already exists" in message
        ), message
        assert "full sweep" not in outputs[loser][1]
    assert {path.name for path in out.parent.iterdir()} == {"shared", *(p.name for p in kept)}
    assert files_under(tmp_path, out.parent) == before
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Numbers: a curve without an answer gets no number, and apply writes none


def rng_curve(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    lrs = np.logspace(-6, 0, 100)
    if kind == "normal":
        return lrs, rng.normal(2.3, 0.1, 100)
    return lrs, rng.uniform(0.0, 1.0, 100)


def still_falling() -> tuple[np.ndarray, np.ndarray]:
    """The good curve's descent, moved to the end: it never turns up."""
    index = np.arange(60)
    return 10 ** (-6 + index / 10), 2.3 - 1.5 / (1 + 10 ** (-(index - 50) / 6))


def too_fast() -> tuple[np.ndarray, np.ndarray]:
    """30 points over 8 decades (under 4 a decade): a descent, then a blow-up."""
    index = np.arange(30)
    losses = 2.3 - 1.5 / (1 + 10 ** (-(index - 17) / 3)) + np.maximum(0, index - 25)
    return 10 ** (-7 + index * 8 / 29), losses


NO_ANSWER_CURVES = {
    "constant": (lambda: (np.logspace(-6, 0, 60), np.full(60, 2.3)), "no clear descent"),
    "normal-noise": (lambda: rng_curve("normal"), "no clear descent"),
    "uniform-noise": (lambda: rng_curve("uniform"), "no clear descent"),
    "only-rising": (lambda: (np.logspace(-6, 0, 100), np.linspace(1, 3, 100)), "no clear descent"),
    "still-falling": (still_falling, "still falling at the last rate of the curve"),
    "too-fast": (too_fast, "steps per decade near the minimum, where at least 8 are needed"),
}
FIXES = {
    "no clear descent": "widen the LR range, or reduce the noise with a larger --batch-size",
    "still falling at the last rate of the curve": "raise --end-lr",
    "steps per decade near the minimum, where at least 8 are needed": "raise --steps",
}


@pytest.mark.parametrize("name", list(NO_ANSWER_CURVES))
def test_a_curve_without_an_answer_gets_no_number_but_keeps_its_curve(
    tmp_path: Path, name: str
) -> None:
    make, reason = NO_ANSWER_CURVES[name]
    curve = write_curve(tmp_path / f"{name}.csv", *make())
    out = tmp_path / "analysis"
    before = files_under(tmp_path)
    completed = lrfind("analyze", curve, "--out", out)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "Traceback" not in output
    assert "No recommendation" in said(completed) and reason in said(completed)
    assert FIXES[reason] in said(completed)
    assert "OneCycleLR" not in completed.stdout and "CyclicLR" not in completed.stdout
    document = read_result(out)
    assert document["recommendation"] is None
    assert document["no_recommendation"] and any(
        reason in line for line in document["no_recommendation"]
    )
    assert (out / "sweep.csv").read_text().startswith("repeat,step,lr,loss")
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert files_under(tmp_path, out) == before
    assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def no_answer_result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The result.json `analyze` writes for pure noise."""
    folder = tmp_path_factory.mktemp("noise")
    curve = write_curve(folder / "noise.csv", *rng_curve("normal"))
    completed = lrfind("analyze", curve, "--out", folder / "analysis")
    assert completed.returncode == 1, completed.stderr
    return folder / "analysis" / "result.json"


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_apply_writes_no_rate_from_a_curve_without_an_answer(
    tmp_path: Path, no_answer_result: Path, force: list[str]
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\nscheduler:\n  kind: onecycle\n  max_lr: 0.1\n")
    before = files_under(tmp_path)
    completed = lrfind("apply", no_answer_result, config, *force)
    assert_refused(
        completed,
        2,
        "the result holds no recommendation (the loss shows no clear descent",
        "--force cannot turn a missing number into one",
        "rerun `lrfind run`",
        before=before,
        root=tmp_path,
    )


def test_train_from_a_result_without_an_answer_is_refused_before_loading_data(
    tmp_path: Path, no_answer_result: Path
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\nepochs: 1\n")
    before = files_under(tmp_path)
    completed = lrfind("train", "--config", config, "--result", no_answer_result, "--out",
                       tmp_path / "run")  # fmt: skip
    assert_refused(completed, 2, "holds no recommendation", before=before, root=tmp_path)
    assert "loading data" not in completed.stderr


@pytest.fixture(scope="module")
def good_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The recommendation `analyze` gives the good curve, to compare others against."""
    folder = tmp_path_factory.mktemp("good")
    completed = lrfind(
        "analyze", write_curve(folder / "good.csv", *good_losses()), "--out", folder / "analysis"
    )
    assert completed.returncode == 0, completed.stderr
    return read_result(folder / "analysis")


def test_a_good_curve_shifted_below_zero_and_scaled_gives_the_same_rates(
    tmp_path: Path, good_result: dict[str, Any]
) -> None:
    lrs, losses = good_losses()
    curve = write_curve(tmp_path / "negative.csv", lrs, (losses - 10.0) * 37.0)
    assert float(np.max((losses - 10.0) * 37.0)) < 0
    before = files_under(tmp_path)
    completed = lrfind("analyze", curve, "--out", tmp_path / "analysis")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    assert "OneCycleLR(optimizer, max_lr=" in completed.stdout  # an answer is printed
    recommendation = read_result(tmp_path / "analysis")["recommendation"]
    for key in ("base_lr", "max_lr", "lr"):
        assert recommendation[key] == pytest.approx(good_result["recommendation"][key], rel=1e-9)
    assert files_under(tmp_path, tmp_path / "analysis") == before


def test_a_huge_cell_in_a_column_lrfind_does_not_read_changes_nothing(
    tmp_path: Path, good_result: dict[str, Any]
) -> None:
    lrs, losses = good_losses()
    notes = ["x" * 200_000 if index == 3 else "ok" for index in range(len(lrs))]
    rows = "".join(
        f"{float(lr)!r},{float(loss)!r},{note}\n"
        for lr, loss, note in zip(lrs, losses, notes, strict=True)
    )
    curve = tmp_path / "annotated.csv"
    curve.write_text("lr,loss,note\n" + rows)
    before = files_under(tmp_path)
    completed = lrfind("analyze", curve, "--out", tmp_path / "analysis")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    recommendation = read_result(tmp_path / "analysis")["recommendation"]
    assert recommendation["max_lr"] == pytest.approx(good_result["recommendation"]["max_lr"])
    assert files_under(tmp_path, tmp_path / "analysis") == before


def bad_csv(tmp_path: Path, kind: str) -> Path:
    """A CSV `analyze` cannot use, written at tmp_path/<kind>.csv."""
    path = tmp_path / f"{kind}.csv"
    lrs, losses = good_losses()
    if kind == "two-loss-columns":
        rows = "".join(
            f"{float(lr)!r},{float(loss)!r},{float(loss) + 1!r}\n"
            for lr, loss in zip(lrs, losses, strict=True)
        )
        path.write_text("lr,loss,loss\n" + rows)
    elif kind == "nan-first-loss":
        write_curve(path, lrs, np.concatenate([[np.nan], losses[1:]]))
    elif kind == "inf-loss-mid-curve":
        write_curve(path, lrs, np.where(np.arange(60) == 20, np.inf, losses))
    elif kind == "nine-rows":
        write_curve(path, lrs[:9], losses[:9])
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 40)
    elif kind == "falling-lrs":
        write_curve(path, lrs[::-1], losses)
    elif kind == "semicolons":
        path.write_text(
            "lr;loss\n"
            + "".join(
                f"{lr!r};{loss!r}\n" for lr, loss in zip(lrs.tolist(), losses.tolist(), strict=True)
            )
        )
    elif kind == "empty":
        path.write_bytes(b"")
    return path


BAD_CSV_PHRASES = {
    "two-loss-columns": ["2 columns named 'loss' (columns 2 and 3", "Keep one of them"],
    "nan-first-loss": ["the loss in data row 1 (lr 1e-06) is missing or not finite",
                       "cut the curve before that row"],
    "inf-loss-mid-curve": ["the loss in data row 21", "is missing or not finite"],
    "nine-rows": ["has 9 rows; at least 10 are needed", "Run a longer sweep"],
    "binary": ["is not UTF-8 text", "NUL bytes", "Pass a UTF-8 CSV file"],
    "falling-lrs": ["is below the one before", "Sort the rows by lr"],
    "semicolons": ["has no 'lr' or 'loss' column (found: lr;loss)",
                   "The first row must name the columns"],
    "empty": ["(found: no header)", "The first row must name the columns"],
}  # fmt: skip


@pytest.mark.parametrize("kind", list(BAD_CSV_PHRASES))
def test_analyze_refuses_a_csv_it_cannot_read_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    curve = bad_csv(tmp_path, kind)
    out = tmp_path / "analysis"
    before = files_under(tmp_path)
    completed = lrfind("analyze", curve, "--out", out)
    assert_refused(completed, 2, curve.name, *BAD_CSV_PHRASES[kind], before=before, root=tmp_path)
    assert not out.exists()


NAN = float("nan")


@pytest.mark.parametrize(
    ("recommendation", "document", "arguments", "phrases"),
    [
        pytest.param({"base_lr": NAN, "max_lr": NAN, "lr": NAN}, {}, [],
                     ["no usable base_lr (got nan)", "Rerun `lrfind run`"], id="nan-rates"),
        pytest.param({"base_lr": "0.1", "max_lr": "0.2"}, {}, [],
                     ["no usable base_lr (got '0.1')", "Rerun `lrfind run`"], id="string-rates"),
        pytest.param({"base_lr": 0}, {}, [], ["no usable base_lr (got 0)"], id="zero-base-lr"),
        pytest.param({"base_lr": 0.5, "max_lr": 0.25}, {}, [],
                     ["base_lr (0.5) is not below its max_lr (0.25)", "rerun `lrfind run`"],
                     id="base-above-max"),
        pytest.param({}, {}, ["--epochs", "-5"],
                     ["--epochs must be a positive number of training epochs; got -5",
                      "e.g. --epochs 5"], id="negative-epochs"),
        pytest.param({}, {"format_version": 99}, [],
                     ["has format_version 99; this lrfind reads versions 1 to 2",
                      "Upgrade lrfind"], id="format-99"),
        pytest.param({"base_lr": None, "max_lr": None, "lr": None}, {"format_version": 1}, [],
                     ["holds no recommendation", "rerun `lrfind run`"],
                     id="format-1-null-rates"),
    ],
)  # fmt: skip
def test_apply_refuses_a_hand_made_result_that_means_nothing(
    tmp_path: Path,
    recommendation: dict[str, Any],
    document: dict[str, Any],
    arguments: list[str],
    phrases: list[str],
) -> None:
    result = write_result(tmp_path, **recommendation)
    if document:
        result.write_text(json.dumps({**json.loads(result.read_text()), **document}))
    config = tmp_path / "train.yaml"
    config.write_text("".join(f"{key}: {value}\n" for key, value in SETUP.items()))
    before = files_under(tmp_path)
    completed = lrfind("apply", result, config, *arguments)
    assert_refused(completed, 2, *phrases, before=before, root=tmp_path)


def test_a_range_wider_than_a_float_is_refused_before_work(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    arguments = tiny_run_arguments(mnist_dir, out)
    arguments[arguments.index("--start-lr") + 1] = "1e-300"
    arguments[arguments.index("--end-lr") + 1] = "1e300"
    before = files_under(tmp_path)
    completed = lrfind(*arguments)
    assert_refused(
        completed,
        2,
        "from start_lr 1e-300 to end_lr 1e+300",
        "more decades than a float can hold",
        "--start-lr 1e-7 --end-lr 10",
        before=before,
        root=tmp_path,
    )
    assert "loading data" not in completed.stderr and "full sweep" not in completed.stderr


# ---------------------------------------------------------------------------------------------
# Errors in the user's own code: one paragraph that says where and what to check


USER_CODE = """
class Samples(torch.utils.data.Dataset):
    classes = [0, 1, 2]

    def __init__(self, broken_at=None, label=None):
        self.broken_at = broken_at
        self.label = label

    def __len__(self):
        return 256

    def __getitem__(self, index):
        if index == self.broken_at:
            raise KeyError(f"sample {index} is missing from the index file")
        label = index % 3 if self.label is None else self.label
        return torch.full((8,), float(index % 3)), label


def breaks_at_40():
    return Samples(broken_at=40)


def labels_out_of_range():
    return Samples(label=7)


def linear(num_classes, input_shape):
    return nn.Linear(input_shape[0], num_classes)


class FailsOnStep20(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(28 * 28, 10)
        self.steps = 0

    def forward(self, inputs):
        if self.training:
            self.steps += 1  # the fit check's forward (train mode, as the sweep) is the first
            if self.steps == 22:
                raise RuntimeError("the custom layer lost its weights")
        return self.linear(inputs.flatten(1))


def fails_on_step_20():
    return FailsOnStep20()


def exits():
    sys.exit()
"""


@pytest.fixture
def user_code(tmp_path: Path) -> Path:
    return write_python(
        tmp_path / "project.py",
        USER_CODE,
        imports="import sys\n\nimport torch\nfrom torch import nn\n",
    )


def user_dataset_run(factory: Path, dataset: str, out: Path) -> list[Any]:
    return [
        "run",
        "--dataset",
        f"{factory}:{dataset}",
        "--model",
        f"{factory}:linear",
        "--batch-size",
        "8",
        "--steps",
        "30",
        "--repeats",
        "0",
        "--device",
        "cpu",
        "--out",
        out,
    ]


def test_a_dataset_that_raises_at_sample_40_names_the_step_and_the_error(
    tmp_path: Path, user_code: Path
) -> None:
    out = tmp_path / "run"
    before = files_under(tmp_path)
    completed = lrfind(*user_dataset_run(user_code, "breaks_at_40", out))
    assert_refused(
        completed,
        1,
        f"model '{user_code}:linear' on '{user_code}:breaks_at_40'",
        "raised while the dataset or loader produced the batch of step",
        "KeyError: 'sample 40 is missing from the index file'",
        "Check that code on one batch by hand",
        "--debug",
        before=before,
        root=tmp_path,
    )


def test_labels_beyond_the_classes_are_named_before_the_sweep(
    tmp_path: Path, user_code: Path
) -> None:
    out = tmp_path / "run"
    before = files_under(tmp_path)
    completed = lrfind(*user_dataset_run(user_code, "labels_out_of_range", out))
    assert_refused(  # found on the first batch, before the sweep (docs/rules.md)
        completed,
        2,
        "class index 7 in the targets is out of range",
        "which gives 3 outputs per sample",
        "--num-classes 8",
        before=before,
        root=tmp_path,
    )


def test_a_forward_pass_that_raises_on_step_20_names_the_step_and_its_lr(
    mnist_dir: Path, tmp_path: Path, user_code: Path
) -> None:
    out = tmp_path / "run"
    arguments = [
        *tiny_run_arguments(mnist_dir, out),
        "--repeats",
        "0",
        "--model",
        f"{user_code}:fails_on_step_20",
    ]
    before = files_under(tmp_path)
    completed = lrfind(*arguments)
    assert_refused(
        completed,
        1,
        f"model '{user_code}:fails_on_step_20' on 'mnist'",
        "raised in the model's forward or backward pass or the loss at step 20 of the sweep (lr",
        "RuntimeError: the custom layer lost its weights",
        "rerun with --debug (or LRFIND_DEBUG=1)",
        before=before,
        root=tmp_path,
    )


def test_debug_shows_the_traceback_of_the_users_error(
    mnist_dir: Path, tmp_path: Path, user_code: Path
) -> None:
    """The pair of the case above: the same run with --debug (LRFIND_DEBUG=1 is the same
    switch, tested in test_user_code.py)."""
    out = tmp_path / "run"
    arguments = [
        *tiny_run_arguments(mnist_dir, out),
        "--repeats",
        "0",
        "--model",
        f"{user_code}:fails_on_step_20",
    ]
    completed = lrfind("--debug", *arguments)
    assert completed.returncode == 1, completed.stderr
    assert "Traceback (most recent call last)" in completed.stderr
    assert f'File "{user_code}"' in completed.stderr and "in forward" in completed.stderr
    assert "RuntimeError: the custom layer lost its weights" in completed.stderr
    assert "at step 20 of the sweep" in said(completed)
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_factory_that_calls_sys_exit_is_a_usage_error_that_says_what_to_return(
    tmp_path: Path, user_code: Path
) -> None:
    before = files_under(tmp_path)
    completed = lrfind(*user_dataset_run(user_code, "exits", tmp_path / "run"))
    assert_refused(
        completed,
        2,
        f"dataset factory '{user_code}:exits' called sys.exit(",
        "must return",
        before=before,
        root=tmp_path,
    )
    assert "full sweep" not in completed.stderr
    assert "SystemExit: ." not in said(completed)


@pytest.mark.parametrize(
    ("name", "text", "phrases"),
    [
        (
            "home.yaml",
            "out: ~nosuchuser-lrfind/x\n",
            [
                "'~nosuchuser-lrfind/x', whose ~user is not a user of this machine",
                "use ~/ for your own home",
            ],
        ),
        (
            "seed.yaml",
            f"seed: {2**64}\n",
            ["seed must be between 0 and 18446744073709551515", f"got {2**64}", "Try --seed 0"],
        ),
        (
            "nested.json",
            "[" * 100_000 + "]" * 100_000,
            ["nested.json nests its values too deeply", "write them out without deep nesting"],
        ),
        (
            "nested.yaml",
            "a: " + "[" * 1_200 + "]" * 1_200 + "\n",
            ["nested.yaml nests its values too deeply", "write them out without deep nesting"],
        ),
    ],
    ids=["unknown-user-home", "seed-2**64", "json-100000-deep", "yaml-1200-deep"],
)
def test_run_refuses_bad_option_files(
    tmp_path: Path, name: str, text: str, phrases: list[str]
) -> None:
    config = tmp_path / name
    config.write_text(text)
    before = files_under(tmp_path)
    completed = lrfind("run", "--config", config, "--out", tmp_path / "run", cwd=tmp_path)
    assert_refused(completed, 2, *phrases, before=before, root=tmp_path)


def test_a_constant_schedule_with_a_base_lr_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("scheduler:\n  kind: constant\n  lr: 0.1\n  base_lr: 0.01\n")
    before = files_under(tmp_path)
    completed = lrfind("train", "--config", config, "--out", tmp_path / "run")
    assert_refused(
        completed,
        2,
        "a constant schedule with key(s) base_lr",
        "Remove them",
        before=before,
        root=tmp_path,
    )


def test_out_that_is_a_dangling_symlink_is_named_as_one(mnist_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "nowhere")
    before = files_under(tmp_path)
    completed = lrfind(*tiny_run_arguments(mnist_dir, link))
    assert_refused(completed, 1, str(link), "link", str(tmp_path / "nowhere"), "--out",
                   before=before, root=tmp_path)  # fmt: skip
    assert "another lrfind run" not in said(completed)


def training_config(tmp_path: Path) -> Path:
    config = tmp_path / "train.yaml"
    config.write_text("".join(f"{key}: {value}\n" for key, value in SETUP.items()))
    return config


@pytest.mark.parametrize("steps_per_epoch", [-3, 1.5, "many", float("inf")])
def test_apply_refuses_a_result_whose_steps_per_epoch_mean_nothing(
    tmp_path: Path, steps_per_epoch: Any
) -> None:
    result = write_result(tmp_path)
    document = json.loads(result.read_text())
    document["data"]["steps_per_epoch"] = steps_per_epoch
    result.write_text(json.dumps(document))
    config = training_config(tmp_path)
    before = files_under(tmp_path)
    completed = lrfind("apply", result, config, "--schedule", "triangular")
    assert_refused(completed, 2, "steps_per_epoch", str(steps_per_epoch), before=before,
                   root=tmp_path)  # fmt: skip


def test_apply_refuses_a_constant_rate_above_max_lr(tmp_path: Path) -> None:
    result = write_result(tmp_path, lr=5.0)
    config = training_config(tmp_path)
    before = files_under(tmp_path)
    completed = lrfind("apply", result, config, "--schedule", "constant")
    assert_refused(completed, 2, "lr (5.0)", "max_lr (0.2561)", "rerun `lrfind run`",
                   before=before, root=tmp_path)  # fmt: skip


def test_apply_quotes_the_reasons_a_format_1_result_gives_for_no_rate(tmp_path: Path) -> None:
    result = write_result(tmp_path, base_lr=None, max_lr=None, lr=None)
    document = json.loads(result.read_text())
    document["format_version"] = 1
    document["recommendation"]["diagnostics"] = [
        "The loss never diverged up to lr=10: raise --end-lr (e.g. ten times higher)."
    ]
    result.write_text(json.dumps(document))
    config = training_config(tmp_path)
    before = files_under(tmp_path)
    completed = lrfind("apply", result, config)
    assert_refused(completed, 2, "holds no recommendation", "The loss never diverged up to lr=10",
                   before=before, root=tmp_path)  # fmt: skip
    assert "no reasons recorded" not in said(completed)


def test_weights_that_are_a_folder_are_named_as_a_folder(mnist_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"not read")
    before = files_under(tmp_path)
    completed = lrfind(*tiny_run_arguments(mnist_dir, tmp_path / "run"), "--weights", folder)
    assert_refused(completed, 2, f"--weights {folder}", "folder", before=before, root=tmp_path)
    assert "does not exist" not in said(completed)
