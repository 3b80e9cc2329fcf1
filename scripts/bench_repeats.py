"""How many focused repeats does a recommendation need? Rules for stopping, compared offline.

    .venv/bin/python scripts/bench_repeats.py --threads 1                # collect, then compare
    .venv/bin/python scripts/bench_repeats.py --configs lenet-sgd-256    # one config

For each config of scripts/bench_quality.py and five user seeds (0, 100, ..., 400: a hundred
apart, so that no repeat's seed is another run's), one full sweep and `--collect` (14) focused
repeats over the plan's focus range are run once and cached in `.bench/repeats/`. Each
stopping rule then reads the same repeats in order, as the plan would have run them:

- fixed N: the median of the first N repeats (the plan before issue 16 used 5);
- adaptive FIRST CAP STEP: FIRST repeats, then STEP more at a time until `median_pinned`
  (the middle suggestions within 0.25 decades) or CAP repeats, as `lrfind.core.plan` does
  with FIRST = MIN_REPEATS, STEP 1 and CAP `--repeats`.

Per rule and config: the spread of the answer across the five user seeds (decades), the
median and worst regret against the cached grid (bench_quality's units), the median total
steps per recommendation (the full sweep and the repeats used), the mean number of repeats,
and the median width of the middle repeats (the interval a run reports). A rule's stopping
point depends only on the suggestions, so the comparison costs no training beyond the cache.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as quality
from bench_tasks import CACHE_DIR

from lrfind.core.analysis import Recommendation, median_pinned, middle_suggestions
from lrfind.core.plan import MIN_REPEATS, focus_range
from lrfind.core.settings import SweepSettings

USER_SEEDS = (0, 100, 200, 300, 400)
TUNING_CONFIGS = ("lenet-sgd-256", "mlp-sgd-32", "lenet-adam-128")  # the rule was chosen here


@dataclass(frozen=True)
class Collected:
    full_steps: int
    repeats: list[tuple[float | None, int]]  # each repeat's suggestion and its steps


def collect(name: str, seed: int, count: int) -> Collected:
    """The full sweep and `count` focused repeats of one user seed, cached."""
    path = CACHE_DIR / "repeats" / f"{name}-{seed}-{count}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    run = quality.sweep_runner(quality.TASKS[name], seed)
    settings = SweepSettings()
    full = run(0, settings)
    focused = focus_range(full.analysis, settings)
    repeats = []
    for repeat in range(1, count + 1 if focused is not None else 1):
        result = run(repeat, focused)
        found = result.analysis.recommendation
        repeats.append((None if found is None else found.max_lr, len(result.records)))
    collected = Collected(len(full.records), repeats)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(collected))
    return collected


Rule = tuple[str, int, int, int]  # kind, cap (or count), step, first


def used(collected: Collected, rule: Rule) -> list[tuple[float | None, int]]:
    """The repeats a rule reads before it stops."""
    kind, cap, step, first = rule
    if kind == "fixed":
        return collected.repeats[:cap]
    count = min(first, cap)
    while True:
        taken = collected.repeats[:count]
        found = [None if lr is None else Recommendation(lr, lr, lr, "bottom", "high")
                 for lr, _ in taken]  # fmt: skip
        if median_pinned(found) or count >= cap:
            return taken
        count = min(cap, count + step)


def label(rule: Rule) -> str:
    kind, cap, step, first = rule
    return f"fixed {cap}" if kind == "fixed" else f"first {first}, then {step} at a time, cap {cap}"


def answer(taken: list[tuple[float | None, int]]) -> tuple[float | None, float | None]:
    """The median of the repeats' suggestions and the width of the middle ones, or None
    when fewer than half answered (the plan's rule)."""
    found = [lr for lr, _ in taken if lr is not None]
    if not found or 2 * len(found) < len(taken):
        return None, None
    middle = middle_suggestions(found)
    return float(10 ** np.median(np.log10(found))), float(np.log10(middle[-1] / middle[0]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(TUNING_CONFIGS),
                        choices=list(quality.TASKS))  # fmt: skip
    parser.add_argument("--collect", type=int, default=14, help="repeats per user seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    rules: list[Rule] = [("fixed", n, 0, 0) for n in (3, 5, 7, 9)]
    rules += [("adaptive", cap, step, first) for first in (3, MIN_REPEATS, 5)
              for cap in (9, 11, 13) for step in (1, 2)]  # fmt: skip
    rules = list(dict.fromkeys(rules))
    pooled: dict[Rule, list[int]] = {rule: [] for rule in rules}
    print("| config | rule | spread (decades) | median regret | worst regret | median steps "
          "| mean repeats | median interval (decades) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    document = quality.load_document()
    for name in arguments.configs:
        truth = quality.GroundTruth(quality.TASKS[name], document["scores"][name])
        runs = [collect(name, seed, arguments.collect) for seed in USER_SEEDS]
        for rule in rules:
            answers, steps, counts, widths = [], [], [], []
            for run in runs:
                taken = used(run, rule)
                lr, width = answer(taken)
                answers.append(lr)
                steps.append(run.full_steps + sum(count for _, count in taken))
                counts.append(len(taken))
                widths += [] if width is None else [width]
            pooled[rule] += steps
            row = quality.method_row(truth, "-", answers)
            print(
                f"| {name} | {label(rule)} "
                f"| {row.spread} | {row.median_regret} | {row.worst_regret} "
                f"| {statistics.median(steps):.0f} "
                f"| {statistics.mean(counts):.1f} "
                f"| {statistics.median(widths) if widths else float('nan'):.2f} |",
                flush=True,
            )
    print("\n| rule | median steps over all configs and seeds | mean |\n| --- | --- | --- |")
    for rule, values in pooled.items():
        print(
            f"| {label(rule)} | {statistics.median(values):.0f} | {statistics.mean(values):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
