"""How good are lrfind's recommendations? Regret against a grid search, on real data.

    .venv/bin/python scripts/bench_quality.py              # sweeps only; the grid is cached
    .venv/bin/python scripts/bench_quality.py --grid-only  # fill in missing grid points

Ground truth: for each benchmark config, one-cycle training (torch's OneCycleLR defaults,
momentum not cycled, so training uses the optimizer that was swept) for 2 epochs on real
Fashion-MNIST at every max_lr of a log grid with step 10^0.25, 2 seeds, scored by test
accuracy. The grid lives in `scripts/quality_grid.json` and is only computed for points it
lacks, so reruns redo just the sweeps.

Each method is then run from 5 seeds (sweep 1e-7 to 10, 100 steps, the seed setting the
model's initial weights and the data order). Its suggestion is scored by the grid's mean
accuracy interpolated linearly in log10(lr) (clamped at the grid's ends):
regret = best grid accuracy - accuracy at the suggestion, in percentage points. Spread is
max - min of log10(suggestion) over the seeds; distance is |log10(suggestion / grid best)|.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lrfind import data as datasets
from lrfind.analysis import METHODS, analyze
from lrfind.export import write_atomic
from lrfind.models import build_model
from lrfind.sweep import range_test
from lrfind.train import EvaluationSet, train_epochs

GRID_FILE = Path(__file__).with_name("quality_grid.json")
GRID_STEP_DECADES = 0.25
GRID_SEEDS = (0, 1)
EPOCHS = 2
SWEEP_SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class BenchConfig:
    name: str
    model: str
    optimizer: str
    batch_size: int
    grid_log10: tuple[float, float]  # lowest and highest log10(max_lr) of the grid

    def grid(self) -> list[float]:
        low, high = self.grid_log10
        count = round((high - low) / GRID_STEP_DECADES) + 1
        return [round(low + GRID_STEP_DECADES * index, 2) for index in range(count)]


CONFIGS = {
    config.name: config
    for config in (
        BenchConfig("lenet-sgd-256", "lenet", "sgd", 256, (-3.0, 0.5)),
        BenchConfig("mlp-sgd-32", "mlp", "sgd", 32, (-3.0, 0.5)),
        BenchConfig("lenet-adam-128", "lenet", "adam", 128, (-4.5, -0.5)),
    )
}


class Bench:
    """Real Fashion-MNIST in memory, and the model/optimizer builders shared by both phases."""

    def __init__(self) -> None:
        self.train = datasets.load_builtin("fashion-mnist", allow_download=False)
        test = datasets.load_builtin("fashion-mnist", allow_download=False, split="test")
        mean, std = self.train.mean, self.train.std
        self.test = EvaluationSet(test.images.float().sub_(mean).div_(std), test.labels)

    def model(self, config: BenchConfig, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(config.model, self.train.input_shape, self.train.num_classes)

    def optimizer(self, config: BenchConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        if config.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=lr)
        return torch.optim.SGD(model.parameters(), lr=lr)

    def batches(self, config: BenchConfig, seed: int) -> datasets.TensorBatches:
        return datasets.TensorBatches(self.train, config.batch_size, seed, torch.device("cpu"))

    def onecycle_accuracy(self, config: BenchConfig, max_lr: float, seed: int) -> float:
        model = self.model(config, seed)
        optimizer = self.optimizer(config, model, max_lr)
        batches = self.batches(config, seed)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=EPOCHS * len(batches), cycle_momentum=False
        )
        history = train_epochs(
            model,
            optimizer,
            nn.CrossEntropyLoss(),
            batches,
            epochs=EPOCHS,
            scheduler=scheduler,
            test=self.test,
        )
        return float(history[-1].test_accuracy or 0.0)


# ---------------------------------------------------------------------------------------------
# Ground truth


def load_grid() -> dict[str, dict[str, list[float]]]:
    if not GRID_FILE.exists():
        return {}
    return json.loads(GRID_FILE.read_text())["accuracy"]


def save_grid(grid: dict[str, dict[str, list[float]]]) -> None:
    document = {
        "protocol": (
            f"one-cycle max_lr grid, step 10^{GRID_STEP_DECADES}, {EPOCHS} epochs, OneCycleLR "
            "defaults with cycle_momentum=False, real Fashion-MNIST, test accuracy per seed "
            f"{list(GRID_SEEDS)}; keys are log10(max_lr)"
        ),
        "accuracy": grid,
    }
    write_atomic(GRID_FILE, (json.dumps(document, indent=1) + "\n").encode())


def fill_grid(bench: Bench, names: list[str]) -> dict[str, dict[str, list[float]]]:
    grid = load_grid()
    for name in names:
        config = CONFIGS[name]
        points = grid.setdefault(name, {})
        for exponent in config.grid():
            key = f"{exponent:.2f}"
            if key in points:
                continue
            started = time.perf_counter()
            points[key] = [
                bench.onecycle_accuracy(config, 10.0**exponent, seed) for seed in GRID_SEEDS
            ]
            save_grid(grid)
            print(
                f"{name} max_lr=10^{key}: {points[key]} ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    return grid


class GroundTruth:
    def __init__(self, points: dict[str, list[float]]) -> None:
        pairs = sorted((float(key), statistics.mean(values)) for key, values in points.items())
        self.log10_lrs = np.array([pair[0] for pair in pairs])
        self.accuracy = np.array([pair[1] for pair in pairs])
        best = int(np.argmax(self.accuracy))
        self.best_log10 = float(self.log10_lrs[best])
        self.best_accuracy = float(self.accuracy[best])

    def accuracy_at(self, lr: float) -> float:
        return float(np.interp(math.log10(lr), self.log10_lrs, self.accuracy))


# ---------------------------------------------------------------------------------------------
# Suggestions


Strategy = Callable[[Bench, BenchConfig, int], float | None]


def single_sweep(bench: Bench, config: BenchConfig, seed: int) -> dict[str, float | None]:
    """One default sweep per seed; every single-curve method reads the same curve."""
    model = bench.model(config, seed)
    optimizer = bench.optimizer(config, model, 1e-7)
    result = range_test(
        model, optimizer, nn.CrossEntropyLoss(), bench.batches(config, seed), seed=seed
    )
    suggestions: dict[str, float | None] = {}
    for method in METHODS:
        recommendation = analyze(result.lrs, result.losses, method=method).recommendation
        suggestions[method] = None if recommendation is None else recommendation.max_lr
    suggestions["_steps"] = float(len(result.records))
    suggestions["_seconds"] = result.sweep_seconds
    return suggestions


@dataclass(frozen=True)
class Row:
    config: str
    method: str
    median_regret: float
    worst_regret: float
    median_distance: float
    spread: float
    failures: int


def score(truth: GroundTruth, config: str, method: str, lrs: list[float | None]) -> Row:
    found = [lr for lr in lrs if lr is not None]
    regrets = [100 * (truth.best_accuracy - truth.accuracy_at(lr)) for lr in found]
    regrets += [100 * (truth.best_accuracy - 0.1)] * (len(lrs) - len(found))  # no answer
    logs = [math.log10(lr) for lr in found]
    return Row(
        config=config,
        method=method,
        median_regret=statistics.median(regrets),
        worst_regret=max(regrets),
        median_distance=statistics.median(abs(log - truth.best_log10) for log in logs)
        if logs
        else math.nan,
        spread=max(logs) - min(logs) if logs else math.nan,
        failures=len(lrs) - len(found),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--grid-only", action="store_true", help="only fill in the grid")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    bench = Bench()
    grid = fill_grid(bench, arguments.configs)
    if arguments.grid_only:
        return 0

    rows: list[Row] = []
    costs: dict[str, list[float]] = {}
    for name in arguments.configs:
        config = CONFIGS[name]
        truth = GroundTruth(grid[name])
        print(
            f"{name}: grid best max_lr {10**truth.best_log10:.3g} "
            f"(accuracy {truth.best_accuracy:.3f})",
            file=sys.stderr,
        )
        per_seed = [single_sweep(bench, config, seed) for seed in SWEEP_SEEDS]
        for method in METHODS:
            rows.append(score(truth, name, method, [s[method] for s in per_seed]))
        costs.setdefault("steps", []).extend(s["_steps"] or 0.0 for s in per_seed)
        costs.setdefault("seconds", []).extend(s["_seconds"] or 0.0 for s in per_seed)

    print("| config | method | median regret (pp) | worst regret (pp) | median distance "
          "(decades) | spread (decades) | no answer |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row.config} | {row.method} | {row.median_regret:.1f} | {row.worst_regret:.1f} "
            f"| {row.median_distance:.2f} | {row.spread:.2f} | {row.failures} |"
        )
    print(
        f"\nsweep cost per seed: median {statistics.median(costs['steps']):.0f} steps, "
        f"{statistics.median(costs['seconds']):.2f} s (threads: {torch.get_num_threads()}, "
        f"pid {os.getpid()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
