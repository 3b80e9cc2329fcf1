"""How good are lrfind's recommendations? Regret against a grid search, on real tasks.

    .venv/bin/python scripts/bench_quality.py --threads 1              # sweeps; grid cached
    .venv/bin/python scripts/bench_quality.py --threads 1 --grid-only  # fill grid + alternatives
    .venv/bin/python scripts/bench_quality.py --configs finetune char-transformer --seeds 1

The configs (scripts/bench_tasks.py): the original four Fashion-MNIST classifiers (2 full
epochs) and issue 16's families, each sized for a run of a few seconds on one thread: a
residual net with batch norm and weight decay, AdamW at batch 1024, SGD with
momentum at batch 16, fine-tuning from weights pretrained on other classes, an MSE regression
and a byte-level transformer language model on Python's own standard-library sources. Every
config after the first three is marked held out: it was added after the rule was chosen.

Ground truth: for each config, its training schedule (one-cycle with torch's OneCycleLR
defaults, momentum not cycled; linear warm-up then cosine for the transformer) with the peak
LR at every point of a log grid with step 10^0.25, 2 seeds (0 and 1), scored by the config's
score: test accuracy, or a test/validation loss. A grid whose best point sits at an edge is
widened there, up to 4 points a side. Grid points live in `scripts/quality_grid.json` and are
only computed for points it lacks, so reruns redo just the sweeps.

Alternatives, what a user picks instead of an LR search, trained for the same budget on the
same seeds and cached beside the grid: Prodigy (lr 1, cosine annealing over the budget, the
config's weight decay), schedule-free (SGDScheduleFree for SGD configs, AdamWScheduleFree
otherwise, at their default lr, 5% warm-up, the config's weight decay; optimizer.train() and
.eval() around training and evaluation, batch-norm statistics recomputed at the evaluation
weights) and Adam at a constant 1e-3 (AdamW with the config's weight decay where it has one).

Each method is run from up to 5 seeds (sweep 1e-7 to 10, 100 steps, the seed setting the
model's initial weights and the data order) through lrfind's engine (range_test and the
default plan). Its suggestion is scored by the grid's mean score interpolated linearly in
log10(lr) (clamped at the grid's ends). Regret = best grid score - score at the suggestion:
in percentage points for accuracy; in the loss's units and as a percentage of the gap between
the best and the worst grid point for losses. A method with no answer, and a run that
diverged, score as chance (accuracy 1/classes; the loss of predicting nothing). Spread is
max - min of log10(suggestion) over the seeds; distance is |log10(suggestion / grid best)|.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_tasks import CACHE_DIR, GRID_STEP_DECADES, Task, build_tasks
from torch import nn

from lrfind.core.analysis import Recommendation, analyze
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.plan import search
from lrfind.core.records import RangeTestResult, analysed_result
from lrfind.core.settings import SearchSettings, SweepSettings
from lrfind.engine.finder import range_test
from lrfind.engine.probe import measured_horizon
from lrfind.engine.trainer import train_epochs
from lrfind.outputs.files import write_atomic
from lrfind.setup.batches import BatchRule, batch_loss

GRID_FILE = Path(__file__).with_name("quality_grid.json")
GRID_SEEDS = (0, 1)
WIDEN_LIMIT = 4  # extra grid points a side when the best sits at an edge
SWEEP_SEEDS = (0, 10, 20, 30, 40)  # apart, so that no two share a repeat's seed
TASKS = build_tasks()

# ---------------------------------------------------------------------------------------------
# Training to a score: one loop (lrfind's trainer) for the grid, the alternatives and the checks

Setup = Callable[[nn.Module, int], tuple[torch.optim.Optimizer, Any]]  # (model, steps) ->
# (optimizer, per-step scheduler or None)


def trained_score(task: Task, seed: int, setup: Setup, schedule_free: bool = False) -> float:
    """Train `task` for its budget from `seed` with the optimizer and scheduler `setup` builds,
    and score it. A run whose loss turns non-finite stops there and scores as chance."""
    model = task.model(seed)
    batches = task.batches(seed)
    optimizer, scheduler = setup(model, task.epochs * len(batches))
    if schedule_free:
        optimizer.train()  # type: ignore[attr-defined]
    train_epochs(model, optimizer, task.loss_fn, batches, epochs=task.epochs, scheduler=scheduler)
    if schedule_free:
        optimizer.eval()  # type: ignore[attr-defined]
        recompute_batch_norm(model, task, batches)
    return task.score(model)


def recompute_batch_norm(model: nn.Module, task: Task, batches: Any, count: int = 20) -> None:
    """Schedule-free evaluates at averaged weights that the running BN statistics never saw;
    its authors' advice is to refresh them with a few training batches at those weights."""
    if not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()):
        return
    rule = BatchRule(model)
    model.train()
    with torch.no_grad():
        for raw in itertools.islice(iter(batches), count):
            batch_loss(model, rule.split(raw), task.loss_fn)


def grid_setup(task: Task, peak_lr: float) -> Setup:
    def setup(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        optimizer = task.optimizer(model, peak_lr)
        return optimizer, task.schedule(optimizer, peak_lr, steps)

    return setup


# ---------------------------------------------------------------------------------------------
# The alternatives


@dataclass(frozen=True)
class Alternative:
    name: str
    setup: Callable[[Task], Setup]
    schedule_free: bool = False


def prodigy(task: Task) -> Setup:
    from prodigyopt import Prodigy  # bench extra: pip install -e .[bench]

    def setup(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        optimizer = Prodigy(model.parameters(), lr=1.0, weight_decay=task.weight_decay)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    return setup


def schedule_free(task: Task) -> Setup:
    import schedulefree  # bench extra: pip install -e .[bench]

    def setup(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        kind = (
            schedulefree.SGDScheduleFree
            if task.optimizer_family == "sgd"
            else (schedulefree.AdamWScheduleFree)
        )
        warmup = max(1, steps // 20)  # its authors: warm-up "highly recommended"
        optimizer = kind(model.parameters(), weight_decay=task.weight_decay, warmup_steps=warmup)
        return optimizer, None

    return setup


def constant_adam(task: Task) -> Setup:
    def setup(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=task.weight_decay), None

    return setup


ALTERNATIVES = (
    Alternative("prodigy", prodigy),
    Alternative("schedule-free", schedule_free, schedule_free=True),
    Alternative("adam-1e-3", constant_adam),
)

# ---------------------------------------------------------------------------------------------
# The cache: grid scores and alternatives' scores, per config and seed


def load_document() -> dict[str, Any]:
    """{"scores": {config: {log10 lr: [per seed]}}, "alternatives": {config: {name: [...]}}}.
    Files from before issue 16 kept the scores under "accuracy"; they carry over as they are."""
    document = json.loads(GRID_FILE.read_text()) if GRID_FILE.exists() else {}
    return {
        "scores": document.get("scores", document.get("accuracy", {})),
        "alternatives": document.get("alternatives", {}),
        "base": document.get("base", {}),  # scripts/bench_base_lr.py
    }


def store(section: str, config: str, key: str, values: list[float]) -> None:
    """Add one entry, re-reading the file first: another invocation may be filling others."""
    document = load_document()
    document[section].setdefault(config, {})[key] = values
    document = {
        "protocol": (
            f"peak-LR grid, step 10^{GRID_STEP_DECADES}, each config's budget and schedule "
            f"(scripts/bench_tasks.py), score per seed {list(GRID_SEEDS)}; scores keys are "
            "log10(peak lr); alternatives are scored on the same seeds and budget"
        ),
        "tasks": {name: describe(task) for name, task in TASKS.items()},
        **document,
    }
    write_atomic(GRID_FILE, (json.dumps(document, indent=1) + "\n").encode())


def describe(task: Task) -> str:
    return f"{task.description}; {task.schedule_name}; {task.score_name}"


def fill_grid(task: Task) -> dict[str, list[float]]:
    """The grid's points, computing those missing, then widening an edge that holds the best."""
    points = load_document()["scores"].get(task.name, {})
    wanted = [f"{exponent:.2f}" for exponent in task.grid()]
    for _ in range(WIDEN_LIMIT + 1):
        for key in wanted:
            if key not in points:
                points[key] = grid_point(task, key)
        wanted = widened(task, points)
        if not wanted:
            break
    return points


def widened(task: Task, points: dict[str, list[float]]) -> list[str]:
    """The next point beyond the edge where the best mean score sits (none when inside, or when
    WIDEN_LIMIT points were added on that side already)."""
    truth = GroundTruth(task, points)
    low, high = task.grid_log10
    edges = {float(truth.log10_lrs[0]): -1, float(truth.log10_lrs[-1]): 1}
    side = edges.get(truth.best_log10)
    if side is None:
        return []
    beyond = truth.best_log10 + side * GRID_STEP_DECADES
    if abs(beyond - (low if side < 0 else high)) > WIDEN_LIMIT * GRID_STEP_DECADES + 1e-9:
        return []
    return [f"{beyond:.2f}"]


def grid_point(task: Task, key: str) -> list[float]:
    started = time.perf_counter()
    peak = 10.0 ** float(key)
    values = [trained_score(task, seed, grid_setup(task, peak)) for seed in GRID_SEEDS]
    store("scores", task.name, key, values)
    seconds = (time.perf_counter() - started) / len(GRID_SEEDS)
    print(f"{task.name} peak lr 10^{key}: {values} ({seconds:.1f} s a run)", flush=True)
    return values


def fill_alternatives(task: Task) -> dict[str, list[float]]:
    found = load_document()["alternatives"].get(task.name, {})
    for alternative in ALTERNATIVES:
        if alternative.name in found:
            continue
        started = time.perf_counter()
        found[alternative.name] = [
            trained_score(task, seed, alternative.setup(task), alternative.schedule_free)
            for seed in GRID_SEEDS
        ]
        store("alternatives", task.name, alternative.name, found[alternative.name])
        seconds = (time.perf_counter() - started) / len(GRID_SEEDS)
        print(f"{task.name} {alternative.name}: {found[alternative.name]} ({seconds:.1f} s a run)",
              flush=True)  # fmt: skip
    return found


class GroundTruth:
    """The grid's mean score per point, its best and worst, and regret against the best."""

    def __init__(self, task: Task, points: dict[str, list[float]]) -> None:
        pairs = sorted((float(key), statistics.mean(values)) for key, values in points.items())
        self.task = task
        self.log10_lrs = np.array([pair[0] for pair in pairs])
        self.scores = np.array([pair[1] for pair in pairs])
        sign = 1.0 if task.higher_is_better else -1.0
        best = int(np.argmax(sign * self.scores))
        self.best_log10 = float(self.log10_lrs[best])
        self.best_score = float(self.scores[best])
        self.worst_score = float(self.scores[int(np.argmin(sign * self.scores))])

    def score_at(self, lr: float | None) -> float:
        if lr is None:
            return self.task.chance
        return float(np.interp(math.log10(lr), self.log10_lrs, self.scores))

    def regret(self, score: float) -> float:
        """How much worse than the best grid point, in the score's units (>= 0 is worse)."""
        return self.best_score - score if self.task.higher_is_better else score - self.best_score

    def shown(self, regret: float) -> str:
        """Percentage points for accuracy; for a loss, its units and % of the grid's gap."""
        if self.task.higher_is_better:
            return f"{100 * regret:.1f}"
        gap = abs(self.worst_score - self.best_score)
        return f"{regret:.3f} ({100 * regret / gap:.1f}%)"

    def shown_best(self) -> str:
        value = (
            f"{100 * self.best_score:.1f}%"
            if self.task.higher_is_better
            else (f"{self.best_score:.4f}")
        )
        return f"{10**self.best_log10:.3g} ({value})"


# ---------------------------------------------------------------------------------------------
# Suggestions, through lrfind's public engine


PEER_METHODS = ("steepest", "valley", "minimum")  # read from one 100-step sweep, as peers do
DEFAULT = "default"  # lrfind's default: the plan (full sweep + focused repeats), bottom rule


@dataclass(frozen=True)
class Suggestions:
    max_lr: dict[str, float | None]  # by method
    recommendation: Recommendation | None  # the default's, for the base_lr check
    steps: dict[str, int]  # training steps each strategy cost
    seconds: dict[str, float]


class SweepCache:
    """Every sweep's records, by config, seed and sweep settings, in .bench/sweeps/: a sweep is
    seeded, so its curve does not depend on the rule that reads it, and comparing rules (or
    rerunning the tables) replays the plan on the same curves without training again. Delete
    the folder after changing the engine (what a sweep records), not after changing a rule."""

    folder = CACHE_DIR / "sweeps"

    def __init__(self, task: Task, enabled: bool = True) -> None:
        self.path = self.folder / f"{task.name}.pkl"
        self.enabled = enabled
        self.entries: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        if enabled and self.path.exists():
            self.entries = pickle.loads(self.path.read_bytes())

    @staticmethod
    def key(seed: int, settings: SweepSettings) -> tuple[Any, ...]:
        return (seed, *sorted(dataclasses.asdict(settings).items()))

    def get(self, seed: int, settings: SweepSettings) -> tuple[Any, ...] | None:
        return self.entries.get(self.key(seed, settings)) if self.enabled else None

    def put(self, seed: int, settings: SweepSettings, result: RangeTestResult) -> None:
        if not self.enabled:
            return
        self.entries[self.key(seed, settings)] = (
            result.records,
            result.stop_reason,
            result.sweep_seconds,
            result.skipped_steps,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, pickle.dumps(self.entries))


def sweep_runner(
    task: Task, base_seed: int, method: str, cache: SweepCache
) -> Callable[[int, SweepSettings], RangeTestResult]:
    """The plan's `run_sweep` for one config: repeat k uses seed base_seed + k, as `lrfind run`
    does (new weights and data order; a fine-tune's weights are always the pretrained ones).
    A sweep already in `cache` is read from it and analysed by `method`."""

    def run_sweep(repeat: int, settings: SweepSettings) -> RangeTestResult:
        seed = base_seed + repeat
        cached = cache.get(seed, settings)
        if cached is not None:
            records, stop_reason, seconds, skipped = cached
            return analysed_result(
                records, stop_reason, settings, method, seconds, skipped_steps=skipped
            )
        model = task.model(seed)
        optimizer = task.optimizer(model, settings.start_lr)
        result = range_test(
            model,
            optimizer,
            task.loss_fn,  # None for the transformer: it computes its loss from "labels"
            task.batches(seed),
            **dataclasses.asdict(settings),
            method=method,
            seed=seed,
        )
        cache.put(seed, settings, result)
        return result

    return run_sweep


def suggest(task: Task, base_seed: int, cache: SweepCache, horizon: bool = True) -> Suggestions:
    """Every method from the same full sweep; the default plan adds its focused repeats."""
    training_steps = task.epochs * len(task.batches(base_seed))
    outcome = search(
        sweep_runner(task, base_seed, DEFAULT_METHOD, cache),
        SweepSettings(),
        SearchSettings(),
        DEFAULT_METHOD,
        horizon=measured_horizon(
            task.optimizer(task.model(base_seed), 1e-3), training_steps, "the config's budget"
        )
        if horizon
        else None,
    )
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
        steps={**dict.fromkeys(PEER_METHODS, full_steps), DEFAULT: outcome.steps_trained},
        seconds={
            **dict.fromkeys(PEER_METHODS, full.sweep_seconds),
            DEFAULT: sum(s.result.sweep_seconds for s in outcome.sweeps + outcome.set_aside),
        },
    )


def schedule_score(task: Task, recommendation: Recommendation, schedule: str, seed: int) -> float:
    """The score after the config's budget of one triangular cycle between base_lr and max_lr,
    or of a constant max_lr / 10: the check that base_lr is a sound lower bound."""

    def setup(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        if schedule == "constant":
            return task.optimizer(model, recommendation.max_lr / 10), None
        optimizer = task.optimizer(model, recommendation.base_lr)
        return optimizer, torch.optim.lr_scheduler.CyclicLR(
            optimizer,
            base_lr=recommendation.base_lr,
            max_lr=recommendation.max_lr,
            step_size_up=max(1, steps // 2),  # one cycle over the budget
            cycle_momentum=False,
        )

    return trained_score(task, seed, setup)


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Row:
    config: str
    method: str
    median_regret: str
    worst_regret: str
    median_distance: str
    spread: str
    failures: str


def method_row(truth: GroundTruth, method: str, lrs: list[float | None]) -> Row:
    regrets = [truth.regret(truth.score_at(lr)) for lr in lrs]
    logs = [math.log10(lr) for lr in lrs if lr is not None]
    distance = statistics.median(abs(log - truth.best_log10) for log in logs) if logs else math.nan
    return Row(
        config=truth.task.name,
        method=method,
        median_regret=truth.shown(statistics.median(regrets)),
        worst_regret=truth.shown(max(regrets)),
        median_distance=f"{distance:.2f}",
        spread=f"{max(logs) - min(logs):.2f}" if logs else "nan",
        failures=str(len(lrs) - len(logs)),
    )


def alternative_row(truth: GroundTruth, name: str, scores: list[float]) -> Row:
    regrets = [truth.regret(score) for score in scores]
    return Row(
        truth.task.name, name, truth.shown(statistics.median(regrets)), truth.shown(max(regrets)),
        "-", "-", "-",
    )  # fmt: skip


def print_tables(
    rows: list[Row],
    truths: dict[str, GroundTruth],
    costs: dict[str, dict[str, list[float]]],
    base_checks: list[tuple[str, float, float, float, float]],
    seeds: tuple[int, ...],
) -> None:
    print("| config | regret in | grid best peak lr (score) | method | median regret | worst "
          "regret | median distance (decades) | spread (decades) | no answer |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    shown: set[str] = set()
    for row in rows:
        truth = truths[row.config]
        first = row.config not in shown
        shown.add(row.config)
        split = "held out" if truth.task.held_out else "tuning"
        label = f"{row.config} ({truth.task.group}, {split})"
        unit = "pp" if truth.task.higher_is_better else "loss (% of gap)"
        lead = f"| {label} | {unit} | {truth.shown_best()} " if first else "| | | "
        print(
            f"{lead}| {row.method} | {row.median_regret} | {row.worst_regret} "
            f"| {row.median_distance} | {row.spread} | {row.failures} |"
        )
    if any(costs[method]["steps"] for method in costs):
        print("\n| method | median steps per recommendation | median sweep seconds |")
        print("| --- | --- | --- |")
        for method, cost in costs.items():
            if cost["steps"]:
                print(f"| {method} | {statistics.median(cost['steps']):.0f} "
                      f"| {statistics.median(cost['s']):.2f} |")  # fmt: skip
    if base_checks:
        print("\n| config | base_lr | max_lr | triangular base..max | constant max/10 |")
        print("| --- | --- | --- | --- | --- |")
        for name, base_lr, max_lr, cyclic, flat in base_checks:
            print(f"| {name} | {base_lr:.3g} | {max_lr:.3g} | {cyclic:.4g} | {flat:.4g} |")
    print(f"\n(torch threads: {torch.get_num_threads()}; sweep seeds {list(seeds)}; "
          f"grid and alternative seeds {list(GRID_SEEDS)})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--grid-only",
        action="store_true",
        help="only fill in the grid and the alternatives (no sweeps)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=len(SWEEP_SEEDS),
        choices=range(1, len(SWEEP_SEEDS) + 1),
        help=f"sweep from the first N of {list(SWEEP_SEEDS)}",
    )
    parser.add_argument(
        "--no-alternatives", action="store_true", help="neither train nor show the alternatives"
    )
    parser.add_argument("--no-base-check", action="store_true", help="skip the base_lr check")
    parser.add_argument(
        "--no-horizon", action="store_true", help="the answer as read, not scaled for the budget"
    )
    parser.add_argument(
        "--fresh-sweeps", action="store_true", help="train every sweep again (no sweep cache)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    arguments = parser.parse_args()  # fmt: skip
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    seeds = SWEEP_SEEDS[: arguments.seeds]

    truths: dict[str, GroundTruth] = {}
    alternatives: dict[str, dict[str, list[float]]] = {}
    for name in arguments.configs:
        task = TASKS[name]
        truths[name] = GroundTruth(task, fill_grid(task))
        if not arguments.no_alternatives:
            alternatives[name] = fill_alternatives(task)
    if arguments.grid_only:
        return 0

    methods = (DEFAULT, *PEER_METHODS)
    rows: list[Row] = []
    costs: dict[str, dict[str, list[float]]] = {m: {"steps": [], "s": []} for m in methods}
    base_checks: list[tuple[str, float, float, float, float]] = []
    runs: dict[str, list[Suggestions]] = {}
    for name in arguments.configs:
        task, truth = TASKS[name], truths[name]
        print(f"{name}: grid best peak lr {truth.shown_best()}", file=sys.stderr, flush=True)
        cache = SweepCache(task, enabled=not arguments.fresh_sweeps)
        per_seed = runs[name] = [
            suggest(task, seed, cache, not arguments.no_horizon) for seed in seeds
        ]
        for method in methods:
            rows.append(method_row(truth, method, [item.max_lr[method] for item in per_seed]))
            costs[method]["steps"].extend(item.steps[method] for item in per_seed)
            costs[method]["s"].extend(item.seconds[method] for item in per_seed)
        for alternative, scores in alternatives.get(name, {}).items():
            rows.append(alternative_row(truth, alternative, scores))
        found = [item.recommendation for item in per_seed if item.recommendation is not None]
        if found and not arguments.no_base_check:
            typical = sorted(found, key=lambda item: item.max_lr)[len(found) // 2]
            cyclic = [schedule_score(task, typical, "triangular", s) for s in GRID_SEEDS]
            flat = [schedule_score(task, typical, "constant", s) for s in GRID_SEEDS]
            base_checks.append((name, typical.base_lr, typical.max_lr,
                                statistics.mean(cyclic), statistics.mean(flat)))  # fmt: skip
    print_tables(rows, truths, costs, base_checks, seeds)
    print_runs(runs)
    print_goals(runs, truths)
    return 0


def run_regrets(truth: GroundTruth, per_seed: list[Suggestions]) -> list[float]:
    """The default's regret per seed, in points: accuracy pp, or % of the gap for a loss."""
    gap = abs(truth.worst_score - truth.best_score) or 1.0
    scale = 100.0 if truth.task.higher_is_better else 100.0 / gap
    return [scale * truth.regret(truth.score_at(item.max_lr[DEFAULT])) for item in per_seed]


def print_goals(runs: dict[str, list[Suggestions]], truths: dict[str, GroundTruth]) -> None:
    """Issue 24's goals per split (median regret <= 1, worst <= 3, spread <= 0.25 decades), and
    how often each confidence level's answers were within 1 point of the grid's best."""
    print("\n| split | configs | median regret <= 1 | worst <= 3 | spread <= 0.25 | all three "
          "| worst median regret |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    calibration: dict[tuple[bool, str], list[bool]] = {}
    for held_out in (False, True):
        names = [name for name in runs if truths[name].task.held_out == held_out]
        if not names:
            continue
        passed = {"median": 0, "worst": 0, "spread": 0, "all": 0}
        worst_median = 0.0
        for name in names:
            regrets = run_regrets(truths[name], runs[name])
            logs = [math.log10(lr) for item in runs[name] if (lr := item.max_lr[DEFAULT])]
            checks = {
                "median": statistics.median(regrets) <= 1.0,
                "worst": max(regrets) <= 3.0,
                "spread": bool(logs) and max(logs) - min(logs) <= 0.25,
            }
            checks["all"] = all(checks.values())
            for key, ok in checks.items():
                passed[key] += ok
            worst_median = max(worst_median, statistics.median(regrets))
            for item, regret in zip(runs[name], regrets, strict=True):
                level = item.recommendation.confidence if item.recommendation else "none"
                calibration.setdefault((held_out, level), []).append(regret <= 1.0)
        count = len(names)
        print(f"| {'held out' if held_out else 'tuning'} | {count} | "
              + " | ".join(f"{passed[key]}/{count}" for key in ("median", "worst", "spread", "all"))
              + f" | {worst_median:.1f} |")  # fmt: skip
    print("\n| split | confidence | runs | regret <= 1 point |")
    print("| --- | --- | --- | --- |")
    for (held_out, level), hits in sorted(calibration.items()):
        print(f"| {'held out' if held_out else 'tuning'} | {level} | {len(hits)} "
              f"| {sum(hits)} ({100 * sum(hits) / len(hits):.0f}%) |")  # fmt: skip


def print_runs(runs: dict[str, list[Suggestions]]) -> None:
    """What one run of the default shows, per config over the seeds: its cost, how many
    repeats it took, the width of the interval it reports (the middle repeats', where the
    median lies; pinned at 0.25 decades) and its confidence."""
    print("\n| config | median steps | median repeats | median interval (decades) | widest "
          "interval | confidence high / medium / low / none |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for name, per_seed in runs.items():
        found = [item.recommendation for item in per_seed if item.recommendation is not None]
        widths = [item.log10_width or 0.0 for item in found]
        levels = [item.confidence for item in found]
        counts = " / ".join(str(levels.count(level)) for level in ("high", "medium", "low"))
        print(
            f"| {name} | {statistics.median(item.steps[DEFAULT] for item in per_seed):.0f} "
            f"| {statistics.median(item.repeats for item in found) if found else '-'} "
            f"| {statistics.median(widths) if widths else math.nan:.2f} "
            f"| {max(widths) if widths else math.nan:.2f} "
            f"| {counts} / {len(per_seed) - len(found)} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
