"""The LR range test engine: any model, optimizer, loss and loader.

    from lrfind import range_test
    result = range_test(model, optimizer, torch.nn.functional.cross_entropy, loader)
    result.recommendation.max_lr

The LR grows every mini-batch from start_lr to end_lr while the loss of each batch is
recorded; the sweep stops early once the loss diverges. The model's and optimizer's state
are restored afterwards (also on error), so the caller can train the same objects next.
The engine never prints: progress goes to `callback`, one `StepRecord` per step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lrfind.analysis import (
    METHODS,
    Analysis,
    DivergenceDetector,
    Recommendation,
    analyze,
    baseline_steps,
    non_finite_first_loss,
)
from lrfind.config import PRECISIONS, REPEATS, SweepSettings, check_choice
from lrfind.errors import SweepError
from lrfind.schedules import rate_ratios, sweep_lrs

if TYPE_CHECKING:
    from lrfind.plan import SearchOutcome

STOP_COMPLETED = "completed"  # every planned step ran
STOP_DIVERGED = "diverged"  # see analysis.DivergenceDetector
STOP_NON_FINITE = "non_finite"  # a loss was NaN or infinite
STOP_INTERRUPTED = "interrupted"  # stop_requested() said so (Ctrl-C, SIGTERM)

# fp16: a GradScaler skips steps whose gradients overflow; the LR holds while it finds its
# scale. This many skips in a row means the loss itself overflows: the sweep stops there.
MAX_SKIPPED_IN_A_ROW = 20


@dataclass(frozen=True)
class StepRecord:
    step: int
    lr: float
    loss: float
    smoothed_loss: float  # causal EMA, the value the divergence rule watches
    val_loss: float | None = None  # mean loss of the fixed held-out batches, when given


@dataclass(frozen=True)
class RangeTestResult:
    records: list[StepRecord]
    stop_reason: str
    settings: SweepSettings
    analysis: Analysis
    sweep_seconds: float
    skipped_steps: int = 0  # fp16 steps the GradScaler skipped (the LR did not advance)
    group_ratios: tuple[float, ...] = (1.0,)  # each parameter group's LR / the first group's

    @property
    def lrs(self) -> np.ndarray:
        return np.array([record.lr for record in self.records])

    @property
    def losses(self) -> np.ndarray:
        return np.array([record.loss for record in self.records])

    @property
    def val_losses(self) -> np.ndarray | None:
        if not self.records or self.records[0].val_loss is None:
            return None
        return np.array([record.val_loss for record in self.records], dtype=float)

    @property
    def recommendation(self) -> Recommendation | None:
        return self.analysis.recommendation


LossFunction = Callable[[Any, Any], torch.Tensor]


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFunction,
    train_loader: Iterable[Any],
    *,
    start_lr: float = SweepSettings.start_lr,
    end_lr: float = SweepSettings.end_lr,
    steps: int = SweepSettings.steps,
    mode: str = SweepSettings.mode,
    smoothing: float = SweepSettings.smoothing,
    divergence_factor: float = SweepSettings.divergence_factor,
    method: str = "bottom",
    seed: int | None = None,
    device: torch.device | str | None = None,
    val_batches: Sequence[Any] | None = None,
    callback: Callable[[StepRecord], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    precision: str = "fp32",
    accumulate: int = 1,
    channels_last: bool = False,
) -> RangeTestResult:
    """Run one LR range test and analyse it.

    `train_loader` yields `(inputs, targets)` batches and is re-iterated when it runs out.
    `val_batches`, a few fixed `(inputs, targets)` batches, are evaluated after every step
    (in eval mode, without gradients) to record a validation curve; the analysis stays on
    the training loss, which is what the rate acts on.
    `stop_requested` is asked after every step; when it answers True the sweep ends there
    (stop reason "interrupted") and what was recorded is analysed as usual.
    Several parameter groups keep their LR ratios to the first group, whose LR is recorded.
    `seed` seeds torch inside a forked RNG, so the caller's random state is left untouched.
    `device` defaults to the device of the model's first parameter.
    `precision` bf16 or fp16 runs forward and loss under autocast; fp16 adds a GradScaler, and
    a step it skips (overflowing gradients) does not advance the LR or record a point.
    `accumulate` N: each optimizer step (one LR) sums gradients over N batches, and the loss
    recorded is their mean. `channels_last` moves 4-D inputs to channels-last memory (the
    model should be converted too: `model.to(memory_format=torch.channels_last)`).
    Under torch.distributed (torchrun, the model wrapped in DistributedDataParallel), every
    rank takes its shard of each global batch and the recorded loss is the mean over ranks.
    """
    settings = SweepSettings(
        start_lr=start_lr,
        end_lr=end_lr,
        steps=steps,
        mode=mode,
        smoothing=smoothing,
        divergence_factor=divergence_factor,
    )
    check_sweep_options(method, precision, accumulate)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)

    group_ratios = rate_ratios([float(group.get("lr", 0.0)) for group in optimizer.param_groups])
    model_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    started = time.perf_counter()
    try:
        with seeded_rng(seed, device):
            records, stop_reason, skipped = _sweep(
                model,
                optimizer,
                loss_fn,
                train_loader,
                settings,
                device,
                val_batches,
                callback,
                stop_requested,
                _StepOptions(precision, accumulate, channels_last),
                group_ratios,
            )
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        model.train(was_training)
    return analysed_result(
        records,
        stop_reason,
        settings,
        method,
        time.perf_counter() - started,
        skipped_steps=skipped,
        group_ratios=group_ratios,
    )


def analysed_result(
    records: list[StepRecord],
    stop_reason: str,
    settings: SweepSettings,
    method: str,
    sweep_seconds: float,
    *,
    skipped_steps: int = 0,
    group_ratios: tuple[float, ...] = (1.0,),
) -> RangeTestResult:
    """One sweep's records, analysed as every engine reports them."""
    analysis = analyze(
        [record.lr for record in records],
        [record.loss for record in records],
        smoothing=settings.smoothing,
        divergence_factor=settings.divergence_factor,
        method=method,
        planned_steps=settings.steps,
    )
    return RangeTestResult(
        records=records,
        stop_reason=stop_reason,
        settings=settings,
        analysis=analysis,
        sweep_seconds=sweep_seconds,
        skipped_steps=skipped_steps,
        group_ratios=group_ratios,
    )


def check_sweep_options(method: str, precision: str, accumulate: int) -> None:
    check_choice("method", method, list(METHODS))
    check_choice("precision", precision, PRECISIONS)
    if not isinstance(accumulate, int) or accumulate < 1:
        raise SweepError(f"accumulate must be a positive integer; got {accumulate!r}.")


@dataclass(frozen=True)
class _StepOptions:
    precision: str
    accumulate: int
    channels_last: bool


def _sweep(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFunction,
    train_loader: Iterable[Any],
    settings: SweepSettings,
    device: torch.device,
    val_batches: Sequence[Any] | None,
    callback: Callable[[StepRecord], None] | None,
    stop_requested: Callable[[], bool] | None,
    options: _StepOptions,
    ratios: tuple[float, ...],
) -> tuple[list[StepRecord], str, int]:
    groups = optimizer.param_groups
    detector = DivergenceDetector(
        settings.smoothing, settings.divergence_factor, baseline_steps(settings.steps)
    )
    records: list[StepRecord] = []
    batches = endless_batches(train_loader)
    held_out = [to_device(batch, device) for batch in val_batches or ()]
    model.train()

    planned = sweep_lrs(settings.start_lr, settings.end_lr, settings.steps, settings.mode)
    rank, world = distributed_rank()
    forward_context = autocast_for(options.precision, device)
    scaler = torch.amp.GradScaler(device.type) if options.precision == "fp16" else None
    skipped = skipped_in_a_row = 0
    step = 0
    while step < len(planned):
        lr = planned[step]
        for group, ratio in zip(groups, ratios, strict=True):
            group["lr"] = lr * ratio
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for _ in range(options.accumulate):
            inputs, targets = to_device(next(batches), device, options.channels_last)
            if world > 1:  # every rank loads the global batch and trains on its shard
                inputs, targets = (
                    inputs.tensor_split(world)[rank],
                    targets.tensor_split(world)[rank],
                )
            with forward_context():
                loss = loss_fn(model(inputs), targets)
            part = loss.float() / options.accumulate
            (part if scaler is None else scaler.scale(part)).backward()
            loss_sum += part.detach()
        if scaler is None:
            optimizer.step()
        else:
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            if scaler.get_scale() < scale:  # overflowing gradients: nothing was trained
                skipped += 1
                skipped_in_a_row += 1
                if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                    if not records:
                        raise SweepError(
                            f"fp16 gradients overflowed on {skipped} tries at the first LR "
                            f"({lr:g}); the loss is too large for fp16. Use --precision bf16 "
                            "or fp32."
                        )
                    return records, STOP_NON_FINITE, skipped
                continue
            skipped_in_a_row = 0

        if world > 1:  # the mean over ranks: every rank sees the same curve and stops together
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= world
        value = float(loss_sum.item())
        if step == 0 and not math.isfinite(value):
            raise non_finite_first_loss(value, lr)
        smoothed, diverged = detector.update(value)
        val_loss = _held_out_loss(model, loss_fn, held_out) if held_out else None
        record = StepRecord(step, lr, value, smoothed, val_loss)
        records.append(record)
        step += 1
        if callback is not None:
            callback(record)
        if diverged:
            stop = STOP_NON_FINITE if not math.isfinite(value) else STOP_DIVERGED
            return records, stop, skipped
        if stop_requested is not None and stop_requested():
            return records, STOP_INTERRUPTED, skipped
    return records, STOP_COMPLETED, skipped


def autocast_for(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The context each forward pass runs in: autocast for bf16/fp16, nothing for fp32 (so
    fp32 steps do not enter a disabled autocast)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) inside an initialised torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _held_out_loss(
    model: torch.nn.Module, loss_fn: LossFunction, batches: list[tuple[Any, Any]]
) -> float:
    model.eval()
    with torch.no_grad():
        total = sum(float(loss_fn(model(inputs), targets)) for inputs, targets in batches)
    model.train()
    return total / len(batches)


def endless_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Batches forever: start the loader again whenever it runs out."""
    for epoch in itertools.count():
        produced = False
        for batch in loader:
            produced = True
            yield batch
        if not produced:
            raise SweepError(
                "the train loader produced no batches"
                + (" after its first pass" if epoch else "")
                + ". Check that the dataset is not empty and that batch_size <= its size "
                "when drop_last=True."
            )


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise SweepError(
            f"each batch must be an (inputs, targets) pair; the loader gave a "
            f"{type(batch).__name__}. Wrap the dataset so that it returns pairs."
        )
    inputs, targets = _move(batch[0], device), _move(batch[1], device)
    if channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, targets


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    return value


@contextlib.contextmanager
def seeded_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    if seed is None:
        yield
        return
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


SWEEP_FIELDS = tuple(field.name for field in dataclasses.fields(SweepSettings))


def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFunction,
    train_loader: Iterable[Any],
    *,
    repeats: int = REPEATS,
    refine: bool = True,
    auto_range: bool = False,
    method: str = "bottom",
    seed: int = 0,
    **sweep_options: Any,
) -> SearchOutcome:
    """lrfind's default plan (lrfind.plan) on your objects: the full sweep, then `repeats`
    focused sweeps, each from the same starting weights with a new seed (data order, dropout
    and other randomness), and the median of their suggestions.

        outcome = find_lr(model, optimizer, loss_fn, loader)
        outcome.recommendation.max_lr, outcome.recommendation.interval

    `sweep_options` are `range_test`'s (start_lr, end_lr, steps, ...). A loader with its own
    fixed order sees the same batches in every repeat; shuffle it to get the benefit.
    """
    from lrfind.plan import SearchSettings, search

    base = {name: sweep_options.pop(name) for name in SWEEP_FIELDS if name in sweep_options}

    def run_sweep(repeat: int, settings: SweepSettings) -> RangeTestResult:
        return range_test(
            model,
            optimizer,
            loss_fn,
            train_loader,
            **dataclasses.asdict(settings),
            method=method,
            seed=seed + repeat,
            **sweep_options,
        )

    return search(
        run_sweep,
        SweepSettings(**base),
        SearchSettings(repeats=repeats, refine=refine, auto_range=auto_range),
        method,
    )
