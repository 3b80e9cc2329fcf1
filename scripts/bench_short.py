"""Do shorter sweeps agree with the 100-step answer, or say that they cannot answer?

    .venv/bin/python scripts/bench_short.py                 # all configs, seeds 0 and 10
    .venv/bin/python scripts/bench_short.py --threads 1 --seeds 0 10 20

For each benchmark config of scripts/bench_quality.py, plus two that no rule was chosen on
(an MLP with Adam at batch 64, LeNet with SGD momentum 0.9 at batch 64), lrfind's default
plan (full sweep from 1e-7 to 10, then the focused repeats) runs with 100 steps and with
fewer, from the same seed (initial weights and data order). A shorter sweep passes when it
recommends within AGREEMENT decades of the 100-step answer of the same seed, or gives no
recommendation at all; the table counts both, the disagreements, the answers that have no
100-step answer to compare with, and prints the largest distance in decades.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_quality import CONFIGS, Bench, BenchConfig, sweep_runner

from lrfind.core.plan import search
from lrfind.core.settings import SearchSettings, SweepSettings

AGREEMENT = 0.5  # decades
STEPS = (100, 85, 70, 50, 30)
UNSEEN = (
    BenchConfig("mlp-adam-64", "mlp", "adam", 64, (-4.0, 0.0)),
    BenchConfig("lenet-momentum-64", "lenet", "sgd", 64, (-4.0, 0.0), momentum=0.9),
)


def recommend(bench: Bench, config: BenchConfig, base_seed: int, steps: int) -> float | None:
    """max_lr of lrfind's default plan at `steps` steps, or None when it gives none."""
    run_sweep = sweep_runner(bench, config, base_seed)
    outcome = search(run_sweep, SweepSettings(steps=steps), SearchSettings(), "bottom")
    return None if outcome.recommendation is None else outcome.recommendation.max_lr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 10])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    bench = Bench()
    started = time.perf_counter()
    print("| config | steps | agree | no answer | disagree | not comparable | largest distance |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    failures = 0
    for config in [*CONFIGS.values(), *UNSEEN]:
        answers = {
            steps: [recommend(bench, config, seed, steps) for seed in arguments.seeds]
            for steps in STEPS
        }
        full = answers[STEPS[0]]
        print(f"| {config.name} | 100 | {sum(a is not None for a in full)} answered | | | | |")
        for steps in STEPS[1:]:
            pairs = list(zip(answers[steps], full, strict=True))
            distances = [abs(math.log10(a / b)) for a, b in pairs if a is not None and b]
            silent = sum(short is None for short, _ in pairs)
            alone = sum(short is not None and long is None for short, long in pairs)
            wrong = sum(distance > AGREEMENT for distance in distances)
            failures += wrong
            largest = f"{max(distances):.2f}" if distances else "-"
            print(
                f"| {config.name} | {steps} | {len(distances) - wrong} | {silent} | {wrong} | "
                f"{alone} | {largest} |",
                flush=True,
            )
    seconds = time.perf_counter() - started
    print(f"\n{failures} disagreements beyond {AGREEMENT} decades; {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
