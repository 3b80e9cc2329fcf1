"""Where a range test keeps the caller's state (lrfind.engine.snapshot), and that every place
gives it back bit for bit, also when the sweep fails or is interrupted."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lrfind.core.plan import search
from lrfind.core.records import SnapshotPlace
from lrfind.core.settings import SearchSettings, SweepSettings
from lrfind.engine import snapshot as snapshots
from lrfind.engine.finder import range_test
from lrfind.engine.snapshot import (
    SMALL_STATE_BYTES,
    choose_place,
    state_bytes,
    take_snapshot,
    tensor_bytes,
)
from lrfind.errors import ConfigError, SweepError
from lrfind.outputs.documents import search_blocks
from lrfind.settings.options import RunConfig
from tests.conftest import tiny_task

MiB = 2**20
GiB = 2**30
PLACES = ("device", "cpu", "disk")

# ---------------------------------------------------------------------------------------------
# The choice: a pure function of the sizes, the free memory, the device and the option


@pytest.mark.parametrize(
    ("state", "device", "host", "disk", "gpu", "expected"),
    [
        (2 * GiB, "cuda", 64 * GiB, 100 * GiB, 10 * GiB, "cpu"),  # off the accelerator
        (1 * MiB, "cuda", 64 * GiB, 100 * GiB, 10 * GiB, "cpu"),  # however small
        (2 * GiB, "cuda", 3 * GiB, 100 * GiB, 10 * GiB, "disk"),  # host short: disk
        (2 * GiB, "cuda", 3 * GiB, 3 * GiB, 10 * GiB, "device"),  # both short: beside it
        (2 * GiB, "cuda", None, None, None, "cpu"),  # nothing known: host memory
        (1 * MiB, "cpu", 64 * GiB, 100 * GiB, None, "cpu"),  # small: in memory
        (SMALL_STATE_BYTES, "cpu", 64 * GiB, 100 * GiB, None, "cpu"),
        (SMALL_STATE_BYTES + 1, "cpu", 64 * GiB, 100 * GiB, None, "disk"),  # larger: a file
        (1 * MiB, "cpu", 1 * MiB, 100 * GiB, None, "disk"),  # small, but memory is short
        (2 * GiB, "cpu", 64 * GiB, 3 * GiB, None, "cpu"),  # no room on disk: memory
        (2 * GiB, "cpu", 64 * GiB, None, None, "cpu"),  # disk unknown: memory
        (1 * MiB, "mps", 64 * GiB, 100 * GiB, None, "cpu"),
    ],
)
def test_auto_chooses_by_sizes_and_free_memory(
    state: int, device: str, host: int | None, disk: int | None, gpu: int | None, expected: str
) -> None:
    chosen = choose_place("auto", state, device, host, disk, gpu)
    assert chosen.place == expected
    assert chosen.state_bytes == state
    assert chosen.reason


@pytest.mark.parametrize("option", PLACES)
def test_a_forced_place_is_obeyed_whatever_the_free_memory(option: str) -> None:
    chosen = choose_place(option, 5 * GiB, "cuda", 1 * MiB, 1 * MiB, 1 * MiB)
    assert chosen.place == option
    assert "asked" in chosen.reason


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_no_room_anywhere_is_a_clear_error(device: str) -> None:
    with pytest.raises(SweepError, match="TMPDIR") as raised:
        choose_place("auto", 4 * GiB, device, 1 * GiB, 1 * GiB, 1 * GiB)
    assert "4.00 GiB" in str(raised.value)


def test_an_unknown_place_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"snapshot.*auto, device, cpu, disk"):
        choose_place("ram", 1, "cpu", None, None)
    with pytest.raises(ConfigError, match="snapshot"):
        RunConfig(snapshot="ram")
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="snapshot"):
        range_test(model, torch.optim.SGD(model.parameters()), nn.functional.mse_loss, [],
                   snapshot="ram")  # fmt: skip


def test_sizes_count_every_tensor_once() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight  # tied: one tensor under two names
    optimizer = torch.optim.Adam(model.parameters())
    assert state_bytes(model, optimizer) == 10 * 4 * 4
    model(torch.tensor([1, 2])).sum().backward()
    optimizer.step()  # now a gradient and two moments, plus the step count
    step_bytes = optimizer.state[model[0].weight]["step"].element_size()
    assert state_bytes(model, optimizer) == 4 * 10 * 4 * 4 + step_bytes
    assert tensor_bytes([{"a": [torch.zeros(3)], "b": (torch.zeros(2, dtype=torch.int8),)}]) == 14


# ---------------------------------------------------------------------------------------------
# Bit-exact restores from every place


class Everything(nn.Module):
    """A model with every kind of state a sweep can change: parameters and buffers (one kept
    out of the state dict), a channels-last convolution, tied weights, extra state."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1).to(memory_format=torch.channels_last)
        self.norm = nn.BatchNorm1d(8)
        self.hidden = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        self.tied = nn.Linear(8, 8)
        self.tied.weight = self.hidden.weight
        self.register_buffer("seen", torch.zeros(()), persistent=False)
        self.marker = {"calls": 0}

    def get_extra_state(self) -> dict[str, int]:
        return dict(self.marker)

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.marker = dict(state)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.marker["calls"] += 1
        with torch.no_grad():
            self.seen += 1
        image = inputs.reshape(-1, 1, 2, 4)
        features = inputs + self.conv(image).mean(dim=(1, 2, 3))[:, None]
        return self.head(torch.relu(self.tied(torch.relu(self.hidden(self.norm(features))))))


def everything() -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model after two steps of Adam, with gradients on some parameters and None on one,
    in eval mode: a state that an untouched copy would not give back by accident."""
    torch.manual_seed(0)
    model = Everything()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for inputs, targets in tiny_task()[:2]:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    model.head.bias.grad = None
    model.eval()
    return model, optimizer


def bits(value: Any) -> Any:
    """Every tensor in `value` as (dtype, shape, strides, raw bytes); the rest as it is."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        return (value.dtype, tuple(value.shape), value.stride(), bytes(flat.numpy()))
    if isinstance(value, dict):
        return {key: bits(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [bits(item) for item in value]
    return value


def everything_of(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "state": bits(model.state_dict()),
        "buffers": bits(dict(model.named_buffers())),
        "grads": bits([parameter.grad for parameter in model.parameters()]),
        "optimizer": bits(optimizer.state_dict()),
        "objects": [id(parameter) for parameter in model.parameters()],
        "training": model.training,
        "extra": dict(getattr(model, "marker", {})),
    }


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files go here, so a test sees what a disk snapshot leaves behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def open_files_in(folder: Path) -> list[str]:
    """Files this process holds open under `folder` (deleted ones included)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with_name = os.path.join("/proc/self/fd", fd)
        try:
            target = os.readlink(with_name)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.mark.parametrize("place", PLACES)
def test_every_place_restores_every_bit_after_a_sweep(place: str, private_tmp: Path) -> None:
    model, optimizer = everything()
    before = everything_of(model, optimizer)
    held: list[list[str]] = []

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        held.append(open_files_in(private_tmp))
        return nn.functional.cross_entropy(outputs, targets)

    result = range_test(model, optimizer, loss, tiny_task(), steps=25, snapshot=place)

    assert result.snapshot is not None and result.snapshot.place == place
    assert result.snapshot.state_bytes == state_bytes(model, optimizer)
    assert everything_of(model, optimizer) == before
    assert list(private_tmp.iterdir()) == [] and open_files_in(private_tmp) == []
    assert all(bool(files) == (place == "disk") for files in held)  # the file, while sweeping


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("failure", [ZeroDivisionError, KeyboardInterrupt])
def test_every_place_restores_every_bit_when_the_sweep_raises(
    place: str, failure: type[BaseException], private_tmp: Path
) -> None:
    model, optimizer = everything()
    before = everything_of(model, optimizer)
    calls = []

    def failing_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 9:
            raise failure("mid-sweep")
        return nn.functional.cross_entropy(outputs, targets)

    with pytest.raises(failure):
        range_test(model, optimizer, failing_loss, tiny_task(), steps=25, snapshot=place)

    assert everything_of(model, optimizer) == before
    assert list(private_tmp.iterdir()) == [] and open_files_in(private_tmp) == []


def test_a_fresh_optimizer_comes_back_empty() -> None:
    model = nn.Linear(8, 3)
    optimizer = torch.optim.Adam(model.parameters())
    before = everything_of(model, optimizer)
    range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(), steps=15,
               snapshot="disk")  # fmt: skip
    assert optimizer.state_dict()["state"] == {}
    assert everything_of(model, optimizer) == before


def test_the_disk_file_holds_the_state_and_goes_with_the_snapshot(private_tmp: Path) -> None:
    model, optimizer = everything()
    snapshot = take_snapshot(model, optimizer, "disk")
    store = snapshot.store
    assert isinstance(store, snapshots._DiskStore)
    written = os.fstat(store.file.fileno()).st_size
    plain_bytes = snapshot.place.state_bytes
    assert 0 < written <= plain_bytes  # the file holds the tensors' bytes (the rest in memory)
    assert list(private_tmp.iterdir()) == []  # unlinked at once: nothing left even on kill -9
    snapshot.close()
    assert store.file.closed and open_files_in(private_tmp) == []


def test_a_disk_that_refuses_the_write_is_a_clear_error(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FullDisk:
        closed = False

        def seek(self, offset: int) -> None:
            pass

        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.closed = True

    full = FullDisk()
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **_: full)
    model, optimizer = everything()
    before = everything_of(model, optimizer)
    with pytest.raises(SweepError, match=r"No space left.*TMPDIR.*--snapshot cpu"):
        range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(), steps=15,
                   snapshot="disk")  # fmt: skip
    assert full.closed and list(private_tmp.iterdir()) == []
    assert everything_of(model, optimizer) == before


def test_the_place_reaches_the_result_document() -> None:
    model = nn.Linear(8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def sweep(repeat: int, settings: SweepSettings) -> Any:
        return range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(),
                          steps=settings.steps, snapshot="disk")  # fmt: skip

    outcome = search(sweep, SweepSettings(steps=20), SearchSettings(repeats=0), "bottom")
    block = search_blocks(outcome, 0)["sweep"]["snapshot"]
    expected = SnapshotPlace("disk", state_bytes(model, optimizer), "asked for (snapshot=disk)")
    assert block == expected.to_dict()


def test_the_stacked_memory_check_leaves_out_a_snapshot_kept_on_the_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The full sweep peaked 3 GiB above its baseline, 1 GiB of it its snapshot beside the
    model: a stacked copy (which keeps none) needs 2 GiB. Free: 6 GiB plus 4 GiB cached."""
    from lrfind.engine.stacked import GpuPeak

    for name, value in {
        "max_memory_allocated": 4 * GiB,
        "mem_get_info": (6 * GiB, 80 * GiB),
        "memory_reserved": 5 * GiB,
        "memory_allocated": GiB,
    }.items():
        monkeypatch.setattr(torch.cuda, name, lambda device, value=value: value)
    cuda = torch.device("cuda")
    beside = SnapshotPlace("device", GiB, "asked for")
    assert GpuPeak(cuda, GiB).stacking_problem(4, beside) is None  # 4 x 2 = 8 of 10
    assert GpuPeak(cuda, GiB).stacking_problem(4, None) is not None  # 4 x 3 = 12
    off = SnapshotPlace("cpu", GiB, "off the cuda device")
    assert GpuPeak(cuda, GiB).stacking_problem(4, off) is not None
