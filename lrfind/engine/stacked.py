"""Several range tests trained as one: K model copies stacked along a new leading dimension.

    lrfind run --model lenet --dataset fashion-mnist --stack-repeats on

Meant for GPUs, where one step of a small model launches a few dozen kernels that leave the
device mostly idle: stacked, the K copies launch the same kernels on K times the data, so K
sweeps should cost little more than one. On a CPU, stacking does not pay against running the
copies one after another (docs/speed.md; scripts/bench_speed.py times both), so the pipeline
stacks the repeats on CUDA only, unless asked.

Every copy keeps its own weights, optimizer state, batches and divergence detector; all follow
the same LR schedule, in the one sweep loop a single model uses (lrfind.engine.loop). A copy
that diverges stops recording while the others go on (it keeps computing: its slice of every
tensor is independent of the others'). One optimizer acts on the stacked tensors, which is
exactly K optimizers for those that update each element on its own: the registry
`ELEMENTWISE` in lrfind.settings.optimizers (SGD, Adam, AdamW, RMSprop, NAdam, ...); the
pipeline stacks no other (`RunConfig.stacking_conflict`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.records import RangeTestResult, SnapshotPlace, StepRecord, analysed_result
from lrfind.core.settings import SweepSettings
from lrfind.engine.finder import check_sweep_options
from lrfind.engine.loop import (
    LoopOptions,
    endless_batches,
    seeded_rng,
    sweep_loop,
    to_device,
)
from lrfind.engine.snapshot import DEVICE_SHARE, device_free_bytes
from lrfind.errors import ConfigError, SweepError
from lrfind.setup.batches import Batch, BatchRule, LossFunction, mean_loss, read_outputs

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]
# Stacked copies may plan on this share of the free GPU memory: the estimate per copy is one
# sweep's peak, and the allocator needs room to fragment (as a snapshot on the device may).
MEMORY_SHARE = DEVICE_SHARE


class StackedModels:
    """K copies of one architecture as stacked parameters and buffers, called as one."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device | None = None) -> None:
        if not models:
            raise ConfigError("stacking needs at least one model; got none.")
        self.count = len(models)
        params, buffers = stack_module_state(list(models))  # copies: the models stay as they are
        self.params = {
            name: value.detach().to(device).requires_grad_() for name, value in params.items()
        }
        self.buffers = {name: value.to(device) for name, value in buffers.items()}
        template = copy.deepcopy(models[0]).to("meta")  # the architecture, without storage

        def one_copy(params: dict[str, Any], buffers: dict[str, Any], inputs: Any) -> Any:
            outputs, own_loss = read_outputs(
                functional_call(template, (params, buffers), (inputs,))
            )
            if own_loss is not None:
                raise SweepError(
                    "stacked repeats cannot use a loss the model computes itself; run the "
                    "repeats one by one (--stack-repeats off)."
                )
            return outputs

        self.template = template
        self._per_copy_inputs = vmap(one_copy, randomness="different")
        self._shared_inputs = vmap(one_copy, in_dims=(0, 0, None), randomness="different")

    def __call__(self, inputs: torch.Tensor) -> Any:
        """Outputs of copy k for inputs[k]: inputs has a leading dimension of K."""
        return self._per_copy_inputs(self.params, self.buffers, inputs)

    def on_shared(self, inputs: torch.Tensor) -> Any:
        """Outputs of every copy for the same inputs (held-out batches)."""
        return self._shared_inputs(self.params, self.buffers, inputs)

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)


def stack_problem(model: nn.Module, sample_inputs: torch.Tensor) -> str | None:
    """What keeps `model` from being stacked (a phrase for a message), or None. Two copies
    must run one forward and backward pass under vmap; data-dependent control flow, in-place
    updates of unstacked state and some custom operators cannot. Cheap: two copies, the
    sample inputs."""
    if not isinstance(sample_inputs, torch.Tensor):
        return f"inputs that are a {type(sample_inputs).__name__}, not one tensor"
    try:
        stacked = StackedModels([copy.deepcopy(model), copy.deepcopy(model)])
        stacked.train()
        outputs = stacked(torch.stack([sample_inputs, sample_inputs]))
        if not isinstance(outputs, torch.Tensor):
            return f"the model's forward, which returns a {type(outputs).__name__}, not a tensor"
        outputs.float().sum().backward()
    except SweepError as error:
        return f"the model's outputs ({error})"
    except Exception as error:  # any failure means: run the copies one after another
        message = str(error).strip()
        reason = f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"
        return f"the model, which torch.func.vmap cannot run ({reason})"
    return None


def memory_problem(copies: int, bytes_per_copy: int, free_bytes: int) -> str | None:
    """Why `copies` stacked copies of `bytes_per_copy` each do not fit, or None."""
    need = copies * bytes_per_copy
    if need <= MEMORY_SHARE * free_bytes:
        return None
    return (
        f"{copies} copies would need about {need / 2**30:.1f} GiB of GPU memory "
        f"({bytes_per_copy / 2**30:.2f} GiB each, as the full sweep used) and "
        f"{free_bytes / 2**30:.1f} GiB are free"
    )


class StackedTrainee:
    """K stacked copies as the sweep loop's trainee."""

    def __init__(
        self,
        stacked: StackedModels,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFunction,
        device: torch.device,
        val_batches: Sequence[Any] | None,
    ) -> None:
        self.stacked = stacked
        self.copies = stacked.count
        self.optimizer = optimizer
        self.per_copy_loss = PerCopyLoss(loss_fn)
        self.device = device
        self.rule = BatchRule(stacked.template)
        self.held_out = [
            _pair(to_device(self.rule.split(batch), device)) for batch in val_batches or ()
        ]

    def train(self, mode: bool = True) -> None:
        self.stacked.train(mode)

    def losses(self, batches: list[Any]) -> torch.Tensor:
        inputs, targets = _stacked_batch(self.rule, batches, self.device)
        return self.per_copy_loss(self.stacked(inputs), targets)

    def held_out_losses(self) -> list[float] | None:
        """Each copy's mean loss over the fixed held-out batches (eval mode, no gradients)."""
        if not self.held_out:
            return None
        stacked = self.stacked
        stacked.train(False)
        with torch.no_grad():
            losses = torch.stack(
                [
                    self.per_copy_loss(
                        stacked.on_shared(inputs), targets.expand(stacked.count, *targets.shape)
                    ).float()
                    for inputs, targets in self.held_out
                ]
            )
        stacked.train()
        result: list[float] = losses.mean(dim=0).tolist()
        return result


def stacked_range_tests(
    models: Sequence[nn.Module],
    make_optimizer: OptimizerFactory,
    loss_fn: LossFunction,
    loaders: Sequence[Iterable[Any]],
    settings: SweepSettings,
    *,
    device: torch.device,
    method: str = DEFAULT_METHOD,
    seed: int | None = None,
    val_batches: Sequence[Any] | None = None,
    callback: Callable[[StepRecord], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    precision: str = "fp32",
    accumulate: int = 1,
) -> list[RangeTestResult]:
    """One range test per model, all trained in the same steps; results in model order.

    `models[k]` trains on `loaders[k]` (each re-iterated when it runs out; batches of every
    loader must have the same shape). `make_optimizer(tensors)` builds the optimizer over the
    stacked tensors (in the order of `named_parameters`) at any LR; the sweep sets it, keeping
    the ratios of several parameter groups to the first. The models themselves are not changed.
    `callback` gets one record per step: that of the first copy still recording.
    `precision` fp16 is not offered: one GradScaler would skip a step for all copies when
    one overflows. Each result's `sweep_seconds` is its share of the joint time.
    """
    if len(models) != len(loaders):
        raise ConfigError(
            f"stacking needs one loader per model; got {len(models)} models and "
            f"{len(loaders)} loaders."
        )
    check_sweep_options(method, precision, accumulate)
    if precision == "fp16":
        raise ConfigError(
            "stacked repeats do not support fp16 (one GradScaler would skip a step "
            "for every copy when one overflows). Use bf16 or fp32, or run the "
            "repeats one by one."
        )
    started = time.perf_counter()
    stacked = StackedModels(models, device)
    optimizer = make_optimizer(list(stacked.params.values()))
    trainee = StackedTrainee(stacked, optimizer, loss_fn, device, val_batches)
    options = LoopOptions(precision, accumulate, callback, stop_requested)
    with seeded_rng(seed, device):
        outcome = sweep_loop(
            trainee, [endless_batches(loader) for loader in loaders], settings, device, options
        )
    share = (time.perf_counter() - started) / len(models)
    return [
        analysed_result(records, stop, settings, method, share, group_ratios=outcome.group_ratios)
        for records, stop in zip(outcome.records, outcome.stops, strict=True)
    ]


def _pair(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch as stacked copies take it: one input tensor and one target tensor."""
    inputs, targets = batch.inputs, batch.targets
    if batch.kwargs or batch.extra or not isinstance(inputs, torch.Tensor):
        raise SweepError(
            "stacked repeats need (inputs, targets) batches of two tensors; these batches "
            "have keyword inputs, several inputs or extra items. Run the repeats one by one "
            "(--stack-repeats off)."
        )
    return inputs, targets


def _stacked_batch(
    rule: BatchRule, batches: list[Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_pair(to_device(rule.split(batch), device)) for batch in batches]
    try:
        return torch.stack([inputs for inputs, _ in pairs]), torch.stack([t for _, t in pairs])
    except (RuntimeError, TypeError) as error:
        shapes = sorted(
            {str(tuple(inputs.shape)) for inputs, _ in pairs if hasattr(inputs, "shape")}
        )
        raise SweepError(
            f"stacked repeats need batches of one shape from every loader; got {', '.join(shapes)} "
            f"({error}). Use a loader with drop_last=True, or run the repeats one by one."
        ) from None


class PerCopyLoss:
    """`loss_fn` of each copy's outputs and targets, as a tensor of K losses: one vmapped call
    where the loss function allows it (a handful of kernel launches instead of a handful per
    copy), else one call per copy."""

    def __init__(self, loss_fn: LossFunction) -> None:
        self.loss_fn = loss_fn
        self.batched: Callable[[Any, Any], torch.Tensor] | None = vmap(
            lambda outputs, targets: mean_loss(loss_fn(outputs, targets))
        )

    def __call__(self, outputs: Any, targets: Any) -> torch.Tensor:
        if self.batched is not None:
            try:
                return self.batched(outputs, targets)
            except Exception:  # a loss vmap cannot run; the loop below reports real errors
                self.batched = None
        return torch.stack(
            [mean_loss(self.loss_fn(outputs[k], targets[k])) for k in range(len(outputs))]
        )


class GpuPeak:
    """On CUDA, the peak memory of what runs after it is made (one model's full sweep: the
    model, its optimizer and activations), to judge whether stacked copies of it fit."""

    def __init__(self, device: torch.device, baseline: int | None) -> None:
        self.device = device
        self.baseline = baseline  # bytes in use at the start; None off CUDA

    @classmethod
    def start(cls, device: torch.device) -> GpuPeak:
        """Measure from now on."""
        if device.type != "cuda":
            return cls(device, None)
        torch.cuda.reset_peak_memory_stats(device)
        return cls(device, torch.cuda.memory_allocated(device))

    def stacking_problem(self, copies: int, snapshot: SnapshotPlace | None) -> str | None:
        """Why `copies` stacked copies would not fit in the GPU memory still free, measured as
        the snapshot's choice measures it, or None. A snapshot the full sweep kept on the
        device is left out: stacked copies take none."""
        if self.baseline is None:
            return None
        bytes_per_copy = torch.cuda.max_memory_allocated(self.device) - self.baseline
        if snapshot is not None and snapshot.place == "device":
            bytes_per_copy -= snapshot.state_bytes
        return memory_problem(copies, bytes_per_copy, device_free_bytes(self.device) or 0)


def unless_out_of_memory(run: Callable[[], list[RangeTestResult]]) -> list[RangeTestResult] | None:
    """`run()`, or None when it ran out of GPU memory, that memory freed first."""
    try:
        results = run()
    except torch.cuda.OutOfMemoryError:
        results = None
    if results is None:  # out of the except block, so the failed run's tensors are free
        torch.cuda.empty_cache()
    return results
