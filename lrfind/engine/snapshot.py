"""Where the caller's state waits while a sweep trains it, and how it comes back bit for bit.

    with kept_while_sweeping(model, optimizer, "auto", device) as snapshot:
        ...                      # the sweep changes model and optimizer
    snapshot.place               # SnapshotPlace(place="disk", state_bytes=..., reason=...)

A range test trains the caller's own objects, so everything it changes is copied first and put
back afterwards, also when the sweep raises or is interrupted: the state dict (extra state and
its metadata included), buffers kept out of it, each parameter's `.grad` (None stays None),
the optimizer's state and the train/eval mode; and every tensor the optimizer's groups train
that the model does not own (a learnable temperature inside the loss, an extra tensor in the
parameter list), with its `.grad`. A copy beside the model would hold the whole
state twice on the device that training fills, so the copy lives where it costs least:

- `cpu`, host memory: for a model on an accelerator (one copy over the bus each way), and for
  a CPU model whose state is at most SMALL_STATE_BYTES;
- `disk`, a file in a private temporary folder (`TMPDIR`): for a larger CPU model, whose copy in
  memory would add its whole size to the peak, and whenever host memory is short. The file is
  unlinked as soon as it is open, so it goes with the process however that ends, and restoring
  reads the bytes straight into the model's own tensors (no second copy, even for a moment);
- `device`, beside the model: only when asked, or when neither host memory nor the disk has room.

The choice (`choose_place`) is a pure function of the state's size (`state_bytes`, each tensor
counted once) and the free memory measured here; `snapshot="device"`, `"cpu"` or `"disk"`
forces it (`--snapshot` on the command line). The stacked repeats' memory check reads the free
device memory the same way (`device_free_bytes`).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import io
import os
import shutil
import tempfile
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lrfind.core.records import SnapshotPlace
from lrfind.core.settings import check_choice
from lrfind.errors import SweepError
from lrfind.settings.options import SNAPSHOT_PLACES

# A CPU model's state up to this size is copied in memory: a small share of what a process
# that has imported torch already holds, so a file is not worth it (docs/speed.md).
SMALL_STATE_BYTES = 16 * 2**20
# A copy in host memory may take at most this share of what is available (data loading and
# the sweep's own allocations need the rest); a file at most this share of the free disk.
HOST_SHARE = 0.5
DISK_SHARE = 0.5
# Beside the model, the copy may take this share of the free device memory (the allocator
# needs room to fragment), as stacked copies may (lrfind.engine.stacked).
DEVICE_SHARE = 0.8


# ---------------------------------------------------------------------------------------------
# Sizes and free memory


def tensor_bytes(values: Iterable[Any]) -> int:
    """Bytes of every tensor in `values` (nested dicts, lists and tuples), each view counted
    once however often it appears (tied weights)."""
    seen: set[tuple[Any, ...]] = set()
    total = 0
    for tensor in _tensors(list(values)):
        tensor = _local(tensor)
        key = _identity(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """What a snapshot copies: the state dict, the buffers kept out of it, the gradients,
    the tensors the optimizer trains beyond the model's (and their gradients) and the
    optimizer's state."""
    strays = stray_parameters(model, optimizer)
    return tensor_bytes(
        [
            model.state_dict(),
            [buffer for _, buffer in _non_persistent_buffers(model)],
            [parameter.grad for parameter in model.parameters()],
            strays,
            [parameter.grad for parameter in strays],
            optimizer.state_dict(),
        ]
    )


def stray_parameters(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> list[torch.Tensor]:
    """The tensors the optimizer's groups train that the model does not own (a learnable
    temperature inside the loss module, an extra tensor in the parameter list), each once, in
    the groups' order: the model's state dict does not hold them, so the snapshot keeps them
    itself."""
    own = {id(tensor) for tensor in _module_tensors(model)}
    strays: dict[int, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if isinstance(parameter, torch.Tensor) and id(parameter) not in own:
                strays.setdefault(id(parameter), parameter)
    return list(strays.values())


def host_available_bytes() -> int | None:
    """Memory this process could still take without swapping: MemAvailable (Linux), or the
    free pages (other POSIX systems), within a cgroup's limit where one is set; None when
    the system does not say."""
    available = _meminfo_available()
    if available is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_room()
    if limit is not None:
        available = limit if available is None else min(available, limit)
    return available


def disk_free_bytes(folder: str | None = None) -> int | None:
    """Free bytes where temporary files go (`TMPDIR`), or None when unknown."""
    try:
        return shutil.disk_usage(folder or tempfile.gettempdir()).free
    except OSError:
        return None


def device_free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device, counting what torch's allocator holds unused as free;
    None for other devices."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _meminfo_available() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _cgroup_room() -> int | None:
    """A cgroup v2 memory limit less what the group uses, or None when there is no limit."""
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            return max(int(limit) - used, 0)
    return None


# ---------------------------------------------------------------------------------------------
# The choice


def choose_place(
    option: str,
    state_bytes: int,
    device_type: str,
    host_free: int | None,
    disk_free: int | None,
    device_free: int | None = None,
) -> SnapshotPlace:
    """Where a snapshot of `state_bytes` lives, for a model on `device_type`, given the free
    bytes of host memory, of the temporary folder's disk and of the device (None: unknown;
    unknown host memory counts as enough). `option` other than auto is obeyed as it is."""
    check_choice("snapshot", option, SNAPSHOT_PLACES)
    size = _size(state_bytes)
    if option != "auto":
        return SnapshotPlace(option, state_bytes, f"asked for (snapshot={option})")
    host_fits = host_free is None or state_bytes <= HOST_SHARE * host_free
    disk_fits = disk_free is not None and state_bytes <= DISK_SHARE * disk_free
    host_short = f"host memory is short ({_size(host_free or 0)} available for {size})"
    if device_type != "cpu":
        if host_fits:
            return SnapshotPlace("cpu", state_bytes, f"off the {device_type} device: {size}")
        if disk_fits:
            return SnapshotPlace("disk", state_bytes, host_short)
        if device_free is not None and state_bytes <= DEVICE_SHARE * device_free:
            return SnapshotPlace("device", state_bytes, f"{host_short}, and so is the disk")
    else:
        if state_bytes <= SMALL_STATE_BYTES and host_fits:
            return SnapshotPlace("cpu", state_bytes, f"small enough to copy in memory: {size}")
        if disk_fits:
            reason = host_short if not host_fits else f"a copy in memory would add {size}"
            return SnapshotPlace("disk", state_bytes, reason)
        if host_fits:
            return SnapshotPlace("cpu", state_bytes, f"the disk is short, memory is not: {size}")
    raise SweepError(
        f"there is no room to keep the model's state ({size}) while the sweep runs: "
        f"{_size(host_free or 0)} of host memory and {_size(disk_free or 0)} of disk in "
        f"{tempfile.gettempdir()} are free. Point TMPDIR at a disk with room, or force a "
        "place with --snapshot (snapshot= in Python): device, cpu or disk."
    )


def _size(count: int) -> str:
    if count < 2**20:
        return f"{count / 2**10:.1f} KiB"
    return f"{count / 2**20:.1f} MiB" if count < 2**30 else f"{count / 2**30:.2f} GiB"


# ---------------------------------------------------------------------------------------------
# Stores: where the tensors of a snapshot are kept


@dataclass(frozen=True)
class _Entry:
    """One tensor of a snapshot: where it came from and how to rebuild it exactly."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    key: Any  # the store's own handle: a tensor, or a file offset


@dataclass(frozen=True)
class _Shard:
    """A DTensor of a sharded model (FSDP2): this rank's local shard, kept like any tensor,
    and how to wrap it again; no rank ever holds the whole tensor."""

    local: _Entry
    mesh: Any
    placements: tuple[Any, ...]
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _MemoryStore:
    """Copies in memory: on the tensor's own device (`home=None`) or in host memory."""

    def __init__(self, home: torch.device | None) -> None:
        self.home = home

    def put(self, tensor: torch.Tensor) -> Any:
        if self.home is None:
            return tensor.clone()
        return tensor.to(self.home, copy=True)

    def get(self, entry: _Entry) -> torch.Tensor:
        kept: torch.Tensor = entry.key
        return kept if kept.device == entry.device else kept.to(entry.device)

    def put_back(self, entry: _Entry, target: torch.Tensor) -> None:
        target.copy_(entry.key)

    def close(self) -> None:
        pass


class _DiskStore:
    """Raw bytes in one unlinked temporary file; tensors torch cannot view as bytes (sparse,
    quantized, subclasses) stay in host memory."""

    def __init__(self) -> None:
        self.folder: str | None = tempfile.mkdtemp(prefix="lrfind-snapshot-")  # mode 0700
        try:
            # open for the store's life, closed by close(); no name once created (POSIX)
            opened = tempfile.TemporaryFile(dir=self.folder)  # noqa: SIM115
            self.file = typing.cast(io.BufferedRandom, opened)
        except OSError as error:
            self.close()
            raise _disk_error("create", error) from None
        with contextlib.suppress(OSError):  # POSIX: the file has no name left; nor the folder
            os.rmdir(self.folder)
            self.folder = None
        self.memory = _MemoryStore(torch.device("cpu"))
        self.end = 0

    def put(self, tensor: torch.Tensor) -> Any:
        if not _plain(tensor):
            return ("memory", self.memory.put(tensor))
        order = _memory_order(tensor)
        dense = order is not None or tensor.is_contiguous()
        data = tensor.cpu().permute(order) if order else tensor.cpu().contiguous()
        offset = self.end
        try:
            self.file.seek(offset)
            self.file.write(_bytes_of(data.resolve_conj().resolve_neg().contiguous()))
        except OSError as error:
            raise _disk_error("write", error) from None
        self.end = self.file.tell()
        return ("file", offset, order, dense)

    def get(self, entry: _Entry) -> torch.Tensor:
        if entry.key[0] == "memory":
            return self.memory.get(dataclasses.replace(entry, key=entry.key[1]))
        _, offset, order, dense = entry.key
        if dense:  # the same strides, read in memory order
            tensor = torch.empty_strided(entry.shape, entry.stride, dtype=entry.dtype)
            self._read(offset, tensor.permute(order) if order else tensor)
        else:
            tensor = torch.empty(entry.shape, dtype=entry.dtype)
            self._read(offset, tensor)
        return tensor if entry.device.type == "cpu" else tensor.to(entry.device)

    def put_back(self, entry: _Entry, target: torch.Tensor) -> None:
        """Read the bytes straight into `target` where its memory is laid out as they are,
        else through a temporary copy of this one tensor."""
        key = entry.key
        if key[0] == "file" and target.device.type == "cpu" and target.stride() == entry.stride:
            view = target.permute(key[2]) if key[2] else target
            if view.is_contiguous():
                self._read(key[1], view)
                return
        target.copy_(self.get(entry))

    def _read(self, offset: int, tensor: torch.Tensor) -> None:
        buffer = _bytes_of(tensor)
        try:
            self.file.seek(offset)
            done = 0
            while done < len(buffer):
                count = self.file.readinto(buffer[done:])
                if not count:
                    raise OSError("the file ended early")
                done += count
        except OSError as error:
            raise _disk_error("read back", error) from None

    def close(self) -> None:
        file = getattr(self, "file", None)
        if file is not None:
            file.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _disk_error(action: str, error: OSError) -> SweepError:
    return SweepError(
        f"could not {action} the snapshot of the model's state in {tempfile.gettempdir()} "
        f"({error}). Point TMPDIR at a disk with room, or keep it in memory with --snapshot "
        "cpu (snapshot='cpu' in Python)."
    )


def _plain(tensor: torch.Tensor) -> bool:
    """Whether the tensor's values are its bytes: a dense tensor of a plain dtype."""
    return (
        type(tensor) is torch.Tensor
        and tensor.layout == torch.strided
        and not tensor.is_quantized
        and tensor.device.type != "meta"
    )


def _memory_order(tensor: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation of dimensions in which a dense, non-contiguous tensor (channels-last,
    a transpose) is laid out in memory, or None for a contiguous one (whose bytes are in
    order) or one with gaps or overlaps (copied contiguous; its values come back, not its
    strides)."""
    if tensor.is_contiguous():
        return None
    order = tuple(sorted(range(tensor.dim()), key=lambda dim: -tensor.stride()[dim]))
    return order if tensor.permute(order).is_contiguous() else None


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    """The memory of a contiguous CPU tensor, writable in place."""
    flat = tensor.detach().reshape(-1)
    return flat.view(torch.uint8).numpy().data if flat.numel() else memoryview(bytearray())


# ---------------------------------------------------------------------------------------------
# The snapshot


class Snapshot:
    """Everything a sweep changes on the caller's objects, kept at `place`, to put back once."""

    def __init__(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, place: SnapshotPlace
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.place = place
        self.store: _MemoryStore | _DiskStore = (
            _DiskStore()
            if place.place == "disk"
            else _MemoryStore(torch.device("cpu") if place.place == "cpu" else None)
        )
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        try:
            state = model.state_dict()
            self.state = collections.OrderedDict(
                (key, self._put(value)) for key, value in state.items()
            )
            metadata = getattr(state, "_metadata", None)
            if metadata is not None:
                self.state._metadata = copy.deepcopy(metadata)  # type: ignore[attr-defined]
            self.buffers = {
                name: self._put(buffer.detach()) for name, buffer in _non_persistent_buffers(model)
            }
            self.grads = [self._put(parameter.grad) for parameter in model.parameters()]
            self.strays = stray_parameters(model, optimizer)
            self.stray_values = [self._put(stray.detach()) for stray in self.strays]
            self.stray_grads = [self._put(stray.grad) for stray in self.strays]
            self.optimizer_state = self._put(optimizer.state_dict())
            # a tensor hyperparameter (lr=torch.tensor(...) for a compiled step) is filled in
            # place by the sweep; the same object comes back, so compiled code keeps its guard
            self.group_tensors = [
                (index, key, value)
                for index, group in enumerate(optimizer.param_groups)
                for key, value in group.items()
                if isinstance(value, torch.Tensor)
            ]
        except BaseException:
            self.store.close()
            raise
        # each submodule's own mode: a part frozen in eval (batch norm of a fine-tuned
        # backbone) stays in eval, which model.train(mode) alone would undo
        self.modes = [(module, module.training) for module in model.modules()]

    def _put(self, value: Any) -> Any:
        """`value` with each tensor replaced by its entry in the store; the rest copied."""
        if _is_dtensor(value):
            return _Shard(
                self._put(value.to_local()),
                value.device_mesh,
                tuple(value.placements),
                tuple(value.shape),
                tuple(value.stride()),
            )
        if isinstance(value, torch.Tensor):
            identity = _identity(value)  # before detach: a subclass's detached copy is new
            tensor = value.detach()
            if identity not in self._entries:
                self._entries[identity] = _Entry(
                    tuple(tensor.shape),
                    tuple(tensor.stride()),
                    tensor.dtype,
                    tensor.device,
                    self.store.put(tensor),
                )
            return self._entries[identity]
        if type(value) in (dict, list, tuple):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            kept = {key: self._put(item) for key, item in items}
            return kept if isinstance(value, dict) else type(value)(kept.values())
        return copy.deepcopy(value)

    def _get(self, value: Any) -> Any:
        if isinstance(value, _Entry):
            return self.store.get(value)
        if isinstance(value, _Shard):
            from torch.distributed.tensor import DTensor

            return DTensor.from_local(
                self.store.get(value.local),
                value.mesh,
                value.placements,
                run_check=False,
                shape=torch.Size(value.shape),
                stride=value.stride,
            )
        if type(value) in (dict, list, tuple):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            got = {key: self._get(item) for key, item in items}
            return got if isinstance(value, dict) else type(value)(got.values())
        return value

    def restore(self) -> None:
        """Put everything back. What the sweep made (its gradients and optimizer state) is
        freed first, so restoring never holds more than the sweep did."""
        model, optimizer = self.model, self.optimizer
        for parameter in [*model.parameters(), *self.strays]:
            parameter.grad = None
        optimizer.state.clear()
        with torch.no_grad():
            targets = model.state_dict(keep_vars=True)
            own = {id(tensor) for tensor in _module_tensors(model)}
            state: collections.OrderedDict[str, Any] = collections.OrderedDict()
            for key, value in self.state.items():
                target = targets.get(key)
                if not isinstance(target, torch.Tensor) or id(target) not in own:
                    state[key] = self._get(value)
                    continue
                into, kept = target.detach(), value
                if isinstance(value, _Shard) and _is_dtensor(target):
                    into, kept = _local(into), value.local  # this rank's shard only
                if _fits(into, kept):
                    self.store.put_back(kept, into)
                    state[key] = target  # load_state_dict's copy onto itself does nothing
                else:
                    state[key] = self._get(value)
            metadata = getattr(self.state, "_metadata", None)
            if metadata is not None:
                state._metadata = metadata  # type: ignore[attr-defined]
        model.load_state_dict(state)
        with torch.no_grad():
            for name, buffer in _non_persistent_buffers(model):
                if name in self.buffers:
                    self.store.put_back(self.buffers[name], buffer.detach())
        for parameter, grad in zip(model.parameters(), self.grads, strict=True):
            parameter.grad = self._get(grad)
        with torch.no_grad():
            for stray, value in zip(self.strays, self.stray_values, strict=True):
                if _fits(stray, value):
                    self.store.put_back(value, stray.detach())
                else:  # the sweep replaced its data with another shape or dtype
                    stray.data = self._get(value)
        for stray, grad in zip(self.strays, self.stray_grads, strict=True):
            stray.grad = self._get(grad)
        optimizer.load_state_dict(self._get(self.optimizer_state))
        with torch.no_grad():
            for index, key, tensor in self.group_tensors:
                tensor.copy_(optimizer.param_groups[index][key])
                optimizer.param_groups[index][key] = tensor
        for module, training in self.modes:
            module.training = training

    def close(self) -> None:
        """Free the copy (the disk store's file goes with it)."""
        self.store.close()
        self._entries.clear()


def take_snapshot(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    option: str = "auto",
    device: torch.device | None = None,
) -> Snapshot:
    """A snapshot of `model` and `optimizer`, placed by `choose_place` from the measured sizes
    (`device`: where the model trains, by default its first parameter's)."""
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    check_choice("snapshot", option, SNAPSHOT_PLACES)
    measured = option == "auto"
    place = choose_place(
        option,
        state_bytes(model, optimizer),
        device.type,
        host_available_bytes() if measured else None,
        disk_free_bytes() if measured else None,
        device_free_bytes(device) if measured else None,
    )
    return Snapshot(model, optimizer, place)


@contextlib.contextmanager
def kept_while_sweeping(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    option: str = "auto",
    device: torch.device | None = None,
) -> Iterator[Snapshot]:
    """Take a snapshot, run the block, then restore it and free it, however the block ends
    (an error, KeyboardInterrupt)."""
    snapshot = take_snapshot(model, optimizer, option, device)
    try:
        yield snapshot
    finally:
        try:
            snapshot.restore()
        finally:
            snapshot.close()


def _fits(target: torch.Tensor, entry: Any) -> bool:
    """Whether a saved value can be written into `target` as it is."""
    return (
        isinstance(entry, _Entry)
        and tuple(target.shape) == entry.shape
        and target.dtype == entry.dtype
        and target.device == entry.device
    )


def _is_dtensor(value: Any) -> bool:
    """Whether `value` is a torch.distributed DTensor (a parameter of an FSDP2 model)."""
    if not isinstance(value, torch.Tensor) or type(value) is torch.Tensor:
        return False
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (a view of its memory); any other tensor as it is."""
    return tensor.to_local() if _is_dtensor(tensor) else tensor  # type: ignore[attr-defined]


def _identity(tensor: torch.Tensor) -> tuple[Any, ...]:
    """What makes two tensors the same values: storage, offset, shape, strides and dtype."""
    if not _plain(tensor):
        return ("object", id(tensor))
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _module_tensors(model: torch.nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def _non_persistent_buffers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    persistent = set(model.state_dict())
    return [(name, buffer) for name, buffer in model.named_buffers() if name not in persistent]
