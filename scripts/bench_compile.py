"""Recompiles and ms/step of a sweep over compiled code, counted with TORCH_LOGS=recompiles.

    .venv/bin/python scripts/bench_compile.py              # every case, one table
    .venv/bin/python scripts/bench_compile.py --steps 60   # a longer sweep

Each case runs in its own process (torch's compile caches are per process) with
TORCH_LOGS=recompiles and counts the "Recompiling function" lines it logs:

- `cli --compile`: `lrfind run --compile` of the built-in MLP on Fashion-MNIST
  (torch.compile of the model; the run's time includes start-up and data loading);
- `api model`: a user's `torch.compile(model)` through `lrfind.range_test`;
- `api step, float lr`: a user's optimizer whose step is compiled (`torch.compile(opt.step)`),
  built with a float lr, which the sweep changes every step;
- `api step, tensor lr`: the same built with `lr=torch.tensor(...)`, PyTorch's recipe for a
  compiled step whose rate changes.

first s: the API's first step (tracing and compiling included), or the whole `lrfind run`
(start-up, data, compile and sweep); ms/step: the median step after the first (API cases).
Inductor caches compiled code on disk across processes, so a case run a second time compiles
faster; the recompile count does not depend on it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CASES = ("cli --compile", "api model", "api step, float lr", "api step, tensor lr")


def api_case(case: str, steps: int) -> dict[str, float]:
    import lrfind

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    lr: float | torch.Tensor = torch.tensor(1e-3) if case.endswith("tensor lr") else 1e-3
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    if case == "api model":
        model = torch.compile(model)  # type: ignore[assignment]
    else:
        optimizer.step = torch.compile(optimizer.step)  # type: ignore[method-assign]
    generator = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(32, 64, generator=generator), torch.randint(0, 10, (32,), generator=generator))
        for _ in range(8)
    ]
    stamps = [time.perf_counter()]
    result = lrfind.range_test(
        model, optimizer, torch.nn.CrossEntropyLoss(), batches, steps=steps, end_lr=1, seed=0,
        callback=lambda record: stamps.append(time.perf_counter()),
    )  # fmt: skip
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps[1:])]
    return {
        "steps": len(result.records),
        "first_s": stamps[1] - stamps[0],
        "ms_per_step": 1000 * statistics.median(gaps),
    }


def run_case(case: str, steps: int) -> tuple[int, dict[str, float]]:
    env = {**os.environ, "TORCH_LOGS": "recompiles", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as folder:
        if case == "cli --compile":
            out = str(Path(folder) / "run")
            command = [sys.executable, "-m", "lrfind", "run", "--model", "mlp", "--dataset",
                       "fashion-mnist", "--steps", str(steps), "--repeats", "0", "--compile",
                       "--device", "cpu", "--quiet", "--out", out]  # fmt: skip
            started = time.perf_counter()
            ran = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            seconds = time.perf_counter() - started
            rows = (Path(folder) / "run" / "sweep.csv").read_text().count("\n") - 1
            outcome = {"steps": rows, "first_s": seconds, "ms_per_step": float("nan")}
        else:
            command = [sys.executable, __file__, "--case", case, "--steps", str(steps)]
            ran = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            outcome = json.loads(ran.stdout.strip().splitlines()[-1])
    if ran.returncode not in (0, 1):
        raise SystemExit(f"{case} failed:\n{ran.stderr[-3000:]}")
    return len(re.findall("Recompiling function", ran.stderr)), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="sweep steps per case")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(api_case(args.case, args.steps)))
        return
    print(f"{'case':<22}{'steps':>7}{'recompiles':>12}{'first s':>9}{'ms/step':>9}")
    for case in CASES:
        recompiles, outcome = run_case(case, args.steps)
        steps, first, per_step = outcome["steps"], outcome["first_s"], outcome["ms_per_step"]
        print(f"{case:<22}{steps:>7.0f}{recompiles:>12}{first:>9.1f}{per_step:>9.1f}")


if __name__ == "__main__":
    main()
