"""torchrun with 2 CPU ranks (gloo) on a model sharded with FSDP2's fully_shard.

The worker (this file run by torchrun) shards a seeded model, gives its AdamW some state with
one step, runs lrfind.range_test, and checks on every rank that its shard of the model, of the
gradients and of the optimizer state came back bit for bit. The test then runs the same model
and global batches in one process: FSDP2 averages the two half-batch gradients, the loop
averages the two losses, so the curves agree up to float summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

TOLERANCE = 1e-5
STEPS = 30


def seeded_setup() -> tuple[torch.nn.Sequential, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 4))
    generator = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(16, 32, generator=generator), torch.randint(0, 4, (16,), generator=generator))
        for _ in range(8)
    ]
    return model, batches


def warm_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any, rank: int, world: int
) -> None:
    """One training step on this rank's share of a batch, so the optimizer has state to keep."""
    inputs, targets = (tensor.tensor_split(world)[rank] for tensor in batch)
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()


def local_copies(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """This rank's part of every tensor a sweep could change, copied."""
    from lrfind.engine.snapshot import _local, _tensors

    tensors = [
        *model.state_dict().values(),
        *(parameter.grad for parameter in model.parameters() if parameter.grad is not None),
        *_tensors(optimizer.state_dict()["state"]),
    ]
    return [_local(tensor).detach().clone() for tensor in tensors]


def sweep(model: torch.nn.Module, batches: list[Any]) -> dict[str, Any]:
    import lrfind

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rank, world = (
        (torch.distributed.get_rank(), torch.distributed.get_world_size())
        if torch.distributed.is_initialized()
        else (0, 1)
    )
    warm_step(model, optimizer, batches[-1], rank, world)
    before = local_copies(model, optimizer)
    result = lrfind.range_test(
        model, optimizer, torch.nn.CrossEntropyLoss(), batches,
        start_lr=1e-4, end_lr=10, steps=STEPS, seed=0,
    )  # fmt: skip
    after = local_copies(model, optimizer)
    exact = len(before) == len(after) and all(
        a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        for a, b in zip(before, after, strict=True)
    )
    return {
        "lrs": [record.lr for record in result.records],
        "losses": [record.loss for record in result.records],
        "stop": result.stop_reason,
        "exact": exact,
        "tensors": len(before),
    }


def worker(out: Path) -> None:
    from torch.distributed.fsdp import fully_shard

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    try:
        model, batches = seeded_setup()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        outcome = sweep(model, batches)
        every = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(every, outcome)
        if torch.distributed.get_rank() == 0:
            out.write_text(json.dumps(every))
        torch.distributed.barrier()  # no rank leaves the group while another still writes
    finally:
        torch.distributed.destroy_process_group()


def test_parallel_fsdp_on_the_command_line_traces_the_single_process_curve(
    mnist_dir: Path, tmp_path: Path
) -> None:
    from tests.conftest import lrfind
    from tests.test_distributed import sweep_losses

    arguments = [
        "run", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--no-download",
        "--batch-size", "32", "--steps", "40", "--start-lr", "1e-3", "--end-lr", "10",
        "--repeats", "0", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "lrfind", *arguments, "--parallel", "fsdp", "--out", str(tmp_path / "fsdp")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert launched.stdout.count("lrfind recommendation") == 1  # rank 0 alone reports
    single = lrfind(*arguments, "--out", tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]
    ours, reference = sweep_losses(tmp_path / "fsdp"), sweep_losses(tmp_path / "single")
    assert [row[:3] for row in ours] == [row[:3] for row in reference]
    for (*_, loss), (*_, expected) in zip(ours, reference, strict=True):
        assert loss == pytest.approx(expected, rel=TOLERANCE)
    assert json.loads((tmp_path / "fsdp" / "result.json").read_text())["config"]["parallel"] == (
        "fsdp"
    )


def test_fsdp2_ranks_trace_the_single_process_curve_and_restore_exactly(tmp_path: Path) -> None:
    out = tmp_path / "ranks.json"
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         __file__, str(out)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    ranks = json.loads(out.read_text())
    model, batches = seeded_setup()
    single = sweep(model, batches)
    assert single["exact"]
    assert len(ranks) == 2
    for outcome in ranks:
        assert outcome["exact"]  # every rank's shard of model, grads and AdamW state
        assert outcome["tensors"] == single["tensors"]  # the same tensors, sharded
        assert outcome["stop"] == single["stop"]
        assert outcome["lrs"] == single["lrs"]  # the same schedule, stopped at the same step
        assert outcome["losses"] == pytest.approx(single["losses"], rel=TOLERANCE)
    assert ranks[0]["losses"] == ranks[1]["losses"]  # one curve on every rank


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
