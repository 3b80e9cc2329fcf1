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
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lrfind.core.analysis import Recommendation, analyze
from lrfind.core.plan import search
from lrfind.core.records import RangeTestResult
from lrfind.engine.range_test import range_test
from lrfind.engine.trainer import EvaluationSet, train_epochs
from lrfind.outputs.files import write_atomic
from lrfind.settings.options import SearchSettings, SweepSettings
from lrfind.setup import data as datasets
from lrfind.setup.models import build_model

GRID_FILE = Path(__file__).with_name("quality_grid.json")
GRID_STEP_DECADES = 0.25
GRID_SEEDS = (0, 1)
EPOCHS = 2
SWEEP_SEEDS = (0, 10, 20, 30, 40)  # apart, so that no two share a repeat's seed


@dataclass(frozen=True)
class BenchConfig:
    name: str
    model: str
    optimizer: str
    batch_size: int
    grid_log10: tuple[float, float]  # lowest and highest log10(max_lr) of the grid
    momentum: float = 0.0

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
        # Held out: never looked at while choosing the default rule.
        BenchConfig("cnn-momentum-128", "cnn", "sgd", 128, (-3.5, 0.5), momentum=0.9),
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
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum)

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
            latest = load_grid()  # another invocation may be filling other configs
            latest.setdefault(name, {})[key] = points[key]
            save_grid(latest)
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


PEER_METHODS = ("steepest", "valley", "minimum")  # read from one 100-step sweep, as peers do
DEFAULT = "default"  # lrfind's default: the plan (full sweep + focused repeats), bottom rule


@dataclass(frozen=True)
class Suggestions:
    max_lr: dict[str, float | None]  # by method
    recommendation: Recommendation | None  # the default's, for the base_lr check
    steps: dict[str, int]  # training steps each strategy cost
    seconds: dict[str, float]


def sweep_runner(
    bench: Bench, config: BenchConfig, base_seed: int
) -> Callable[[int, SweepSettings], RangeTestResult]:
    """The plan's `run_sweep` for one config: repeat k uses seed base_seed + k, as `lrfind run`
    does (new weights and data order)."""

    def run_sweep(repeat: int, settings: SweepSettings) -> RangeTestResult:
        seed = base_seed + repeat
        model = bench.model(config, seed)
        optimizer = bench.optimizer(config, model, settings.start_lr)
        return range_test(
            model,
            optimizer,
            nn.CrossEntropyLoss(),
            bench.batches(config, seed),
            **dataclasses.asdict(settings),
            method="bottom",
            seed=seed,
        )

    return run_sweep


def suggest(bench: Bench, config: BenchConfig, base_seed: int) -> Suggestions:
    """Every method from the same full sweep; the default plan adds its focused repeats."""
    run_sweep = sweep_runner(bench, config, base_seed)
    outcome = search(run_sweep, SweepSettings(), SearchSettings(), "bottom")
    full = outcome.main
    max_lr: dict[str, float | None] = {}
    for method in PEER_METHODS:
        recommendation = analyze(full.lrs, full.losses, method=method).recommendation
        max_lr[method] = None if recommendation is None else recommendation.max_lr
    default = outcome.recommendation
    max_lr[DEFAULT] = None if default is None else default.max_lr
    full_steps = len(full.records)
    return Suggestions(
        max_lr=max_lr,
        recommendation=default,
        steps={**dict.fromkeys(PEER_METHODS, full_steps), DEFAULT: outcome.steps_run},
        seconds={
            **dict.fromkeys(PEER_METHODS, full.sweep_seconds),
            DEFAULT: sum(sweep.result.sweep_seconds for sweep in outcome.sweeps),
        },
    )


def schedule_accuracy(
    bench: Bench, config: BenchConfig, recommendation: Recommendation, schedule: str, seed: int
) -> float:
    """Test accuracy after EPOCHS of a triangular cycle between base_lr and max_lr, or of a
    constant max_lr / 10: the check that base_lr is a sound lower bound."""
    lr = recommendation.max_lr / 10 if schedule == "constant" else recommendation.base_lr
    model = bench.model(config, seed)
    optimizer = bench.optimizer(config, model, lr)
    batches = bench.batches(config, seed)
    scheduler = None
    if schedule == "triangular":
        scheduler = torch.optim.lr_scheduler.CyclicLR(
            optimizer,
            base_lr=recommendation.base_lr,
            max_lr=recommendation.max_lr,
            step_size_up=len(batches),  # one cycle over the two epochs
            cycle_momentum=False,
        )
    history = train_epochs(
        model, optimizer, nn.CrossEntropyLoss(), batches, epochs=EPOCHS, scheduler=scheduler,
        test=bench.test,
    )  # fmt: skip
    return float(history[-1].test_accuracy or 0.0)


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
    parser.add_argument("--no-base-check", action="store_true", help="skip the base_lr check")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    bench = Bench()
    grid = fill_grid(bench, arguments.configs)
    if arguments.grid_only:
        return 0

    methods = (DEFAULT, *PEER_METHODS)
    rows: list[Row] = []
    costs: dict[str, dict[str, list[float]]] = {
        method: {"steps": [], "s": []} for method in methods
    }
    base_checks: list[tuple[str, float, float, float, float]] = []
    for name in arguments.configs:
        config = CONFIGS[name]
        truth = GroundTruth(grid[name])
        print(
            f"{name}: grid best max_lr {10**truth.best_log10:.3g} "
            f"(accuracy {truth.best_accuracy:.3f})",
            file=sys.stderr,
            flush=True,
        )
        per_seed = [suggest(bench, config, seed) for seed in SWEEP_SEEDS]
        for method in methods:
            rows.append(score(truth, name, method, [item.max_lr[method] for item in per_seed]))
            costs[method]["steps"].extend(item.steps[method] for item in per_seed)
            costs[method]["s"].extend(item.seconds[method] for item in per_seed)
        found = [item.recommendation for item in per_seed if item.recommendation is not None]
        if found and not arguments.no_base_check:
            typical = sorted(found, key=lambda item: item.max_lr)[len(found) // 2]
            cyclic = [
                schedule_accuracy(bench, config, typical, "triangular", s) for s in GRID_SEEDS
            ]
            flat = [schedule_accuracy(bench, config, typical, "constant", s) for s in GRID_SEEDS]
            base_checks.append(
                (
                    name,
                    typical.base_lr,
                    typical.max_lr,
                    statistics.mean(cyclic),
                    statistics.mean(flat),
                )
            )

    print("| config | method | median regret (pp) | worst regret (pp) | median distance "
          "(decades) | spread (decades) | no answer |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row.config} | {row.method} | {row.median_regret:.1f} | {row.worst_regret:.1f} "
            f"| {row.median_distance:.2f} | {row.spread:.2f} | {row.failures} |"
        )
    print("\n| method | median steps per recommendation | median sweep seconds |")
    print("| --- | --- | --- |")
    for method in methods:
        print(
            f"| {method} | {statistics.median(costs[method]['steps']):.0f} "
            f"| {statistics.median(costs[method]['s']):.2f} |"
        )
    if base_checks:
        print(
            f"\n| config | base_lr | max_lr | triangular base..max, {EPOCHS} epochs | "
            "constant max/10 |"
        )
        print("| --- | --- | --- | --- | --- |")
        for name, base_lr, max_lr, cyclic_accuracy, flat_accuracy in base_checks:
            print(
                f"| {name} | {base_lr:.3g} | {max_lr:.3g} | {cyclic_accuracy:.3f} "
                f"| {flat_accuracy:.3f} |"
            )
    print(f"\n(torch threads: {torch.get_num_threads()}; seeds {list(SWEEP_SEEDS)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
