"""`lrfind run` as a function: config in, run folder and result out.

    from lrfind.settings.options import RunConfig
    from lrfind.commands.run import run
    outcome = run(RunConfig(model="mlp", steps=200))

Stages, each a plain value to the next: resolve specs -> load data -> build model and
optimizer -> the plan's sweeps (lrfind.core.plan over lrfind.engine) -> write the run folder
(lrfind.outputs). Everything that can be checked without work (options, specs, the run
folder) is checked first.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrfind.core.horizon import training_length
from lrfind.core.plan import SearchOutcome, search
from lrfind.core.records import RangeTestResult, SnapshotPlace, StepRecord
from lrfind.engine.distributed import Ranks, distributed_group
from lrfind.engine.finder import prepared_model, range_test
from lrfind.engine.loop import endless_batches, to_device, user_code_errors
from lrfind.engine.probe import measured_horizon
from lrfind.engine.stacked import (
    GpuPeak,
    stack_problem,
    stacked_range_tests,
    unless_out_of_memory,
)
from lrfind.errors import ConfigError
from lrfind.outputs.curves import AnalysedCurve, write_curve_files
from lrfind.outputs.documents import document, recommendation_blocks, search_blocks
from lrfind.outputs.files import RunFolder, claim_run_folder, write_json
from lrfind.settings.optimizers import describe as describe_optimizer
from lrfind.settings.options import RunConfig, SetupSettings, SweepSettings
from lrfind.setup import data as datasets
from lrfind.setup import models
from lrfind.setup.batches import BatchRule
from lrfind.setup.devices import environment_summary, resolve_device
from lrfind.setup.families import check_lr_free
from lrfind.setup.losses import build_loss
from lrfind.setup.optimizers import build_optimizer, check_optimizer, optimizer_block
from lrfind.setup.prepare import PreparedData, check_specs, prepare_data, seeded_model


@dataclass(frozen=True)
class RunOutcome:
    out: Path
    search: SearchOutcome
    document: dict[str, Any]  # the content of result.json

    @property
    def result(self) -> RangeTestResult:
        """The full sweep."""
        return self.search.main


@dataclass(frozen=True)
class RunHooks:
    """How a caller follows a run. `on_sweep(repeats, settings)` announces each sweep as it
    starts: (0,) the full sweep, (2,) repeat 2, (1, 2, 3, 4, 5) the repeats stacked in one."""

    on_stage: Callable[[str], None] | None = None
    on_step: Callable[[StepRecord], None] | None = None
    on_sweep: Callable[[tuple[int, ...], SweepSettings], None] | None = None
    stop_requested: Callable[[], bool] | None = None

    def stage(self, name: str) -> None:
        if self.on_stage is not None:
            self.on_stage(name)

    def sweep(self, repeats: tuple[int, ...], settings: SweepSettings) -> None:
        if self.on_sweep is not None:
            self.on_sweep(repeats, settings)


def default_out(setup: SetupSettings, now: datetime | None = None, prefix: str = "") -> Path:
    """runs/<prefix><model>-<dataset>-<timestamp>: a new folder for every run."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{_slug(setup.model)}-{_slug(setup.dataset)}-{stamp}"


def _slug(spec: str) -> str:
    name = spec.rpartition(":")[2] if ":" in spec else spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem or name).strip("-") or "run"


def run(
    config: RunConfig,
    *,
    on_stage: Callable[[str], None] | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    on_sweep: Callable[[tuple[int, ...], SweepSettings], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    ranks: Ranks | None = None,
) -> RunOutcome:
    """Run the plan and write the run folder. When `stop_requested` answers True mid-sweep,
    the plan stops there and what was recorded is written, marked `interrupted`.

    Under torchrun every rank runs this (`ranks`, by default from torchrun's environment);
    rank 0 alone writes the folder."""
    ranks = ranks or Ranks.from_environment()
    hooks = RunHooks(on_stage, on_step, on_sweep, stop_requested)
    with distributed_group(ranks, resolve_device(config.device), config.batch_size) as device:
        return _run(config, device, ranks, hooks)


def _run(config: RunConfig, device: torch.device, ranks: Ranks, hooks: RunHooks) -> RunOutcome:
    # A built-in dataset's files are read while the checks import torch._dynamo (slow to
    # import); they are parsed only after the checks pass, so a bad spec still fails first.
    prefetched = datasets.prefetch_builtin(config.dataset, config.data_dir)
    check_specs(config)
    check_lr_free(check_optimizer(config), config.force_sweep)
    if config.weights is not None:
        models.check_weights_path(config.weights)
    out = config.out or default_out(config)
    subject = f"the run of model {config.model!r} on {config.dataset!r} raised"
    if ranks.rank != 0:  # under torchrun, rank 0 alone claims and writes the folder
        with user_code_errors(subject):
            return _sweep_and_write(config, device, ranks, hooks, out, None, prefetched)
    with claim_run_folder(out, config.overwrite) as folder, user_code_errors(subject):
        return _sweep_and_write(config, device, ranks, hooks, out, folder, prefetched)


def _sweep_and_write(
    config: RunConfig,
    device: torch.device,
    ranks: Ranks,
    hooks: RunHooks,
    out: Path,
    folder: RunFolder | None,
    prefetched: datasets.FilePrefetch | None,
) -> RunOutcome:
    started = time.perf_counter()
    timings: dict[str, float] = {}

    hooks.stage("loading data")
    clock = time.perf_counter()
    prepared = prepare_data(
        config,
        device,
        held_out_samples=lambda total: _held_out_count(config, total),
        prefetched=prefetched,
    )
    timings["load_data_s"] = time.perf_counter() - clock

    hooks.stage("building model")
    clock = time.perf_counter()
    sweeper = Sweeper(config, prepared, device, ranks, hooks)
    timings["build_model_s"] = time.perf_counter() - clock

    hooks.stage("sweeping")
    outcome = search(
        sweeper.one,
        config.sweep_settings(),
        config.search_settings(),
        config.method,
        run_repeats=sweeper.stacked_repeats if sweeper.try_stacking() else None,
        horizon=measured_horizon(
            sweeper.optimizer,
            *training_length(
                epochs=config.epochs,
                batches_per_epoch=prepared.steps_per_epoch,
                accumulate=config.accumulate,
                epochs_name="--epochs",
            ),
        ),
    )
    outcome = dataclasses.replace(outcome, notes=[*outcome.notes, *sweeper.notes])
    timings["sweep_s"] = sum(
        sweep.result.sweep_seconds for sweep in outcome.sweeps + outcome.set_aside
    )

    hooks.stage("writing results")
    clock = time.perf_counter()

    def result_document() -> dict[str, Any]:
        timings["total_s"] = time.perf_counter() - started
        return _result_document(config, out, outcome, prepared, sweeper, device, timings)

    if folder is None:  # under torchrun, rank 0 writes; the others ran the same curve
        return RunOutcome(out=out, search=outcome, document=result_document())
    with folder.staged() as staging:
        curves = [
            AnalysedCurve(sweep.repeat, sweep.result.analysis, sweep.result.val_losses)
            for sweep in outcome.sweeps
        ]
        write_curve_files(
            staging, curves, outcome.recommendation, _plot_title(config), config.mode == "exp"
        )
        timings["write_s"] = time.perf_counter() - clock
        written = result_document()
        write_json(staging / "result.json", written)
    return RunOutcome(out=out, search=outcome, document=written)


def _held_out_count(config: RunConfig, samples: int | None) -> int:
    """Samples set aside for --val-batches, from the end of the training split (the start
    of an iterable dataset, whose size is unknown: None)."""
    held_out = config.val_batches * config.batch_size
    if held_out and samples is not None and samples - held_out < config.batch_size:
        raise ConfigError(
            f"--val-batches {config.val_batches} holds out {held_out} of the dataset's "
            f"{samples} samples, leaving less than one training batch of {config.batch_size}. "
            "Use fewer --val-batches or a smaller --batch-size."
        )
    return held_out


class Sweeper:
    """The sweeps of one run, as the plan asks for them: the full sweep and the repeats one
    by one (`one`), or the repeats stacked into one run (`stacked_repeats`). Each repeat draws
    new weights and a new data order from its seed. `notes` says where stacking gave way."""

    def __init__(
        self,
        config: RunConfig,
        prepared: PreparedData,
        device: torch.device,
        ranks: Ranks,
        hooks: RunHooks,
    ) -> None:
        self.config = config
        self.prepared = prepared
        self.device = device
        self.ranks = ranks
        self.hooks = hooks
        self.notes: list[str] = []
        self.stacked = False  # whether the repeats did run stacked
        self.full_snapshot: SnapshotPlace | None = None  # where the full sweep kept the state
        self.gpu_peak = GpuPeak.start(device)
        self.loss_fn = build_loss(config)
        plain = self.plain_model(config.seed)
        first = BatchRule(plain).split(next(endless_batches(prepared.loader_for(config.seed))))
        models.check_model_fits(
            plain,
            to_device(first, device),
            self.loss_fn,
            config,
            config.num_classes or prepared.num_classes,
        )
        self.plain = plain
        self.model = self.fast_model(plain)
        self.optimizer = build_optimizer(config, self.model.parameters(), config.start_lr)

    def plain_model(self, seed: int) -> nn.Module:
        return seeded_model(self.config, self.prepared, seed, self.config.weights).to(self.device)

    def fast_model(self, model: nn.Module) -> nn.Module:
        """The model as the sweep trains it, after the fit check on the plain model."""
        return prepared_model(
            model,
            self.device,
            self.ranks,
            channels_last=self.config.channels_last,
            compile=self.config.compile,
            parallel=self.config.parallel,
        )

    def one(self, repeat: int, settings: SweepSettings) -> RangeTestResult:
        """Repeat 0 is the full sweep, on the model built first."""
        config, seed = self.config, self.config.seed + repeat
        model, optimizer = self.model, self.optimizer
        if repeat:
            model = self.fast_model(self.plain_model(seed))
            optimizer = build_optimizer(config, model.parameters(), config.start_lr)
        self.hooks.sweep((repeat,), settings)
        result = range_test(
            model,
            optimizer,
            self.loss_fn,
            self.prepared.loader_for(seed),
            **dataclasses.asdict(settings),
            method=config.method,
            seed=seed,
            device=self.device,
            val_batches=self.prepared.held_out_batches(config.batch_size),
            callback=self.hooks.on_step,
            stop_requested=self.hooks.stop_requested,
            precision=config.precision,
            accumulate=config.accumulate,
            channels_last=config.channels_last,
            ranks=self.ranks,
            snapshot=config.snapshot,
            force_sweep=config.force_sweep,
        )
        if not repeat:  # the stacked repeats' memory check leaves out its snapshot
            self.full_snapshot = result.snapshot
        return result

    def try_stacking(self) -> bool:
        """Whether the repeats run stacked; a note where they could not."""
        stack, note = stack_choice(
            self.config, self.plain, self.prepared.sample_inputs, self.device, self.ranks
        )
        self.notes.extend([note] if note else [])
        return stack

    def stacked_repeats(
        self, repeats: list[int], settings: SweepSettings
    ) -> list[RangeTestResult] | None:
        """All repeats in one run: the same seeds, weights and data orders as one by one.
        None (run them one by one) where they would not fit in GPU memory."""
        config = self.config
        if config.stack_repeats == "auto":
            problem = self.gpu_peak.stacking_problem(len(repeats), self.full_snapshot)
            if problem is not None:
                self.notes.append(f"The repeats ran one after another, not stacked: {problem}.")
                return None
        seeds = [config.seed + repeat for repeat in repeats]
        self.hooks.sweep(tuple(repeats), settings)
        results = unless_out_of_memory(
            lambda: stacked_range_tests(
                [seeded_model(config, self.prepared, seed, config.weights) for seed in seeds],
                lambda tensors: build_optimizer(config, tensors, config.start_lr),
                self.loss_fn,
                [self.prepared.loader_for(seed) for seed in seeds],
                settings,
                device=self.device,
                method=config.method,
                seed=seeds[0],
                val_batches=self.prepared.held_out_batches(config.batch_size),
                callback=self.hooks.on_step,
                stop_requested=self.hooks.stop_requested,
                precision=config.precision,
                accumulate=config.accumulate,
            )
        )
        if results is None:
            self.notes.append(
                "The stacked repeats ran out of GPU memory; they ran one after another instead."
            )
            return None
        self.stacked = True
        return results


def stack_choice(
    config: RunConfig,
    model: nn.Module,
    sample_inputs: torch.Tensor,
    device: torch.device,
    ranks: Ranks,
) -> tuple[bool, str | None]:
    """Whether the repeats run stacked (lrfind.engine.stacked) and, where --stack-repeats auto
    had a GPU but could not stack them, a note saying why. `on` that cannot is an error."""
    if config.repeats == 0 or config.stack_repeats == "off":
        return False, None
    if config.stack_repeats == "auto" and device.type != "cuda":
        return False, None
    problem = config.stacking_conflict()
    if problem is None and ranks.distributed:
        problem = "torchrun (every rank already trains its own shard)"
    if problem is None:
        problem = stack_problem(model, sample_inputs)
    if problem is None:
        return True, None
    if config.stack_repeats == "on":
        raise ConfigError(
            f"--stack-repeats on: the repeats cannot be stacked because of {problem}. "
            "Use --stack-repeats off to run them one after another."
        )
    return False, f"The repeats ran one after another, not stacked, because of {problem}."


def _plot_title(config: RunConfig) -> str:
    optimizer = describe_optimizer(
        config.optimizer, config.momentum, config.weight_decay, config.optimizer_args or {}
    )
    return (
        f"LR range test: {config.model} on {config.dataset}\n"
        f"{optimizer}, batch {config.batch_size}, seed {config.seed}"
    )


def _answer_steps(outcome: SearchOutcome) -> int | None:
    """The training run the answer is for (lrfind.core.horizon), as result.json states it."""
    horizon = None if outcome.recommendation is None else outcome.recommendation.horizon
    steps = (horizon or {}).get("training_steps")
    return steps if isinstance(steps, int) else None


def _result_document(
    config: RunConfig,
    out: Path,
    outcome: SearchOutcome,
    prepared: PreparedData,
    sweeper: Sweeper,
    device: torch.device,
    timings: dict[str, float],
) -> dict[str, Any]:
    steps_trained = outcome.steps_trained  # the set-aside sweeps' included, as sweep_s
    return document(
        interrupted=outcome.interrupted,
        config={**config.to_dict(), "out": str(out)},
        environment=environment_summary(device),
        data={**prepared.description, "steps_per_epoch": prepared.steps_per_epoch},
        model={
            "spec": config.model,
            "parameters": sum(parameter.numel() for parameter in sweeper.model.parameters()),
        },
        optimizer=optimizer_block(
            config,
            sweeper.optimizer,
            None
            if outcome.recommendation is None
            else {key: getattr(outcome.recommendation, key) for key in ("base_lr", "max_lr", "lr")},
            _answer_steps(outcome),
        ),
        **search_blocks(outcome, config.seed),
        repeats_stacked=sweeper.stacked,  # trained as one run (lrfind.engine.stacked)
        skipped_steps=sum(sweep.result.skipped_steps for sweep in outcome.sweeps),
        timings={**timings, "seconds_per_step": timings["sweep_s"] / max(steps_trained, 1)},
        **recommendation_blocks(
            outcome.recommendation,
            outcome.no_recommendation,
            outcome.notes + outcome.main.analysis.diagnostics,
            prepared.steps_per_epoch,
        ),
    )
