"""Train under a schedule to verify recommended bounds: the engine of `lrfind train`.

    lrfind train --config configs/lenet-onecycle.yaml --schedule triangular --baseline constant

`train_epochs` is the loop (also used by `scripts/bench_quality.py`); the scheduler is stepped
once per optimizer step, as cyclic and one-cycle schedules expect. `run_training` trains one
model per schedule from the same seed and writes history.csv, history.png and train.json.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import torch

from lrfind import data as datasets
from lrfind import models
from lrfind.config import TrainConfig, check_result_matches
from lrfind.environment import environment_summary, resolve_device
from lrfind.errors import SpecError
from lrfind.export import (
    HistoryLines,
    check_run_folder,
    read_result,
    render_history,
    staged_run_folder,
    write_atomic,
    write_json,
)
from lrfind.pipeline import build_optimizer, default_out
from lrfind.pipeline import run as run_sweep
from lrfind.schedules import (
    Bounds,
    check_kind,
    check_section,
    schedule_section,
    scheduler_from_section,
)
from lrfind.sweep import LossFunction, StepRecord
from lrfind.tensorboard import check_tensorboard, write_training_scalars


class SizedBatches(Iterable[tuple[torch.Tensor, torch.Tensor]], Sized, Protocol):
    pass


@dataclass(frozen=True)
class EvaluationSet:
    """Held-out inputs, already normalised like the training batches, and their labels."""

    inputs: torch.Tensor
    labels: torch.Tensor
    batch_size: int = 1000  # large batches: evaluation has no gradients to keep


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    lr: float  # the LR of the last step of the epoch
    train_loss: float  # mean over the epoch's batches, as trained (not re-evaluated)
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None


def evaluate(
    model: torch.nn.Module, loss_fn: LossFunction, data: EvaluationSet
) -> tuple[float, float]:
    """Mean loss and accuracy on `data`, in eval mode and without gradients."""
    was_training = model.training
    model.eval()
    total_loss = 0.0
    correct = 0
    count = len(data.labels)
    with torch.no_grad():
        for start in range(0, count, data.batch_size):
            inputs = data.inputs[start : start + data.batch_size]
            labels = data.labels[start : start + data.batch_size]
            outputs = model(inputs)
            total_loss += float(loss_fn(outputs, labels)) * len(labels)
            correct += int((outputs.argmax(dim=1) == labels).sum())
    model.train(was_training)
    return total_loss / count, correct / count


def train_epochs(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFunction,
    batches: SizedBatches,
    *,
    epochs: int,
    scheduler: Any = None,
    test: EvaluationSet | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
) -> list[EpochRecord]:
    """Train for `epochs` passes over `batches`; a non-finite loss ends training early.

    A run that blew up is reported, not raised: its remaining epochs are not trained and its
    test metrics are those of the broken model (chance accuracy), which is the honest score
    of the rate that caused it. `on_step(step, lr, loss)` sees the LR each step trained with.
    """
    history: list[EpochRecord] = []
    model.train()
    step = 0
    lr = float(optimizer.param_groups[0]["lr"])
    for epoch in range(1, epochs + 1):
        total_loss = 0.0
        correct = 0
        seen = 0
        finite = True
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            outputs = model(inputs)
            loss = loss_fn(outputs, labels)
            loss.backward()
            lr = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            value = float(loss.detach())
            if on_step is not None:
                on_step(step, lr, value)
            step += 1
            if not math.isfinite(value):
                finite = False
                break
            total_loss += value * len(labels)
            correct += int((outputs.detach().argmax(dim=1) == labels).sum())
            seen += len(labels)
        test_loss, test_accuracy = (None, None) if test is None else evaluate(model, loss_fn, test)
        record = EpochRecord(
            epoch=epoch,
            lr=lr,
            train_loss=total_loss / seen if finite and seen else float("nan"),
            train_accuracy=correct / seen if seen else 0.0,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if not finite:
            break
    return history


# ---------------------------------------------------------------------------------------------
# `lrfind train`: bounds -> schedules -> trained models -> history.csv, history.png, train.json


BASELINE = "constant"  # the schedule `--baseline constant` adds


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
class TrainingData:
    batches_for: Callable[[int], SizedBatches]  # training batches in the order of a seed
    test: EvaluationSet
    input_shape: tuple[int, ...]
    num_classes: int
    test_source: str


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

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    started = time.perf_counter()
    for kind in kinds:
        check_kind(kind)
    datasets.check_dataset_spec(config.dataset)
    models.check_model_spec(config.model)
    if tensorboard is not None:
        check_tensorboard()  # a missing extra fails before any work
    out = config.out or default_out(config, prefix="train-")
    check_run_folder(out, config.overwrite)
    result_document: dict[str, Any] | None = None
    if config.result is not None:
        result_document = read_result(config.result)
        if not force and isinstance(result_document.get("config"), dict):
            check_result_matches(
                result_document["config"], config.to_dict(), config.result, "training config"
            )
    device = resolve_device(config.device)

    with staged_run_folder(out, config.overwrite) as staging:
        stage("loading data")
        data = _training_data(config, device)
        steps_per_epoch = len(data.batches_for(config.seed))
        wanted = list(dict.fromkeys([*kinds, *([BASELINE] if baseline else [])]))
        sections = _sections_from_config(config, wanted)
        if config.lr is not None and BASELINE in wanted:
            sections[BASELINE] = {"kind": BASELINE, "lr": config.lr}
        missing = [kind for kind in wanted if kind not in sections]
        bounds_source = "the training config"
        if missing and result_document is None:
            stage("sweeping")
            sweep = run_sweep(config.sweep_config(staging / "sweep"), on_step=on_sweep_step)
            result_document = sweep.document
            bounds_source = f"a fresh sweep ({out / 'sweep' / 'result.json'})"
        elif missing:
            bounds_source = str(config.result)
        if missing:
            assert result_document is not None
            bounds = Bounds.of(result_document)
            for kind in missing:
                sections[kind] = schedule_section(kind, bounds, steps_per_epoch, config.epochs)
        runs = []
        for name in wanted:
            stage(f"training {name}")
            runs.append(
                _train_schedule(config, data, name, sections[name], device, on_step, on_epoch)
            )
            if tensorboard is not None:
                write_training_scalars(tensorboard / out.name / name, runs[-1])
        stage("writing results")
        write_history_csv(staging / "history.csv", runs)
        render_history(staging / "history.png", [run.lines() for run in runs], _title(config))
        document = {
            "format_version": 1,
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "config": {**config.to_dict(), "out": str(out)},
            "environment": environment_summary(device),
            "bounds_source": bounds_source,
            "steps_per_epoch": steps_per_epoch,
            "test_set": data.test_source,
            "schedules": {
                run.name: {
                    "parameters": run.section,
                    "final": dataclasses.asdict(run.final),
                    "best_test_accuracy": max(
                        (record.test_accuracy or 0.0) for record in run.history
                    ),
                    "seconds": run.seconds,
                }
                for run in runs
            },
            "total_s": time.perf_counter() - started,
        }
        write_json(staging / "train.json", document)
    return TrainingOutcome(out=out, runs=runs, bounds_source=bounds_source, document=document)


def _sections_from_config(config: TrainConfig, kinds: list[str]) -> dict[str, dict[str, Any]]:
    """The config's schedule, when it is complete and of a kind asked for; else nothing, and
    the bounds come from a result. A section with only a `kind` is a request, not an error."""
    section = config.scheduler
    if section is None or section.get("kind") not in kinds:
        return {}
    if set(section) == {"kind"}:
        return {}
    return {section["kind"]: check_section(section, "scheduler in the training config")}


def _train_schedule(
    config: TrainConfig,
    data: TrainingData,
    name: str,
    section: dict[str, Any],
    device: torch.device,
    on_step: Callable[[str, int, int, float, float], None] | None,
    on_epoch: Callable[[str, EpochRecord], None] | None,
) -> ScheduleRun:
    model = models.seeded_model(config.model, data.input_shape, data.num_classes, config.seed)
    model = model.to(device)
    # every schedule sets the rate it starts at; the 1.0 placeholder is never trained with
    optimizer = build_optimizer(config, model.parameters(), lr=1.0)
    batches = data.batches_for(config.seed)  # the same data order for every schedule
    steps_per_epoch = len(batches)
    scheduler = scheduler_from_section(optimizer, section, steps_per_epoch, config.epochs)
    total = steps_per_epoch * config.epochs
    step_lrs: list[float] = []

    def record_step(step: int, lr: float, loss: float) -> None:
        step_lrs.append(lr)
        if on_step is not None:
            on_step(name, step, total, lr, loss)

    clock = time.perf_counter()
    history = train_epochs(
        model,
        optimizer,
        torch.nn.CrossEntropyLoss(),
        batches,
        epochs=config.epochs,
        scheduler=scheduler,
        test=data.test,
        on_epoch=None if on_epoch is None else (lambda record: on_epoch(name, record)),
        on_step=record_step,
    )
    return ScheduleRun(
        name, dict(section), history, step_lrs, steps_per_epoch, time.perf_counter() - clock
    )


# Share of a user dataset held out as the test set; built-in datasets use their test split.
USER_TEST_SHARE = 0.1


def _training_data(config: TrainConfig, device: torch.device) -> TrainingData:
    if config.dataset in datasets.BUILTIN_DATASETS:
        train = datasets.load_builtin(config.dataset, config.data_dir, config.download)
        test = datasets.load_builtin(config.dataset, config.data_dir, config.download, split="test")
        train = dataclasses.replace(  # moved to the device once, not once per schedule
            train, images=train.images.to(device), labels=train.labels.to(device)
        )
        batches = datasets.TensorBatches(train, config.batch_size, config.seed, device)
        return TrainingData(
            batches_for=lambda seed: datasets.TensorBatches(train, config.batch_size, seed, device),
            test=EvaluationSet(batches.normalize(test.images.to(device)), test.labels.to(device)),
            input_shape=train.input_shape,
            num_classes=train.num_classes,
            test_source=f"{test.source} (test split, {len(test)} samples)",
        )
    user_data = datasets.load_user_dataset(config.dataset)
    total = len(user_data.dataset)
    held_out = max(1, int(total * USER_TEST_SHARE))
    if user_data.num_classes is None:
        raise SpecError(
            f"dataset {config.dataset!r} does not say how many classes it has; give it a "
            "`classes` or `targets` attribute so accuracy can be measured."
        )
    training, test_set = datasets.split_tail(user_data, held_out)
    pairs = [test_set[index] for index in range(held_out)]
    inputs = torch.stack([torch.as_tensor(pair[0]) for pair in pairs]).to(device)
    labels = torch.as_tensor([int(pair[1]) for pair in pairs]).to(device)
    return TrainingData(
        batches_for=lambda seed: datasets.user_loader(training, config.batch_size, seed),
        test=EvaluationSet(inputs.float(), labels),
        input_shape=user_data.input_shape,
        num_classes=user_data.num_classes,
        test_source=f"the last {held_out} of {total} samples of {config.dataset}",
    )


def _title(config: TrainConfig) -> str:
    return (
        f"{config.model} on {config.dataset}: {config.optimizer}, batch {config.batch_size}, "
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
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for run in runs:
        for record in run.history:
            row = dataclasses.asdict(record)
            writer.writerow([run.name, *(_cell(row[column]) for column in HISTORY_COLUMNS[1:])])
    write_atomic(path, buffer.getvalue().encode())


def _cell(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value)
