"""Memory per rank of a range test under FSDP2 against one unsharded process and DDP.

    .venv/bin/python scripts/bench_fsdp.py                  # 1 process, 2 ranks ddp, 2 fsdp
    .venv/bin/python scripts/bench_fsdp.py --width 2048     # a larger model

An MLP of `--layers` square Linear layers of `--width` with AdamW (fp32) runs `lrfind.range_test`
on CPU ranks (gloo, one torch thread each) and each process reports: the bytes of model,
gradients and optimizer state its snapshot kept (result.snapshot.state_bytes, this rank's part)
after one training step (so AdamW has state), and its peak resident memory above what it held
before building the model (ru_maxrss), which counts the parameters, gradients, AdamW state,
snapshot, FSDP2's gathered blocks and whatever the allocator keeps.
Prints one table; the numbers are for docs/distributed.md, not for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

MODES = ("single", "ddp", "fsdp")


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(mode: str, width: int, layers: int, steps: int, out: Path) -> None:
    import lrfind

    torch.set_num_threads(1)
    distributed = mode != "single"
    if distributed:
        torch.distributed.init_process_group("gloo")
    before = resident_bytes()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        *(
            torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU())
            for _ in range(layers)
        ),
        torch.nn.Linear(width, 10),
    )
    if mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    elif mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model:
            fully_shard(block)
        fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(32, width, generator=generator),
            torch.randint(0, 10, (32,), generator=generator),
        )
        for _ in range(4)
    ]
    inputs, targets = batches[0]  # one step first, so AdamW has state for the snapshot to keep
    rank, world = (torch.distributed.get_rank(), 2) if distributed else (0, 1)
    loss = torch.nn.functional.cross_entropy(
        model(inputs.tensor_split(world)[rank]), targets.tensor_split(world)[rank]
    )
    loss.backward()
    optimizer.step()
    result = lrfind.range_test(
        model, optimizer, torch.nn.CrossEntropyLoss(), batches, steps=steps, snapshot="cpu"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    row = {"mode": mode, "rank": 0, "kept": result.snapshot.state_bytes, "peak": peak}
    if distributed:
        row["rank"] = torch.distributed.get_rank()
        torch.distributed.destroy_process_group()
    (out / f"{mode}-{row['rank']}.json").write_text(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=1024, help="features per layer")
    parser.add_argument("--layers", type=int, default=8, help="square Linear layers")
    parser.add_argument("--steps", type=int, default=20, help="sweep steps")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [str(args.width), str(args.layers), str(args.steps)]
    if args.worker:
        worker(args.worker, args.width, args.layers, args.steps, args.out)
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = Path(tempfile.mkdtemp(prefix="bench-fsdp-"))
    for mode in MODES:
        launcher = [sys.executable]
        if mode != "single":
            launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        subprocess.run(
            [*launcher, __file__, "--width", sizes[0], "--layers", sizes[1], "--steps", sizes[2],
             "--worker", mode, "--out", str(out)],
            env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    rows = [json.loads(path.read_text()) for path in out.glob("*.json")]
    parameters = args.layers * (args.width**2 + args.width) + args.width * 10 + 10
    print(f"MLP {args.layers}x{args.width}, {parameters * 4 / 2**20:.1f} MiB of fp32 parameters")
    print(f"{'mode':<8}{'rank':>5}{'kept by snapshot MiB':>22}{'peak RSS growth MiB':>22}")
    for row in sorted(rows, key=lambda row: (MODES.index(row["mode"]), row["rank"])):
        kept, peak = row["kept"] / 2**20, row["peak"] / 2**20
        print(f"{row['mode']:<8}{row['rank']:>5}{kept:>22.1f}{peak:>22.1f}")


if __name__ == "__main__":
    main()
