"""The one sweep loop: the LR grows every step while each copy's loss is recorded.

    outcome = sweep_loop(trainee, [endless_batches(loader)], settings, device, LoopOptions())

A `Trainee` is what the loop trains: one model (lrfind.engine.finder) or K stacked copies
of one (lrfind.engine.stacked). The loop does everything else, the same way for both: it sets
the LR of every parameter group (keeping their ratios to the first group's), accumulates
gradients, steps the optimizer (with a GradScaler under fp16), averages the loss over torchrun
ranks, feeds each copy's divergence detector, records, calls back and stops. A copy that
diverges stops recording while the others go on.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lrfind.core.analysis import DivergenceDetector, baseline_steps, non_finite_first_loss
from lrfind.core.ramp import rate_ratios, sweep_lrs
from lrfind.core.records import (
    STOP_COMPLETED,
    STOP_DIVERGED,
    STOP_INTERRUPTED,
    STOP_NON_FINITE,
    StepRecord,
)
from lrfind.core.settings import SweepSettings
from lrfind.engine.distributed import Ranks
from lrfind.errors import LrfindError, SweepError, UserCodeError, noted
from lrfind.setup.batches import Batch

# fp16: a GradScaler skips steps whose gradients overflow; the LR holds while it finds its
# scale. This many skips in a row means the loss itself overflows: the sweep stops there.
MAX_SKIPPED_IN_A_ROW = 20


class Trainee(Protocol):
    """One model or K stacked copies, trained by `sweep_loop` with one optimizer."""

    copies: int
    optimizer: torch.optim.Optimizer

    def train(self, mode: bool = True) -> None: ...

    def losses(self, batches: list[Any]) -> torch.Tensor:
        """The loss of each copy on its own batch (one batch per copy), with grad: K values,
        or one 0-d loss for a single model (no extra reshape and sum on its graph)."""
        ...

    def held_out_losses(self) -> list[float] | None:
        """Each copy's mean loss on the fixed held-out batches (eval mode), or None."""
        ...


@dataclass(frozen=True)
class LoopOptions:
    precision: str = "fp32"  # bf16/fp16 run forward and loss under autocast
    accumulate: int = 1  # batches per optimizer step; the loss recorded is their mean
    callback: Callable[[StepRecord], None] | None = None  # the first recording copy's record
    stop_requested: Callable[[], bool] | None = None  # asked after every step
    ranks: Ranks = field(default_factory=Ranks)  # torchrun: the loss is averaged over ranks


@dataclass(frozen=True)
class LoopOutcome:
    records: list[list[StepRecord]]  # one list per copy
    stops: list[str]  # one stop reason per copy
    skipped_steps: int  # fp16 steps the GradScaler skipped
    group_ratios: tuple[float, ...]  # each group's LR / the reference group's (core.ramp)


@dataclass(frozen=True)
class _Place:
    """Where in the sweep user code raised, described only when it did."""

    step: int
    lr: float

    def _at(self) -> str:
        return f"step {self.step} of the sweep (lr {self.lr:.3g})"

    def batch(self) -> str:
        return f"while the dataset or loader produced the batch of {self._at()}"

    def forward(self) -> str:
        return f"in the model's forward or backward pass or the loss at {self._at()}"

    def optimizer(self) -> str:
        return f"in the optimizer's step at {self._at()}"

    def held_out(self) -> str:
        return f"in the model or the loss on the held-out batches at {self._at()}"


class _Copies:
    """Each copy's detector, records and stop reason while the loop runs."""

    def __init__(self, count: int, settings: SweepSettings) -> None:
        self.detectors = [
            DivergenceDetector(
                settings.smoothing, settings.divergence_factor, baseline_steps(settings.steps)
            )
            for _ in range(count)
        ]
        self.records: list[list[StepRecord]] = [[] for _ in range(count)]
        self.stops: list[str | None] = [None] * count

    def record(
        self, step: int, lr: float, values: list[float], val_losses: list[float] | None
    ) -> StepRecord | None:
        """Record one step for every copy still running; the first such record, to show."""
        shown = None
        for k, value in enumerate(values):
            if self.stops[k] is not None:
                continue
            if step == 0 and not math.isfinite(value):
                raise non_finite_first_loss(value, lr)
            smoothed, diverged = self.detectors[k].update(value)
            record = StepRecord(step, lr, value, smoothed, val_losses[k] if val_losses else None)
            self.records[k].append(record)
            shown = shown or record
            if diverged:
                self.stops[k] = STOP_NON_FINITE if not math.isfinite(value) else STOP_DIVERGED
        return shown

    def stop_all(self, reason: str) -> None:
        self.stops = [stop or reason for stop in self.stops]

    @property
    def finished(self) -> bool:
        return all(stop is not None for stop in self.stops)


def sweep_loop(
    trainee: Trainee,
    batches: Sequence[Iterator[Any]],
    settings: SweepSettings,
    device: torch.device,
    options: LoopOptions,
) -> LoopOutcome:
    """Sweep `settings`' ramp; `batches[k]` feeds copy k. The trainee's state is changed:
    restoring it is the caller's job."""
    optimizer = trainee.optimizer
    ratios = rate_ratios([float(group.get("lr", 0.0)) for group in optimizer.param_groups])
    copies = _Copies(trainee.copies, settings)
    planned = sweep_lrs(settings.start_lr, settings.end_lr, settings.steps, settings.mode)
    forward_context = autocast_for(options.precision, device)
    scaler = torch.amp.GradScaler(device.type) if options.precision == "fp16" else None
    skipped = skipped_in_a_row = 0
    step = 0
    trainee.train()
    while step < len(planned):
        lr = planned[step]
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            if isinstance(group["lr"], torch.Tensor):  # a compiled step reads it: no recompile
                group["lr"].fill_(lr * ratio)
            else:
                group["lr"] = lr * ratio
        optimizer.zero_grad(set_to_none=True)
        loss_sums = torch.zeros(trainee.copies if trainee.copies > 1 else (), device=device)
        at = _Place(step, lr)
        for _ in range(options.accumulate):
            with noted(at.batch):
                step_batches = [next(copy_batches) for copy_batches in batches]
            with noted(at.forward):
                with forward_context():
                    losses = trainee.losses(step_batches)
                parts = losses.float() / options.accumulate
                # copy k's loss reaches only copy k's slice of each tensor
                total = parts.sum() if parts.dim() else parts
                (total if scaler is None else scaler.scale(total)).backward()
            loss_sums += parts.detach()
        with noted(at.optimizer):
            skipped_now = scaler is not None and _skipped(scaler, optimizer)
            if scaler is None:
                optimizer.step()
        if skipped_now:
            skipped += 1
            skipped_in_a_row += 1
            if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                if not copies.records[0]:
                    raise _fp16_overflow(skipped, lr)
                copies.stop_all(STOP_NON_FINITE)
                break
            continue
        skipped_in_a_row = 0
        if options.ranks.distributed:  # every rank sees the same curve and stops together
            torch.distributed.all_reduce(loss_sums)
            loss_sums /= options.ranks.world
        with noted(at.held_out):
            val_losses = trainee.held_out_losses()
        values = loss_sums.tolist() if trainee.copies > 1 else [loss_sums.item()]
        shown = copies.record(step, lr, values, val_losses)
        step += 1
        if options.callback is not None and shown is not None:
            options.callback(shown)
        if copies.finished:
            break
        if options.stop_requested is not None and options.stop_requested():
            copies.stop_all(STOP_INTERRUPTED)
            break
    copies.stop_all(STOP_COMPLETED)
    return LoopOutcome(copies.records, [str(stop) for stop in copies.stops], skipped, ratios)


@contextlib.contextmanager
def user_code_errors(subject: str) -> Iterator[None]:
    """Report an exception from the user's code as one paragraph: `subject` (which model,
    dataset or loss), where it was raised (the note `noted` left), its type and message, and
    what to check. lrfind's own errors and CUDA out-of-memory pass through unchanged."""
    try:
        yield
    except (LrfindError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as error:
        notes = [note for note in getattr(error, "__notes__", []) if note.startswith("lrfind: ")]
        text = str(error).strip()
        message = text.splitlines()[0] if text else "(no message)"
        if notes:
            where = notes[0].removeprefix("lrfind: raised ")
            check = "Check that code on one batch by hand"
        else:
            where = "while lrfind ran it"
            check = "If it is not from your model, dataset or loss, please report it"
        raise UserCodeError(
            f"{subject} {where}: {type(error).__name__}: {message}. {check}; rerun with "
            "--debug (or LRFIND_DEBUG=1) to see the traceback."
        ) from error


def _skipped(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """Step through the GradScaler; whether it skipped the step (overflowing gradients: the
    scale fell, nothing was trained)."""
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() < scale


def _fp16_overflow(skipped: int, lr: float) -> SweepError:
    return SweepError(
        f"fp16 gradients overflowed on {skipped} tries at the first LR ({lr:g}); the loss is "
        "too large for fp16. Use --precision bf16 or fp32."
    )


def autocast_for(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The context each forward pass runs in: autocast for bf16/fp16, nothing for fp32 (so
    fp32 steps do not enter a disabled autocast)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def endless_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Batches forever: start the loader again whenever it runs out."""
    for epoch in itertools.count():
        produced = False
        for batch in loader:
            produced = True
            yield batch
        if not produced and isinstance(loader, Iterator):
            raise SweepError(
                f"the train loader is a {type(loader).__name__}, an iterator that can be read "
                "only once, and it "
                + ("ran out after one pass" if epoch else "yielded no batches")
                + "; a sweep reads its loader again whenever it runs out (and every sweep of "
                "find_lr from the start). Pass a loader that can be iterated again: a "
                "DataLoader, or a list of batches (list(generator))."
            )
        if not produced:
            raise SweepError(
                "the train loader produced no batches"
                + (" after its first pass" if epoch else "")
                + ". Check that the dataset is not empty and that batch_size <= its size "
                "when drop_last=True."
            )


def to_device(batch: Batch, device: torch.device, channels_last: bool = False) -> Batch:
    """Every tensor of the batch on `device`; with `channels_last`, 4-D inputs in NHWC."""

    def move(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device, non_blocking=True)

    moved = batch.map(move)
    if channels_last:
        moved = Batch(
            tuple(_channels_last(value) for value in moved.args),
            moved.kwargs,
            moved.targets,
            moved.extra,
        )
    return moved


def _channels_last(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


@contextlib.contextmanager
def seeded_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch inside a forked RNG, so the caller's random state is left untouched."""
    if seed is None:
        yield
        return
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield
