"""Is lrfind's `base_lr` a good lower bound? A grid over base_lr / max_lr at lrfind's own peak.

    .venv/bin/python scripts/bench_base_lr.py --threads 1
    .venv/bin/python scripts/bench_base_lr.py --configs mlp-sgd-64 mlp-adam-64 --threads 1

For each config of scripts/bench_tasks.py: lrfind's default recommendation from the first
sweep seed (the sweeps come from bench_quality's cache), then one triangular cycle over the
config's budget (torch's CyclicLR, up from base_lr to max_lr and back, momentum not cycled)
for every ratio base_lr / max_lr in RATIOS, on the grid seeds, scored as the quality bench
scores. The table gives the best ratio, lrfind's own ratio and the regret of lrfind's base_lr
against the best ratio (interpolated in log10 ratio), and a constant max_lr / 10 beside them.
Scores are cached in scripts/quality_grid.json under "base" (config -> max_lr -> ratio).
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any

import numpy as np
import torch
from bench_quality import (
    GRID_SEEDS,
    SWEEP_SEEDS,
    TASKS,
    GroundTruth,
    SweepCache,
    fill_grid,
    load_document,
    store,
    suggest,
    trained_score,
)
from bench_tasks import Task
from torch import nn

RATIOS = (1e-3, 1e-2, 0.03, 0.1, 0.25, 0.5)  # base_lr / max_lr; 0.25 is lrfind's cap


def cycle_score(task: Task, base_lr: float, max_lr: float, seed: int) -> float:
    """The score after one triangular cycle from base_lr to max_lr and back over the budget."""

    def setup(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        optimizer = task.optimizer(model, base_lr)
        return optimizer, torch.optim.lr_scheduler.CyclicLR(
            optimizer,
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=max(1, steps // 2),
            cycle_momentum=False,
        )

    return trained_score(task, seed, setup)


def constant_score(task: Task, lr: float, seed: int) -> float:
    return trained_score(task, seed, lambda model, steps: (task.optimizer(model, lr), None))


def base_grid(task: Task, max_lr: float) -> dict[str, list[float]]:
    """Scores per ratio (keys: log10 ratio) and for a constant max_lr / 10 (key "constant")."""
    key = f"{max_lr:.6g}"
    found = load_document().get("base", {}).get(task.name, {}).get(key, {})
    for ratio in RATIOS:
        point = f"{math.log10(ratio):.2f}"
        if point not in found:
            found[point] = [cycle_score(task, ratio * max_lr, max_lr, s) for s in GRID_SEEDS]
            store("base", task.name, key, found)
            print(f"{task.name} base/max {ratio:g}: {found[point]}", flush=True)
    if "constant" not in found:
        found["constant"] = [constant_score(task, max_lr / 10, s) for s in GRID_SEEDS]
        store("base", task.name, key, found)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    print("| config | max_lr | lrfind base/max | best base/max | regret of lrfind's base_lr "
          "| regret of best ratio vs constant max/10 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    regrets = []
    for name in arguments.configs:
        task = TASKS[name]
        truth = GroundTruth(task, fill_grid(task))
        recommendation = suggest(task, SWEEP_SEEDS[0], SweepCache(task)).recommendation
        if recommendation is None:
            print(f"| {name} | no answer | - | - | - | - |")
            continue
        found = base_grid(task, recommendation.max_lr)
        points = sorted((float(k), statistics.mean(v)) for k, v in found.items() if k != "constant")
        logs = np.array([p[0] for p in points])
        scores = np.array([p[1] for p in points])
        sign = 1.0 if task.higher_is_better else -1.0
        best = int(np.argmax(sign * scores))
        ratio = recommendation.base_lr / recommendation.max_lr
        at_lrfind = float(np.interp(math.log10(ratio), logs, scores))
        regret = truth.regret(at_lrfind) - truth.regret(float(scores[best]))
        versus = truth.regret(float(scores[best])) - truth.regret(
            statistics.mean(found["constant"])
        )
        regrets.append(regret)
        print(f"| {name} | {recommendation.max_lr:.3g} | {ratio:.3g} | {10 ** logs[best]:.3g} "
              f"| {truth.shown(regret)} | {truth.shown(versus)} |", flush=True)  # fmt: skip
    if regrets:
        median, worst = statistics.median(regrets), max(regrets)
        print(f"\nregret of lrfind's base_lr (score units): median {median:.4f}, worst "
              f"{worst:.4f}; torch threads {torch.get_num_threads()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
