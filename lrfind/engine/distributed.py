"""torchrun: which rank this process is, and the process group a run joins.

    lrfind run ...                                   # one process: Ranks(rank=0, world=1)
    torchrun --nproc-per-node 2 -m lrfind run ...    # each rank trains its shard of a batch
    torchrun --nproc-per-node 2 -m lrfind run --parallel fsdp ...   # and holds a model shard

`Ranks.from_environment()` is the one place lrfind reads torchrun's variables; the value is
passed down from the command to the engine, which never reads the environment itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from lrfind.errors import ConfigError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0  # rank 0 alone writes outputs and talks to the terminal
    world: int = 1  # processes in the group; 1 without torchrun
    local_rank: int = 0  # the GPU this rank uses on its machine

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @classmethod
    def from_environment(cls) -> Ranks:
        """What torchrun set for this process (RANK, WORLD_SIZE, LOCAL_RANK), else one rank."""
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @classmethod
    def of_group(cls) -> Ranks:
        """The ranks of an initialised torch.distributed group (an API user's own), else one."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return cls(torch.distributed.get_rank(), torch.distributed.get_world_size())
        return cls()


@contextlib.contextmanager
def distributed_group(
    ranks: Ranks, device: torch.device, batch_size: int
) -> Iterator[torch.device]:
    """Under torchrun, join the process group for the run: gloo on CPU, NCCL on CUDA with one
    GPU per rank (LOCAL_RANK). Yields the device this rank uses."""
    if not ranks.distributed or torch.distributed.is_initialized():
        yield device
        return
    if batch_size % ranks.world:
        raise ConfigError(
            f"batch_size {batch_size} does not split evenly over {ranks.world} ranks; each rank "
            f"trains on an equal shard of every batch. Use a multiple of {ranks.world}."
        )
    backend = "gloo"
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    torch.distributed.init_process_group(backend)
    try:
        yield device
    finally:
        torch.distributed.destroy_process_group()


def wrapped_for_ranks(
    model: torch.nn.Module, device: torch.device, parallel: str
) -> torch.nn.Module:
    """The model spread over the group: DistributedDataParallel (`ddp`, a copy per rank), or
    FSDP2 (`fsdp`): fully_shard on each direct child that holds parameters, then on the whole,
    so each rank keeps one shard of every parameter and gathers a block only to run it."""
    if parallel == "ddp":
        device_ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    from torch.distributed.fsdp import fully_shard

    for child in model.children():
        if any(True for _ in child.parameters()):
            fully_shard(child)
    fully_shard(model)
    return model
