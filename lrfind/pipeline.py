"""`lrfind run` as a function: config in, run folder and result out.

    from lrfind.config import RunConfig
    from lrfind.pipeline import run
    outcome = run(RunConfig(model="mlp", steps=200))

Stages, each a plain value to the next: resolve specs -> load data -> build model and
optimizer -> sweep (lrfind.sweep) -> analysis -> write outputs (lrfind.export). Everything
that can be checked without work (options, specs, the run folder) is checked first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrfind import data as datasets
from lrfind import models
from lrfind.config import RunConfig, SweepSettings, TrainConfig
from lrfind.environment import environment_summary, resolve_device
from lrfind.errors import ConfigError, SpecError
from lrfind.export import check_run_folder, staged_run_folder, write_json
from lrfind.plan import SearchOutcome, search
from lrfind.report import (
    RESULT_FORMAT_VERSION,
    AnalysedCurve,
    recommendation_document,
    sweep_document,
    write_outputs,
)
from lrfind.stacked import memory_problem, stack_problem, stacked_range_tests
from lrfind.sweep import RangeTestResult, StepRecord, distributed_rank, range_test


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
class PreparedData:
    loader_for: Callable[[int], Iterable[Any]]  # training batches in the order of a seed
    val_batches: list[Any]  # held out from training; empty unless --val-batches
    sample_inputs: torch.Tensor  # two inputs, on the device, for the shape check
    input_shape: tuple[int, ...]
    num_classes: int | None
    steps_per_epoch: int
    description: dict[str, Any]


def default_out(
    config: RunConfig | TrainConfig, now: datetime | None = None, prefix: str = ""
) -> Path:
    """runs/<prefix><model>-<dataset>-<timestamp>: a new folder for every run."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{_slug(config.model)}-{_slug(config.dataset)}-{stamp}"


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
) -> RunOutcome:
    """Run the plan and write the run folder. When `stop_requested` answers True mid-sweep,
    the plan stops there and what was recorded is written, marked `interrupted`.
    `on_sweep(repeats, settings)` announces each sweep as it starts: (0,) the full sweep,
    (2,) repeat 2, (1, 2, 3, 4, 5) the repeats stacked into one run.

    Under torchrun every rank runs this; rank 0 alone writes the folder (see
    `distributed_group`)."""
    with distributed_group(resolve_device(config.device), config.batch_size) as device:
        return _run(config, device, on_stage, on_step, on_sweep, stop_requested)


@contextlib.contextmanager
def distributed_group(device: torch.device, batch_size: int) -> Iterator[torch.device]:
    """Under torchrun (WORLD_SIZE > 1), join the process group for the run: gloo on CPU,
    NCCL on CUDA with one GPU per rank (LOCAL_RANK). Yields the device this rank uses."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or torch.distributed.is_initialized():
        yield device
        return
    if batch_size % world:
        raise ConfigError(
            f"batch_size {batch_size} does not split evenly over {world} ranks; each rank "
            f"trains on an equal shard of every batch. Use a multiple of {world}."
        )
    backend = "gloo"
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    torch.distributed.init_process_group(backend)
    try:
        yield device
    finally:
        torch.distributed.destroy_process_group()


def _run(
    config: RunConfig,
    device: torch.device,
    on_stage: Callable[[str], None] | None,
    on_step: Callable[[StepRecord], None] | None,
    on_sweep: Callable[[tuple[int, ...], SweepSettings], None] | None,
    stop_requested: Callable[[], bool] | None,
) -> RunOutcome:
    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    started = time.perf_counter()
    timings: dict[str, float] = {}
    datasets.check_dataset_spec(config.dataset)
    models.check_model_spec(config.model)
    if config.weights is not None and not config.weights.is_file():
        raise SpecError(f"--weights {config.weights} does not exist. Check the checkpoint path.")
    out = config.out or default_out(config)
    check_run_folder(out, config.overwrite)
    rank = distributed_rank()[0]

    stage("loading data")
    clock = time.perf_counter()
    # The first optimizer imports torch._dynamo (about 1 s here), which reading and
    # decompressing local files leaves time for. Not beside user code or a torchvision
    # download, whose own imports could deadlock with it.
    local_files = config.dataset in datasets.BUILTIN_DATASETS and datasets.locate(
        datasets.BUILTIN_DATASETS[config.dataset], config.data_dir
    )
    with _importing_meanwhile("torch._dynamo") if local_files else contextlib.nullcontext():
        prepared = _prepare_data(config, device)
    timings["load_data_s"] = time.perf_counter() - clock

    stage("building model")
    clock = time.perf_counter()
    memory_baseline = _start_gpu_peak(device)
    model = _seeded_model(config, prepared, config.seed).to(device)
    models.check_model_fits(model, prepared.sample_inputs, prepared.num_classes, config.model)
    model = _fast_model(config, model, device)
    optimizer = build_optimizer(config, model.parameters(), config.start_lr)
    timings["build_model_s"] = time.perf_counter() - clock

    stage("sweeping")

    def run_sweep(repeat: int, settings: SweepSettings) -> RangeTestResult:
        """Repeat 0 is the full sweep; each repeat draws new weights and a new data order."""
        seed = config.seed + repeat
        sweep_model, sweep_optimizer = model, optimizer
        if repeat:
            sweep_model = _seeded_model(config, prepared, seed).to(device)
            sweep_model = _fast_model(config, sweep_model, device)
            sweep_optimizer = build_optimizer(config, sweep_model.parameters(), config.start_lr)
        if on_sweep is not None:
            on_sweep((repeat,), settings)
        return range_test(
            sweep_model,
            sweep_optimizer,
            nn.CrossEntropyLoss(),
            prepared.loader_for(seed),
            **dataclasses.asdict(settings),
            method=config.method,
            seed=seed,
            device=device,
            val_batches=prepared.val_batches,
            callback=on_step,
            stop_requested=stop_requested,
            precision=config.precision,
            accumulate=config.accumulate,
            channels_last=config.channels_last,
        )

    try_stacking, stack_note = _stack_choice(config, model, prepared, device)
    stack_notes = [] if stack_note is None else [stack_note]
    stacked_results: list[RangeTestResult] = []

    def run_stacked(repeats: list[int], settings: SweepSettings) -> list[RangeTestResult] | None:
        """All repeats in one run: the same seeds, weights and data orders as one by one.
        None (run them one by one) where they would not fit in GPU memory."""
        if memory_baseline is not None and config.stack_repeats == "auto":
            problem = _stacked_memory_problem(len(repeats), memory_baseline, device)
            if problem is not None:
                stack_notes.append(f"The repeats ran one after another, not stacked: {problem}.")
                return None
        seeds = [config.seed + repeat for repeat in repeats]
        if on_sweep is not None:
            on_sweep(tuple(repeats), settings)
        try:
            results = stacked_range_tests(
                [_seeded_model(config, prepared, seed) for seed in seeds],
                lambda tensors: build_optimizer(config, tensors, config.start_lr),
                nn.CrossEntropyLoss(),
                [prepared.loader_for(seed) for seed in seeds],
                settings,
                device=device,
                method=config.method,
                seed=seeds[0],
                val_batches=prepared.val_batches,
                callback=on_step,
                stop_requested=stop_requested,
                precision=config.precision,
                accumulate=config.accumulate,
            )
        except torch.cuda.OutOfMemoryError:
            results = None
        if results is None:  # out of the except block, so the failed run's tensors are free
            torch.cuda.empty_cache()
            stack_notes.append(
                "The stacked repeats ran out of GPU memory; they ran one after another instead."
            )
            return None
        stacked_results.extend(results)
        return results

    outcome = search(
        run_sweep,
        config.sweep_settings(),
        config.search_settings(),
        config.method,
        run_repeats=run_stacked if try_stacking else None,
    )
    outcome = dataclasses.replace(outcome, notes=[*outcome.notes, *stack_notes])
    repeats_stacked = bool(stacked_results)  # a declined stacked run left it empty
    timings["sweep_s"] = sum(sweep.result.sweep_seconds for sweep in outcome.sweeps)

    stage("writing results")
    clock = time.perf_counter()
    if rank != 0:  # under torchrun, rank 0 writes; the others ran the same curve
        timings["total_s"] = time.perf_counter() - started
        document = result_document(
            config, out, outcome, prepared, model, device, timings, stacked=repeats_stacked
        )
        return RunOutcome(out=out, search=outcome, document=document)
    with staged_run_folder(out, config.overwrite) as staging:
        write_outputs(
            staging,
            search_curves(outcome),
            outcome.recommendation,
            _plot_title(config),
            log_x=config.mode == "exp",
        )
        timings["write_s"] = time.perf_counter() - clock
        timings["total_s"] = time.perf_counter() - started
        document = result_document(
            config, out, outcome, prepared, model, device, timings, stacked=repeats_stacked
        )
        write_json(staging / "result.json", document)
    return RunOutcome(out=out, search=outcome, document=document)


@contextlib.contextmanager
def _importing_meanwhile(module: str) -> Iterator[None]:
    """Import `module` in a background thread while the block runs, and wait for it at the
    end of the block (so no import is left racing the code after it). A failure is left for
    the code that imports it for real to report. This pays only beside work that releases
    the GIL: beside the sweeps, importing matplotlib slowed them by as much as it saved."""
    worker = threading.Thread(target=_import_quietly, args=(module,), daemon=True)
    worker.start()
    try:
        yield
    finally:
        worker.join()


def _import_quietly(module: str) -> None:
    with contextlib.suppress(Exception):
        importlib.import_module(module)


def search_curves(outcome: SearchOutcome) -> list[AnalysedCurve]:
    return [
        AnalysedCurve(sweep.repeat, sweep.result.analysis, sweep.result.val_losses)
        for sweep in outcome.sweeps
    ]


def _stack_choice(
    config: RunConfig, model: nn.Module, prepared: PreparedData, device: torch.device
) -> tuple[bool, str | None]:
    """Whether the repeats run stacked (lrfind.stacked) and, where --stack-repeats auto had a
    GPU but could not stack them, a note saying why. `on` that cannot stack is an error."""
    if config.repeats == 0 or config.stack_repeats == "off":
        return False, None
    if config.stack_repeats == "auto" and device.type != "cuda":
        return False, None
    problem = config.stacking_conflict()
    if problem is None and distributed_rank()[1] > 1:
        problem = "torchrun (every rank already trains its own shard)"
    if problem is None:
        problem = stack_problem(model, prepared.sample_inputs)
    if problem is None:
        return True, None
    if config.stack_repeats == "on":
        raise ConfigError(
            f"--stack-repeats on: the repeats cannot be stacked because of {problem}. "
            "Use --stack-repeats off to run them one after another."
        )
    return False, f"The repeats ran one after another, not stacked, because of {problem}."


def _start_gpu_peak(device: torch.device) -> int | None:
    """On CUDA, start measuring the peak memory of what follows; the bytes already in use."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _stacked_memory_problem(copies: int, baseline: int, device: torch.device) -> str | None:
    """Whether `copies` stacked copies of what the full sweep used since `baseline` (one
    model, its optimizer and activations) fit in the GPU memory still free."""
    bytes_per_copy = torch.cuda.max_memory_allocated(device) - baseline
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return memory_problem(copies, bytes_per_copy, free)


def _fast_model(config: RunConfig, model: nn.Module, device: torch.device) -> nn.Module:
    """--channels-last, --compile and, under torchrun, DistributedDataParallel; applied after
    the fit check on the plain model."""
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if distributed_rank()[1] > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def _seeded_model(config: RunConfig, prepared: PreparedData, seed: int) -> nn.Module:
    """The model as a sweep starts from: seeded initial weights, or the --weights checkpoint
    (then every repeat starts from it and differs only in data order)."""
    model = models.seeded_model(config.model, prepared.input_shape, prepared.num_classes or 0, seed)
    if config.weights is not None:
        models.load_weights(model, config.weights)
    return model


def _prepare_data(config: RunConfig, device: torch.device) -> PreparedData:
    if config.dataset in datasets.BUILTIN_DATASETS:
        image_data = datasets.load_builtin(config.dataset, config.data_dir, config.download)
        held_out = _held_out_count(config, len(image_data))
        kept = len(image_data) - held_out
        training = dataclasses.replace(  # moved to the device once, not once per repeat
            image_data,
            images=image_data.images[:kept].to(device),
            labels=image_data.labels[:kept].to(device),
        )
        batches = datasets.TensorBatches(training, config.batch_size, config.seed, device)
        val_batches = [
            (
                batches.normalize(image_data.images[start : start + config.batch_size].to(device)),
                image_data.labels[start : start + config.batch_size].to(device),
            )
            for start in range(len(training), len(image_data), config.batch_size)
        ]
        return PreparedData(
            loader_for=lambda seed: datasets.TensorBatches(
                training, config.batch_size, seed, device
            ),
            val_batches=val_batches,
            sample_inputs=batches.normalize(batches.images[:2]),
            input_shape=image_data.input_shape,
            num_classes=image_data.num_classes,
            steps_per_epoch=len(batches),
            description={
                "dataset": config.dataset,
                "source": image_data.source,
                "samples": len(image_data),
                "held_out_samples": held_out,
                "input_shape": list(image_data.input_shape),
                "num_classes": image_data.num_classes,
                "pixel_mean": image_data.mean,
                "pixel_std": image_data.std,
            },
        )
    user_data = datasets.load_user_dataset(config.dataset)
    total = len(user_data.dataset)
    held_out = _held_out_count(config, total)
    training_data, held_out_set = datasets.split_tail(user_data, held_out)
    loader = datasets.user_loader(training_data, config.batch_size, config.seed)
    sample = torch.stack(
        [torch.as_tensor(user_data.dataset[index][0]) for index in range(min(2, total))]
    ).to(device)
    return PreparedData(
        loader_for=lambda seed: datasets.user_loader(training_data, config.batch_size, seed),
        val_batches=list(torch.utils.data.DataLoader(held_out_set, batch_size=config.batch_size)),
        sample_inputs=sample,
        input_shape=user_data.input_shape,
        num_classes=user_data.num_classes,
        steps_per_epoch=len(loader),
        description={
            "dataset": config.dataset,
            "source": config.dataset,
            "samples": total,
            "held_out_samples": held_out,
            "input_shape": list(user_data.input_shape),
            "num_classes": user_data.num_classes,
        },
    )


def _held_out_count(config: RunConfig, samples: int) -> int:
    """Samples set aside for --val-batches, from the end of the training split."""
    held_out = config.val_batches * config.batch_size
    if held_out and samples - held_out < config.batch_size:
        raise ConfigError(
            f"--val-batches {config.val_batches} holds out {held_out} of the dataset's "
            f"{samples} samples, leaving less than one training batch of {config.batch_size}. "
            "Use fewer --val-batches or a smaller --batch-size."
        )
    return held_out


def build_optimizer(
    config: RunConfig | TrainConfig, parameters: Iterable[torch.Tensor], lr: float
) -> torch.optim.Optimizer:
    """The optimizer the config names, at `lr` (the sweep or the schedule then sets it)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay)


def _plot_title(config: RunConfig) -> str:
    optimizer = config.optimizer
    if config.momentum:
        optimizer += f" (momentum {config.momentum:g})"
    return (
        f"LR range test: {config.model} on {config.dataset}\n"
        f"{optimizer}, batch {config.batch_size}, seed {config.seed}"
    )


def result_document(
    config: RunConfig,
    out: Path,
    outcome: SearchOutcome,
    prepared: PreparedData,
    model: nn.Module,
    device: torch.device,
    timings: dict[str, float],
    *,
    stacked: bool = False,
) -> dict[str, Any]:
    main = outcome.main
    steps_run = outcome.steps_run
    return {
        "format_version": RESULT_FORMAT_VERSION,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "interrupted": outcome.interrupted,
        "config": {**config.to_dict(), "out": str(out)},
        "environment": environment_summary(device),
        "data": {**prepared.description, "steps_per_epoch": prepared.steps_per_epoch},
        "model": {
            "spec": config.model,
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
        },
        "sweep": sweep_document(main.analysis, main.settings.steps, main.stop_reason),
        "repeats": [
            {
                "repeat": sweep.repeat,
                "seed": config.seed + sweep.repeat,
                **sweep_document(
                    sweep.result.analysis, sweep.result.settings.steps, sweep.result.stop_reason
                ),
            }
            for sweep in outcome.sweeps[1:]
        ],
        "steps_total": steps_run,
        "repeats_stacked": stacked,  # trained as one run (lrfind.stacked)
        "skipped_steps": sum(sweep.result.skipped_steps for sweep in outcome.sweeps),
        "timings": {**timings, "seconds_per_step": timings["sweep_s"] / max(steps_run, 1)},
        "recommendation": recommendation_document(
            outcome.recommendation,
            outcome.notes + main.analysis.diagnostics,
            prepared.steps_per_epoch,
        ),
    }
