"""`lrfind run` as a function: config in, run folder and result out.

    from lrfind.config import RunConfig
    from lrfind.pipeline import run
    outcome = run(RunConfig(model="mlp", steps=200))

Stages, each a plain value to the next: resolve specs -> load data -> build model and
optimizer -> sweep (lrfind.sweep) -> analysis -> write outputs (lrfind.export). Everything
that can be checked without work (options, specs, the run folder) is checked first.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrfind import data as datasets
from lrfind import models
from lrfind.config import RunConfig
from lrfind.environment import environment_summary, resolve_device
from lrfind.export import (
    PlotMarks,
    check_run_folder,
    render_plot,
    staged_run_folder,
    write_json,
    write_sweep_csv,
)
from lrfind.schedules import schedule_parameters
from lrfind.sweep import RangeTestResult, StepRecord, range_test

RESULT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunOutcome:
    out: Path
    result: RangeTestResult
    document: dict[str, Any]  # the content of result.json


@dataclass(frozen=True)
class PreparedData:
    loader: Iterable[Any]
    sample_inputs: torch.Tensor  # two inputs, on the device, for the shape check
    input_shape: tuple[int, ...]
    num_classes: int | None
    steps_per_epoch: int
    description: dict[str, Any]


def default_out(config: RunConfig, now: datetime | None = None) -> Path:
    """runs/<model>-<dataset>-<timestamp>: a new folder for every run, never a collision."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{_slug(config.model)}-{_slug(config.dataset)}-{stamp}"


def _slug(spec: str) -> str:
    name = spec.rpartition(":")[2] if ":" in spec else spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem or name).strip("-") or "run"


def run(
    config: RunConfig,
    *,
    on_stage: Callable[[str], None] | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
) -> RunOutcome:
    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    started = time.perf_counter()
    timings: dict[str, float] = {}
    datasets.check_dataset_spec(config.dataset)
    models.check_model_spec(config.model)
    out = config.out or default_out(config)
    check_run_folder(out, config.overwrite)
    device = resolve_device(config.device)

    stage("loading data")
    clock = time.perf_counter()
    prepared = _prepare_data(config, device)
    timings["load_data_s"] = time.perf_counter() - clock

    stage("building model")
    clock = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = models.build_model(config.model, prepared.input_shape, prepared.num_classes or 0)
    model.to(device)
    models.check_model_fits(model, prepared.sample_inputs, prepared.num_classes, config.model)
    optimizer = build_optimizer(config, model.parameters())
    timings["build_model_s"] = time.perf_counter() - clock

    stage("sweeping")
    result = range_test(
        model,
        optimizer,
        nn.CrossEntropyLoss(),
        prepared.loader,
        **dataclasses.asdict(config.sweep_settings()),
        method=config.method,
        seed=config.seed,
        device=device,
        callback=on_step,
    )
    timings["sweep_s"] = result.sweep_seconds

    stage("writing results")
    clock = time.perf_counter()
    with staged_run_folder(out, config.overwrite) as staging:
        write_outputs(staging, result, title=_plot_title(config))
        timings["write_s"] = time.perf_counter() - clock
        timings["total_s"] = time.perf_counter() - started
        document = result_document(config, out, result, prepared, model, device, timings)
        write_json(staging / "result.json", document)
    return RunOutcome(out=out, result=result, document=document)


def _prepare_data(config: RunConfig, device: torch.device) -> PreparedData:
    if config.dataset in datasets.BUILTIN_DATASETS:
        image_data = datasets.load_builtin(config.dataset, config.data_dir, config.download)
        batches = datasets.TensorBatches(image_data, config.batch_size, config.seed, device)
        sample = batches.normalize(batches.images[:2])
        return PreparedData(
            loader=batches,
            sample_inputs=sample,
            input_shape=image_data.input_shape,
            num_classes=image_data.num_classes,
            steps_per_epoch=len(batches),
            description={
                "dataset": config.dataset,
                "source": image_data.source,
                "samples": len(image_data),
                "input_shape": list(image_data.input_shape),
                "num_classes": image_data.num_classes,
                "pixel_mean": image_data.mean,
                "pixel_std": image_data.std,
            },
        )
    user_data = datasets.load_user_dataset(config.dataset)
    loader = datasets.user_loader(user_data, config.batch_size, config.seed)
    sample = torch.stack(
        [
            torch.as_tensor(user_data.dataset[index][0])
            for index in range(min(2, len(user_data.dataset)))
        ]
    ).to(device)
    return PreparedData(
        loader=loader,
        sample_inputs=sample,
        input_shape=user_data.input_shape,
        num_classes=user_data.num_classes,
        steps_per_epoch=len(loader),
        description={
            "dataset": config.dataset,
            "source": config.dataset,
            "samples": len(user_data.dataset),
            "input_shape": list(user_data.input_shape),
            "num_classes": user_data.num_classes,
        },
    )


def build_optimizer(config: RunConfig, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer named by the config, starting at start_lr (the sweep sets every LR)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.start_lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.start_lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.start_lr, weight_decay=config.weight_decay)


def _plot_title(config: RunConfig) -> str:
    optimizer = config.optimizer
    if config.momentum:
        optimizer += f" (momentum {config.momentum:g})"
    return (
        f"LR range test: {config.model} on {config.dataset}\n"
        f"{optimizer}, batch {config.batch_size}, seed {config.seed}"
    )


def write_outputs(folder: Path, result: RangeTestResult, title: str) -> None:
    """sweep.csv and sweep.png for one range test."""
    analysis = result.analysis
    write_sweep_csv(folder / "sweep.csv", analysis.lrs, analysis.losses, analysis.smoothed)
    recommendation = analysis.recommendation
    divergence = analysis.divergence_index
    marks = PlotMarks(
        base_lr=None if recommendation is None else recommendation.base_lr,
        max_lr=None if recommendation is None else recommendation.max_lr,
        divergence_lr=analysis.divergence_lr,
        divergence_loss=None if divergence is None else float(analysis.losses[divergence]),
    )
    render_plot(
        folder / "sweep.png",
        analysis.lrs,
        analysis.losses,
        analysis.smoothed,
        marks,
        title,
        log_x=result.settings.mode == "exp",
    )


def recommendation_document(result: RangeTestResult, steps_per_epoch: int | None) -> dict[str, Any]:
    """The `recommendation` block of result.json, with schedules and diagnostics."""
    analysis = result.analysis
    recommendation = analysis.recommendation
    if recommendation is None:
        return {
            "base_lr": None,
            "max_lr": None,
            "lr": None,
            "method": None,
            "confidence": "none",
            "confidence_reasons": ["the curve holds no usable descent to read a rate from"],
            "schedules": None,
            "diagnostics": analysis.diagnostics,
        }
    return {
        **recommendation.to_dict(),
        "schedules": schedule_parameters(
            recommendation.base_lr, recommendation.max_lr, recommendation.lr, steps_per_epoch
        ),
        "diagnostics": analysis.diagnostics,
    }


def result_document(
    config: RunConfig,
    out: Path,
    result: RangeTestResult,
    prepared: PreparedData,
    model: nn.Module,
    device: torch.device,
    timings: dict[str, float],
) -> dict[str, Any]:
    analysis = result.analysis
    steps_run = len(result.records)
    usable = analysis.usable_points
    return {
        "format_version": RESULT_FORMAT_VERSION,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": {**config.to_dict(), "out": str(out)},
        "environment": environment_summary(device),
        "data": {**prepared.description, "steps_per_epoch": prepared.steps_per_epoch},
        "model": {
            "spec": config.model,
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
        },
        "sweep": {
            "steps_planned": config.steps,
            "steps_run": steps_run,
            "stop_reason": result.stop_reason,
            "first_lr": float(analysis.lrs[0]),
            "last_lr": float(analysis.lrs[-1]),
            "divergence_step": analysis.divergence_index,
            "divergence_lr": analysis.divergence_lr,
            "min_smoothed_loss": float(analysis.smoothed[analysis.min_index]),
            "min_smoothed_loss_lr": float(analysis.lrs[analysis.min_index]),
            "first_loss": float(analysis.losses[0]),
            "usable_points": usable,
        },
        "timings": {**timings, "seconds_per_step": result.sweep_seconds / max(steps_run, 1)},
        "recommendation": recommendation_document(result, prepared.steps_per_epoch),
    }
