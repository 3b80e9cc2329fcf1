"""Shared fixtures and helpers: real-format IDX files built on the spot, the real
Fashion-MNIST, tiny tasks and models, and the command run in-process or as a real process."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gzip
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# One torch thread, in this process and in every process a test starts: the tasks are tiny,
# and on a shared 2-core machine a second thread only fights the other processes for a core.
# Set before torch is first imported (lrfind.setup.data below imports it).
os.environ["OMP_NUM_THREADS"] = "1"
# lrfind.cli's consoles fix their width at import from $COLUMNS when it is set (pytest-xdist's
# workers set it to 80): unset, they read it when they print, so conftest.lrfind's COLUMNS
# holds in this process as in a real one.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from lrfind import range_test
from lrfind.cli import app
from lrfind.core.records import RangeTestResult
from lrfind.core.settings import SweepSettings
from lrfind.engine.stacked import stacked_range_tests
from lrfind.outputs.documents import RESULT_FORMAT_VERSION
from lrfind.setup import data

torch.set_num_threads(1)

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array in the IDX format (big-endian header, then the raw values)."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, IDX_TYPE_CODES[np.dtype(dtype)], array.ndim])
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def learnable_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images whose class is a bright 7x7 block at one of ten places, in noise.

    A small network learns this in a few dozen steps, so sweeps over it have real structure:
    a flat start, a descent, and divergence at high rates.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count).astype(np.uint8)
    images = rng.integers(0, 60, size=(count, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        row, column = divmod(int(label), 5)
        top, left = 3 + row * 12, 1 + column * 5
        images[index, top : top + 7, left : left + 5] = 200
    return images, labels


def write_mnist_files(folder: Path, train: int = 600, test: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train, 0), ("test", test, 1)):
        images, labels = learnable_images(count, seed)
        images_name, labels_name = data.idx_filenames(split)
        write_idx(folder / f"{images_name}.gz", images)
        write_idx(folder / f"{labels_name}.gz", labels)
    return folder


def write_python(
    path: Path, body: str, imports: str = "import torch\nfrom torch import nn\n"
) -> Path:
    """A user factory file: the imports, then `body`. Returns the path for a spec."""
    path.write_text(f"{imports}\n{body}")
    return path


def user_task(hidden_layers: int = 1) -> str:
    """A user's `data()` and `model(num_classes)` factories for `--dataset file.py:data
    --model file.py:model`: 1,024 points of 3 classes in 8 dimensions, an MLP of width 32
    with `hidden_layers` hidden layers (two give Muon a hidden matrix)."""
    hidden = "nn.Linear(8, 32), nn.ReLU(), " + "nn.Linear(32, 32), nn.ReLU(), " * (
        hidden_layers - 1
    )
    return f"""
def data():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1024, 8, generator=generator)
    targets = inputs[:, :3].argmax(dim=1)
    dataset = torch.utils.data.TensorDataset(inputs, targets)
    dataset.classes = ["a", "b", "c"]
    return dataset


def model(num_classes):
    return nn.Sequential({hidden}nn.Linear(32, num_classes))
"""


# ---------------------------------------------------------------------------------------------
# Tiny tasks for the engine (test_sweep, test_stacked, test_plan, ...)


def tiny_task(seed: int = 0, size: int = 512, batch_size: int = 32) -> list[tuple[Any, Any]]:
    """A linearly separable 3-class problem in 8 dimensions, as a list of batches."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, 8, generator=generator)
    targets = (inputs[:, :3]).argmax(dim=1)
    return [
        (inputs[start : start + batch_size], targets[start : start + batch_size])
        for start in range(0, size, batch_size)
    ]


def tiny_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def snapshot(module: nn.Module) -> dict[str, Any]:
    return {
        key: value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
        for key, value in module.state_dict().items()
    }


def assert_same_state(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        if isinstance(first[key], torch.Tensor):
            assert torch.equal(first[key], second[key]), key
        else:
            assert first[key] == second[key], key


Batches = list[tuple[torch.Tensor, torch.Tensor]]
CPU = torch.device("cpu")
# A range in which the tiny task trains without chaos: float rounding stays at rounding size.
CALM = SweepSettings(start_lr=1e-4, end_lr=0.3, steps=40)


def one_by_one(
    models: list[nn.Module], make_optimizer: Callable[[Any], torch.optim.Optimizer],
    settings: SweepSettings, loaders: list[Batches] | None = None, **options: Any,
) -> list[RangeTestResult]:  # fmt: skip
    """One range test per model, each on its own tiny task (seeds 0, 1, ...)."""
    loaders = loaders or [tiny_task(seed=index) for index in range(len(models))]
    return [
        range_test(
            model,
            make_optimizer(model.parameters()),
            nn.functional.cross_entropy,
            loader,
            **vars(settings),
            seed=0,
            **options,
        )
        for model, loader in zip(models, loaders, strict=True)
    ]


def stacked(
    models: list[nn.Module], make_optimizer: Callable[[Any], torch.optim.Optimizer],
    settings: SweepSettings, loaders: list[Batches] | None = None, **options: Any,
) -> list[RangeTestResult]:  # fmt: skip
    """The same range tests as `one_by_one`, the copies trained as one."""
    return stacked_range_tests(
        models,
        make_optimizer,
        nn.functional.cross_entropy,
        loaders or [tiny_task(seed=index) for index in range(len(models))],
        settings,
        device=CPU,
        seed=0,
        **options,
    )


def synthetic_loss(
    lrs: np.ndarray, descent_center: float, diverge_at: float | None, noise: float, seed: int
) -> np.ndarray:
    """Loss 2.3 flat, a sigmoid descent to 0.5 centred (in log LR) at descent_center, then an
    explosion above diverge_at, plus seeded noise."""
    position = np.log10(lrs) - np.log10(descent_center)
    loss = 0.5 + 1.8 / (1.0 + np.exp(3.0 * position))
    if diverge_at is not None:
        above = np.log10(lrs) - np.log10(diverge_at)
        loss = loss + np.where(above > 0, np.expm1(4.0 * above) * 3.0, 0.0)
    rng = np.random.default_rng(seed)
    return loss + rng.normal(0.0, noise, size=len(lrs))


# ---------------------------------------------------------------------------------------------
# Data on disk in the forms torchvision and image folders use


def write_torchvision_mnist(root: Path, class_name: str, train: int = 64, test: int = 16) -> Path:
    """The uncompressed IDX files torchvision's MNIST-style classes read, where they read them."""
    raw = root / class_name / "raw"
    raw.mkdir(parents=True)
    for split, count, seed in (("train", train, 0), ("test", test, 1)):
        images, labels = learnable_images(count, seed)
        images_name, labels_name = data.idx_filenames(split)
        write_idx(raw / images_name, images)
        write_idx(raw / labels_name, labels)
    return root


def write_image_folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """PNG files under root/<class>/, one per size given, with pixels drawn from a seed."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for class_name, class_sizes in sizes.items():
        (root / class_name).mkdir(parents=True)
        for number, (width, height) in enumerate(class_sizes):
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / class_name / f"{number}.png")
    return root


# ---------------------------------------------------------------------------------------------
# A result.json as `lrfind run` writes it, for apply and train

RECOMMENDATION = {"base_lr": 0.0453, "max_lr": 0.2561, "lr": 0.0853}
SETUP = {"model": "lenet", "dataset": "fashion-mnist", "optimizer": "sgd", "batch_size": 256}


def write_result(folder: Path, **recommendation: float | None) -> Path:
    path = folder / "result.json"
    document = {
        "format_version": RESULT_FORMAT_VERSION,
        "config": dict(SETUP),
        "data": {"steps_per_epoch": 234},
        "recommendation": {**RECOMMENDATION, **recommendation},
    }
    path.write_text(json.dumps(document))
    return path


def read_result(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / "result.json").read_text())
    return document


# ---------------------------------------------------------------------------------------------
# The command in this process (Typer's CliRunner): what nearly every test of the CLI needs

runner = CliRunner()


def invoke(*arguments: Any) -> Any:
    return runner.invoke(app, [str(argument) for argument in arguments])


def tiny_run_arguments(data_dir: Path, out: Path) -> list[str]:
    return ["run", "--dataset", "mnist", "--data-dir", str(data_dir), "--no-download",
            "--batch-size", "32", "--steps", "40", "--start-lr", "1e-3", "--end-lr", "10",
            "--out", str(out), "--device", "cpu"]  # fmt: skip


def assert_clean_failure(result: Any, exit_code: int, message: str, out: Path | None) -> None:
    """One clear paragraph, the right exit code, no traceback, and (for a run that was to
    write to `out`) neither the run folder nor a staging folder left behind."""
    assert result.exit_code == exit_code, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    if out is not None:
        assert not out.exists()
        assert list(out.parent.glob(f".{out.name}.*")) == []


@dataclasses.dataclass(frozen=True)
class Ran:
    """A command run in this process, shaped as a finished process: its exit code and what
    it printed to stdout and to stderr."""

    returncode: int
    stdout: str
    stderr: str


def lrfind(
    *arguments: Any,
    cwd: Path | None = None,
    columns: int = 300,
    env: dict[str, str | None] | None = None,
    charset: str = "utf-8",
) -> Ran:
    """The command as a user runs it, in this process: a terminal `columns` wide that encodes
    `charset`, plain (no colour codes to match around), no --debug from the environment,
    nothing on stdin. An exception that escapes the command is printed to stderr with its
    traceback, as Python prints it when a process dies of one (exit code 1)."""
    environment = {"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb", "LRFIND_DEBUG": None}
    folder = contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext()
    with folder:
        result = CliRunner(charset=charset).invoke(
            app, [str(argument) for argument in arguments], env={**environment, **(env or {})}
        )
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return Ran(result.exit_code, result.stdout, stderr)


def said(completed: Ran | subprocess.CompletedProcess[str]) -> str:
    """Everything the command printed, with line wrapping undone."""
    return " ".join((completed.stdout + completed.stderr).split())


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def files_under(root: Path, *skipped: Path) -> dict[str, bytes | str]:
    """Every entry under `root` as a user could tell it apart: a file's bytes, a link's
    target, or "folder". Entries under `skipped` paths are left out, and so is the bytecode
    Python may cache when lrfind imports the user's own file."""
    found: dict[str, bytes | str] = {}
    for folder, folders, files in os.walk(root):
        here = Path(folder)
        folders[:] = [
            name for name in folders if here / name not in skipped and name != "__pycache__"
        ]
        for name in folders + files:
            path = here / name
            if path in skipped:
                continue
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "link to " + os.readlink(path)
            elif path.is_dir():
                found[key] = "folder"
            else:
                found[key] = path.read_bytes()
    return found


def leftovers(*roots: Path) -> list[Path]:
    """Staging folders, retired folders and claim files that a finished command left."""
    found = []
    for root in roots:
        for folder, folders, files in os.walk(root):
            for name in folders + files:
                staging = name.startswith(".") and (".partial-" in name or ".old-" in name)
                if staging or name == ".lrfind-claim":
                    found.append(Path(folder) / name)
    return found


def assert_refused(
    completed: Ran | subprocess.CompletedProcess[str],
    exit_code: int,
    *phrases: str,
    before: dict[str, bytes | str],
    root: Path,
    alone: bool = False,
    unsaid: tuple[str, ...] = (),
) -> None:
    """One paragraph after "Error:" holding every phrase and none of `unsaid`, and `root`
    exactly as it was. `alone`: that paragraph is all the command printed."""
    output = completed.stdout + completed.stderr
    assert completed.returncode == exit_code, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "\n\n" not in output.split("\nError: ")[-1].strip(), output
    if alone:
        assert said(completed).startswith("Error: "), output
        assert said(completed).count("Error: ") == 1, output
    for phrase in phrases:
        assert phrase in said(completed), output
    for phrase in unsaid:
        assert phrase not in said(completed), output
    assert files_under(root) == before
    assert leftovers(root) == []


# ---------------------------------------------------------------------------------------------
# The installed command in its own process: only where a process is the point (a signal
# mid-sweep, runs racing for one folder, start-up imports)

LRFIND_COMMAND = str(Path(sys.executable).parent / "lrfind")
PROCESS_ENVIRONMENT = {
    **{key: value for key, value in os.environ.items() if key != "LRFIND_DEBUG"},
    "COLUMNS": "300",
    "NO_COLOR": "1",
}


@contextlib.contextmanager
def started(*arguments: Any) -> Iterator[subprocess.Popen[str]]:
    """The installed command in its own process, left running for the caller; killed, by its
    own id, if the caller fails before it ends."""
    process = subprocess.Popen(
        [LRFIND_COMMAND, *(str(argument) for argument in arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=PROCESS_ENVIRONMENT,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def signal_when(
    process: subprocess.Popen[str], cue: str, delay_s: float, signal_number: int
) -> tuple[str, str]:
    """Send `signal_number` `delay_s` after the process printed `cue`; its whole output."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if cue in line:
            break
    time.sleep(delay_s)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    return stdout, "".join(seen) + stderr


@pytest.fixture
def isolated_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No dataset anywhere: empty cache, no $LRFIND_DATA_DIR, no system folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LRFIND_DATA_DIR", raising=False)
    for name, dataset in list(data.BUILTIN_DATASETS.items()):
        monkeypatch.setitem(
            data.BUILTIN_DATASETS,
            name,
            data.BuiltinDataset(
                name=dataset.name,
                torchvision_class=dataset.torchvision_class,
                num_classes=dataset.num_classes,
                system_dirs=(str(tmp_path / "system" / name),),
                apt_package=dataset.apt_package,
            ),
        )
    return tmp_path


@pytest.fixture
def mnist_dir(isolated_data: Path) -> Path:
    """A small learnable dataset in real MNIST IDX format (MNIST has no offline source)."""
    return write_mnist_files(isolated_data / "mnist-files")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The real Fashion-MNIST files. Missing them fails under CI and skips elsewhere."""
    if (REAL_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return REAL_FASHION_MNIST
    message = (
        f"real Fashion-MNIST not found in {REAL_FASHION_MNIST}; "
        "install it with `apt-get install dataset-fashion-mnist`"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
