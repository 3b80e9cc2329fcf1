"""`lrfind train` as a function: bounds -> schedules -> trained models -> a run folder.

    lrfind train --config configs/lenet-onecycle.yaml --schedule triangular --baseline constant

`run_training` trains one model per schedule from the same seed (lrfind.engine.trainer) and
writes history.csv, history.png and train.json. The bounds come from the config, a result.json
or a fresh `lrfind run`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lrfind.commands.run import default_out
from lrfind.commands.run import run as run_sweep
from lrfind.core.records import StepRecord
from lrfind.core.schedules import Bounds, check_kind, check_section, schedule_section
from lrfind.engine.loop import user_code_errors
from lrfind.engine.schedulers import scheduler_from_section
from lrfind.engine.trainer import EpochRecord, EvaluationSet, train_epochs
from lrfind.errors import SpecError, noted
from lrfind.outputs.documents import document, read_result
from lrfind.outputs.files import staged_run_folder, write_csv, write_json
from lrfind.outputs.plots import HistoryLines, render_history
from lrfind.outputs.tensorboard import check_tensorboard, write_training_scalars
from lrfind.settings.optimizers import describe as describe_optimizer
from lrfind.settings.options import TrainConfig, check_result_matches
from lrfind.setup.devices import environment_summary, resolve_device
from lrfind.setup.losses import build_loss
from lrfind.setup.optimizers import build_optimizer
from lrfind.setup.prepare import PreparedData, check_specs, prepare_data, seeded_model

BASELINE = "constant"  # the schedule `--baseline constant` adds
# Share of a user dataset held out as the test set; built-in datasets use their test split.
USER_TEST_SHARE = 0.1


@dataclass(frozen=True)
class ScheduleRun:
    """One schedule trained from the shared seed: its parameters and what it achieved."""

    name: str  # the schedule kind; the baseline is "constant"
    section: dict[str, Any]
    history: list[EpochRecord]
    step_lrs: list[float]
    steps_per_epoch: int
    seconds: float

    @property
    def final(self) -> EpochRecord:
        return self.history[-1]

    def summary(self) -> dict[str, Any]:
        """This schedule's entry in train.json."""
        return {
            "parameters": self.section,
            "final": dataclasses.asdict(self.final),
            "best_test_accuracy": max(
                (
                    record.test_accuracy
                    for record in self.history
                    if record.test_accuracy is not None
                ),
                default=None,
            ),
            "seconds": self.seconds,
        }

    def lines(self) -> HistoryLines:
        return HistoryLines(
            name=self.name,
            epochs=[record.epoch for record in self.history],
            train_loss=[record.train_loss for record in self.history],
            test_loss=[record.test_loss for record in self.history],
            train_accuracy=[record.train_accuracy for record in self.history],
            test_accuracy=[record.test_accuracy for record in self.history],
            step_lrs=self.step_lrs,
        )


@dataclass(frozen=True)
class TrainingOutcome:
    out: Path
    runs: list[ScheduleRun]
    bounds_source: str  # where the bounds came from: a result file, a fresh sweep or the config
    document: dict[str, Any]  # the content of train.json


@dataclass(frozen=True)
class TrainingHooks:
    """How a caller follows training: stages, each step (schedule, step, total, lr, loss),
    each epoch, and the steps of a sweep run first for the bounds."""

    on_stage: Callable[[str], None] | None = None
    on_step: Callable[[str, int, int, float, float], None] | None = None
    on_epoch: Callable[[str, EpochRecord], None] | None = None
    on_sweep_step: Callable[[StepRecord], None] | None = None

    def stage(self, name: str) -> None:
        if self.on_stage is not None:
            self.on_stage(name)


def run_training(
    config: TrainConfig,
    kinds: list[str],
    *,
    baseline: bool = False,
    force: bool = False,
    tensorboard: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_step: Callable[[str, int, int, float, float], None] | None = None,
    on_epoch: Callable[[str, EpochRecord], None] | None = None,
    on_sweep_step: Callable[[StepRecord], None] | None = None,
) -> TrainingOutcome:
    """Train `config`'s model once per schedule kind (and a constant baseline), from the same
    initial weights and data order, and write the run folder.

    Bounds come from, in order: the config's own schedule section for its kind; `result`
    (a result.json, checked to match the setup unless `force`); a fresh `lrfind run`,
    written to `<out>/sweep/`.
    """
    hooks = TrainingHooks(on_stage, on_step, on_epoch, on_sweep_step)
    started = time.perf_counter()
    for kind in kinds:
        check_kind(kind)
    if config.scheduler is not None:
        check_kind(config.scheduler["kind"])
        if set(config.scheduler) != {"kind"}:  # a complete section: checked before any work
            check_section(config.scheduler, "scheduler in the training config")
    check_specs(config)
    if tensorboard is not None:
        check_tensorboard(tensorboard)  # a missing extra fails before any work
    out = config.out or default_out(config, prefix="train-")
    result = _checked_result(config, force)
    device = resolve_device(config.device)
    subject = f"training model {config.model!r} on {config.dataset!r} raised"

    with user_code_errors(subject), staged_run_folder(out, config.overwrite) as staging:
        hooks.stage("loading data")
        data, test = _training_data(config, device)
        wanted = list(dict.fromkeys([*kinds, *([BASELINE] if baseline else [])]))
        sections, bounds_source = _sections(config, wanted, result, data, out, staging, hooks)
        runs = []
        for name in wanted:
            hooks.stage(f"training {name}")
            with noted(f"while training the {name} schedule"):
                runs.append(
                    _train_schedule(config, data, test, name, sections[name], device, hooks)
                )
            if tensorboard is not None:
                write_training_scalars(
                    tensorboard / out.name / name, runs[-1].lines(), runs[-1].steps_per_epoch
                )
        hooks.stage("writing results")
        write_history_csv(staging / "history.csv", runs)
        render_history(staging / "history.png", [run.lines() for run in runs], _title(config))
        written = document(
            config={**config.to_dict(), "out": str(out)},
            environment=environment_summary(device),
            bounds_source=bounds_source,
            steps_per_epoch=data.steps_per_epoch,
            test_set=data.held_out_source,
            schedules={run.name: run.summary() for run in runs},
            total_s=time.perf_counter() - started,
        )
        write_json(staging / "train.json", written)
    return TrainingOutcome(out=out, runs=runs, bounds_source=bounds_source, document=written)


def _checked_result(config: TrainConfig, force: bool) -> dict[str, Any] | None:
    """The --result document, refused when it was measured on another setup (unless forced)."""
    if config.result is None:
        return None
    result = read_result(config.result)
    Bounds.of(result)  # a result without usable rates is refused before any data is loaded
    if not force and isinstance(result.get("config"), dict):
        check_result_matches(result["config"], config.to_dict(), config.result, "training config")
    return result


def _sections(
    config: TrainConfig,
    wanted: list[str],
    result: dict[str, Any] | None,
    data: PreparedData,
    out: Path,
    staging: Path,
    hooks: TrainingHooks,
) -> tuple[dict[str, dict[str, Any]], str]:
    """Each wanted kind's section and where the bounds came from: the config's own section,
    --lr for the baseline, then the result (a fresh sweep into <out>/sweep/ when none)."""
    sections = _sections_from_config(config, wanted)
    if config.lr is not None and BASELINE in wanted:
        sections[BASELINE] = {"kind": BASELINE, "lr": config.lr}
    missing = [kind for kind in wanted if kind not in sections]
    if not missing:
        return sections, "the training config"
    bounds_source = str(config.result)
    if result is None:
        hooks.stage("sweeping")
        sweep = run_sweep(config.sweep_config(staging / "sweep"), on_step=hooks.on_sweep_step)
        result = sweep.document
        bounds_source = f"a fresh sweep ({out / 'sweep' / 'result.json'})"
    bounds = Bounds.of(result)
    for kind in missing:
        sections[kind] = schedule_section(kind, bounds, data.steps_per_epoch, config.epochs)
    return sections, bounds_source


def _sections_from_config(config: TrainConfig, kinds: list[str]) -> dict[str, dict[str, Any]]:
    """The config's schedule, when it is complete and of a kind asked for; else nothing, and
    the bounds come from a result. A section with only a `kind` is a request, not an error."""
    section = config.scheduler
    if section is None or section.get("kind") not in kinds:
        return {}
    if set(section) == {"kind"}:
        return {}
    needs_rate = "lr" in check_kind(section["kind"]).required
    if needs_rate and "lr" not in section and config.lr is not None:
        section = {**section, "lr": config.lr}  # `lrfind apply` wrote it into optimizer.lr
    return {section["kind"]: check_section(section, "scheduler in the training config")}


def _train_schedule(
    config: TrainConfig,
    data: PreparedData,
    test: EvaluationSet,
    name: str,
    section: dict[str, Any],
    device: torch.device,
    hooks: TrainingHooks,
) -> ScheduleRun:
    model = seeded_model(config, data, config.seed).to(device)
    # every schedule sets the rate it starts at; the 1.0 placeholder is never trained with
    optimizer = build_optimizer(config, model.parameters(), lr=1.0)
    batches = data.loader_for(config.seed)  # the same data order for every schedule
    steps_per_epoch = len(batches)
    scheduler = scheduler_from_section(optimizer, section, steps_per_epoch, config.epochs)
    total = steps_per_epoch * config.epochs
    step_lrs: list[float] = []

    def record_step(step: int, lr: float, loss: float) -> None:
        step_lrs.append(lr)
        if hooks.on_step is not None:
            hooks.on_step(name, step, total, lr, loss)

    def record_epoch(record: EpochRecord) -> None:
        if hooks.on_epoch is not None:
            hooks.on_epoch(name, record)

    clock = time.perf_counter()
    history = train_epochs(
        model,
        optimizer,
        build_loss(config),
        batches,
        epochs=config.epochs,
        scheduler=scheduler,
        test=test,
        on_epoch=record_epoch,
        on_step=record_step,
    )
    return ScheduleRun(
        name, dict(section), history, step_lrs, steps_per_epoch, time.perf_counter() - clock
    )


def _training_data(config: TrainConfig, device: torch.device) -> tuple[PreparedData, EvaluationSet]:
    """The training batches and the test set: a built-in or torchvision dataset's test split,
    or the last USER_TEST_SHARE of another."""
    data = prepare_data(
        config,
        device,
        held_out_samples=lambda total: max(1, int((total or 0) * USER_TEST_SHARE)),
        test_split=True,
    )
    if data.held_out_inputs is not None and data.held_out_labels is not None:
        return data, EvaluationSet(data.held_out_inputs, data.held_out_labels)
    held = data.held_out_batches(EvaluationSet.batch_size)
    if not held:
        raise SpecError(f"dataset {config.dataset!r} has no samples left to test on.")
    return data, EvaluationSet(given=tuple(held))


def _title(config: TrainConfig) -> str:
    optimizer = describe_optimizer(
        config.optimizer, config.momentum, config.weight_decay, config.optimizer_args or {}
    )
    return (
        f"{config.model} on {config.dataset}: {optimizer}, batch {config.batch_size}, "
        f"{config.epochs} epochs, seed {config.seed}"
    )


HISTORY_COLUMNS = (
    "schedule",
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
)


def write_history_csv(path: Path, runs: list[ScheduleRun]) -> None:
    rows = [
        [run.name, *(dataclasses.asdict(record)[column] for column in HISTORY_COLUMNS[1:])]
        for run in runs
        for record in run.history
    ]
    write_csv(path, HISTORY_COLUMNS, rows)
