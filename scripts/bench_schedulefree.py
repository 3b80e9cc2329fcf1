"""Schedule-free at lrfind's rate, at its default rate, and over a grid of rates, on the
configs of scripts/bench_tasks.py (issue 25's ground truth for the schedule-free answer).

    .venv/bin/python scripts/bench_schedulefree.py mlp-sgd-32 finetune --seeds 0 1

Each config trains the schedule-free variant a user would pick (SGDScheduleFree for an SGD
config, AdamWScheduleFree otherwise) for the config's budget, with a warm-up of 5% of the
steps (lrfind.setup.families.WARMUP_SHARE), then scores it at its averaged weights (eval
mode, batch-norm statistics refreshed there). lrfind's rate is find_lr's max_lr on the same
optimizer, for the same training length. Scores are cached in .bench/schedulefree.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import schedulefree  # bench extra: pip install -e .[bench]
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tasks import CACHE_DIR, GRID_STEP_DECADES, Task, build_tasks

from lrfind.engine.finder import find_lr
from lrfind.engine.trainer import train_epochs
from lrfind.setup.batches import BatchRule, batch_loss
from lrfind.setup.families import WARMUP_SHARE

CACHE = CACHE_DIR / "schedulefree.json"
GRID_DECADES = (-1.5, 1.0)  # around the variant's default rate
BATCH_NORM_BATCHES = 20


def variant(task: Task) -> type[torch.optim.Optimizer]:
    return (
        schedulefree.SGDScheduleFree
        if task.optimizer_family == "sgd"
        else (schedulefree.AdamWScheduleFree)
    )


def default_lr(task: Task) -> float:
    return float(variant(task)([torch.zeros(1, requires_grad=True)]).defaults["lr"])


def built(task: Task, model: nn.Module, lr: float, steps: int) -> torch.optim.Optimizer:
    warmup = max(1, round(WARMUP_SHARE * steps))
    return variant(task)(
        model.parameters(), lr=lr, weight_decay=task.weight_decay, warmup_steps=warmup
    )


def trained_score(task: Task, seed: int, lr: float) -> float:
    model = task.model(seed)
    batches = task.batches(seed)
    optimizer = built(task, model, lr, task.epochs * len(batches))
    train_epochs(model, optimizer, task.loss_fn, batches, epochs=task.epochs)
    optimizer.eval()  # type: ignore[attr-defined]
    if any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()):
        rule, _ = BatchRule(model), model.train()
        with torch.no_grad():  # the running statistics, at the averaged weights
            for raw in itertools.islice(iter(batches), BATCH_NORM_BATCHES):
                batch_loss(model, rule.split(raw), task.loss_fn)
    return task.score(model)


def lrfind_lr(task: Task, seed: int) -> float | None:
    model = task.model(seed)
    batches = task.batches(seed)
    optimizer = built(task, model, default_lr(task), task.epochs * len(batches))
    outcome = find_lr(
        model, optimizer, task.loss_fn, batches, training_steps=task.epochs * len(batches),
        seed=seed,
    )  # fmt: skip
    return None if outcome.recommendation is None else outcome.recommendation.max_lr


def cached(document: dict[str, Any], key: str, compute: Any) -> Any:
    if key not in document:
        document[key] = compute()
        CACHE.parent.mkdir(exist_ok=True)
        temporary = CACHE.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=1))
        temporary.replace(CACHE)
    return document[key]


def measure(task: Task, seeds: list[int], document: dict[str, Any]) -> dict[str, Any]:
    default = default_lr(task)
    low, high = GRID_DECADES
    count = round((high - low) / GRID_STEP_DECADES) + 1
    grid = [round(math.log10(default) + low + GRID_STEP_DECADES * i, 2) for i in range(count)]
    scores = {
        exponent: statistics.median(
            cached(document, f"{task.name}|grid|{exponent}|{seed}",
                   lambda e=exponent, s=seed: trained_score(task, s, 10**e))
            for seed in seeds
        )
        for exponent in grid
    }  # fmt: skip
    best = (max if task.higher_is_better else min)(scores, key=lambda e: scores[e])
    at_default = statistics.median(
        cached(document, f"{task.name}|default|{seed}",
               lambda s=seed: trained_score(task, s, default))
        for seed in seeds
    )  # fmt: skip
    rates = [cached(document, f"{task.name}|lrfind-lr|{seed}", lambda s=seed: lrfind_lr(task, s))
             for seed in seeds]  # fmt: skip
    at_lrfind = [
        task.chance if rate is None else cached(
            document, f"{task.name}|lrfind|{seed}", lambda s=seed, r=rate: trained_score(task, s, r)
        )
        for seed, rate in zip(seeds, rates, strict=True)
    ]  # fmt: skip
    sign = 1 if task.higher_is_better else -1
    return {
        "config": task.name,
        "variant": variant(task).__name__,
        "default_lr": default,
        "default": at_default,
        "grid_best_lr": 10**best,
        "grid_best": scores[best],
        "lrfind_lrs": rates,
        "lrfind": statistics.median(at_lrfind),
        "regret_lrfind": sign * (scores[best] - statistics.median(at_lrfind)),
        "regret_default": sign * (scores[best] - at_default),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", help="bench_tasks names (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    tasks = build_tasks()
    document = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    print("| config | variant | score | default lr | at default | grid best lr | grid best "
          "| lrfind lr (per seed) | at lrfind | regret lrfind | regret default |")  # fmt: skip
    print("| --- " * 11 + "|")
    for name in arguments.configs or list(tasks):
        row = measure(tasks[name], arguments.seeds, document)
        shown = ", ".join("-" if rate is None else f"{rate:.3g}" for rate in row["lrfind_lrs"])
        print(
            f"| {row['config']} | {row['variant']} | {tasks[name].score_name} "
            f"| {row['default_lr']:.3g} | {row['default']:.4f} | {row['grid_best_lr']:.3g} "
            f"| {row['grid_best']:.4f} | {shown} | {row['lrfind']:.4f} "
            f"| {row['regret_lrfind']:.4f} | {row['regret_default']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
