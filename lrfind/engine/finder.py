"""The LR range test on your objects: any model, optimizer, loss and loader.

    from lrfind import range_test
    result = range_test(model, optimizer, torch.nn.functional.cross_entropy, loader)
    result.recommendation.max_lr

The LR grows every mini-batch from start_lr to end_lr while the loss of each batch is
recorded (lrfind.engine.loop); the sweep stops early once the loss diverges. The model's and
optimizer's state are restored afterwards (also on error), so the caller can train the same
objects next. The engine never prints: progress goes to `callback`, one `StepRecord` per step.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from lrfind.core import arguments
from lrfind.core.analysis import check_method
from lrfind.core.horizon import training_length
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.plan import SearchOutcome, search
from lrfind.core.records import RangeTestResult, StepRecord, analysed_result
from lrfind.core.settings import (
    REPEATS,
    SWEEP_FIELDS,
    SearchSettings,
    SweepSettings,
    check_choice,
)
from lrfind.engine.distributed import Ranks, wrapped_for_ranks
from lrfind.engine.loop import (
    LoopOptions,
    endless_batches,
    seeded_rng,
    sweep_loop,
    to_device,
)
from lrfind.engine.probe import measured_horizon
from lrfind.engine.snapshot import kept_while_sweeping
from lrfind.errors import ConfigError
from lrfind.settings.optimizers import REFUSED, TORCH_MODULE
from lrfind.settings.options import MAX_SEED, PRECISIONS, SNAPSHOT_PLACES
from lrfind.setup.batches import BatchRule, LossFunction, Unpack, batch_loss
from lrfind.setup.families import check_lr_free, evaluating, prepare_for_sweep, set_mode
from lrfind.setup.several import OptimizerSet, one_optimizer


class SingleModel:
    """One model as the sweep loop's trainee; under torchrun, each rank takes its shard of
    every global batch. Batches and outputs are read by lrfind.setup.batches."""

    copies = 1

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFunction | None,
        device: torch.device,
        val_batches: Sequence[Any] | None,
        channels_last: bool,
        ranks: Ranks,
        unpack: Unpack | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.device = device
        self.rule = BatchRule(model, unpack)
        self.stepped = False  # the first step checks the loss for broadcasting
        self.held_out = [
            to_device(self.rule.split(batch), device, channels_last) for batch in val_batches or ()
        ]
        self.channels_last = channels_last
        self.ranks = ranks

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        set_mode(self.optimizer, mode)  # schedule-free: the point its gradients are taken at

    def losses(self, batches: list[Any]) -> torch.Tensor:
        """The loss as a 0-d tensor: the loop sums over copies only when there are several."""
        batch = to_device(self.rule.split(batches[0]), self.device, self.channels_last)
        if self.ranks.distributed:  # every rank loads the global batch and trains on its shard
            world, rank = self.ranks.world, self.ranks.rank
            batch = batch.map(lambda tensor: tensor.tensor_split(world)[rank])
        first, self.stepped = not self.stepped, True
        return batch_loss(self.model, batch, self.loss_fn, first)[0]  # one copy: a 0-d loss

    def held_out_losses(self) -> list[float] | None:
        if not self.held_out:
            return None
        self.model.eval()
        with torch.no_grad(), evaluating(self.optimizer):
            total = sum(
                float(batch_loss(self.model, batch, self.loss_fn)[0]) for batch in self.held_out
            )
        self.model.train()
        return [total / len(self.held_out)]


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | Sequence[Any] | Mapping[str, Any],
    loss_fn: LossFunction | None,
    train_loader: Iterable[Any],
    *,
    unpack: Unpack | None = None,
    start_lr: float = SweepSettings.start_lr,
    end_lr: float = SweepSettings.end_lr,
    steps: int = SweepSettings.steps,
    mode: str = SweepSettings.mode,
    smoothing: float = SweepSettings.smoothing,
    divergence_factor: float = SweepSettings.divergence_factor,
    method: str = DEFAULT_METHOD,
    seed: int | None = None,
    device: torch.device | str | None = None,
    val_batches: Sequence[Any] | None = None,
    callback: Callable[[StepRecord], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    precision: str = "fp32",
    accumulate: int = 1,
    channels_last: bool = False,
    ranks: Ranks | None = None,
    snapshot: str = "auto",
    force_sweep: bool = False,
) -> RangeTestResult:
    """Run one LR range test and analyse it.

    `train_loader` yields batches and is re-iterated when it runs out. Batches and the model's
    outputs follow one rule (lrfind.setup.batches, docs/rules.md): `(inputs, targets)`,
    `(inputs, targets, *extra)` with the extra items passed to the loss, or a mapping passed
    to the model as keyword arguments; a tensor output, a tuple's first item, or a mapping's
    `loss` (the model computed it) or `logits`. `loss_fn(outputs, targets)` may return one loss
    per sample (they are averaged), and may be None when the model computes its own loss.
    `unpack(batch)` turns any other batch into `(inputs, targets)`.
    `val_batches`, a few fixed batches of the same kind, are evaluated after every step
    (in eval mode, without gradients) to record a validation curve; the analysis stays on
    the training loss, which is what the rate acts on.
    `stop_requested` is asked after every step; when it answers True the sweep ends there
    (stop reason "interrupted") and what was recorded is analysed as usual.
    Several parameter groups keep their LR ratios to the first group with a positive LR,
    whose LR is recorded; a group at LR 0 stays frozen (lrfind.core.ramp.rate_ratios).
    Several optimizers (a list, or a mapping from names) are swept as one
    (lrfind.setup.several.OptimizerSet): their groups in order, each keeping the ratio of its
    starting rate to the first's; `OptimizerSet.rates` gives each its rates for an answer.
    `seed` seeds torch inside a forked RNG, so the caller's random state is left untouched.
    `device` defaults to the device of the model's first parameter.
    `precision` bf16 or fp16 runs forward and loss under autocast; fp16 adds a GradScaler, and
    a step it skips (overflowing gradients) does not advance the LR or record a point.
    `accumulate` N: each optimizer step (one LR) sums gradients over N batches, and the loss
    recorded is their mean. `channels_last` moves 4-D inputs to channels-last memory (the
    model should be converted too: `model.to(memory_format=torch.channels_last)`).
    Under torch.distributed (torchrun, the model wrapped in DistributedDataParallel or sharded
    with FSDP2's fully_shard), every rank takes its shard of each global batch and the
    recorded loss is the mean over ranks; an FSDP2 model's snapshot keeps each rank's own
    shard. `ranks` defaults to those of the initialised process group.
    `snapshot` is where the model's and optimizer's state wait meanwhile (lrfind.engine.snapshot):
    auto (host memory off an accelerator, a file for a CPU model over 16 MiB, by the free
    memory), device, cpu or disk; the result's `snapshot` says where it went.
    A schedule-free optimizer (lrfind.setup.families) steps in train mode with its warm-up
    off and is evaluated in eval mode. An LR-free one (Prodigy, D-Adaptation, DoG,
    Mechanic) is refused with what to tune instead, unless `force_sweep`.
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
    check_callers_options(
        seed=seed,
        channels_last=channels_last,
        snapshot=snapshot,
        callback=callback,
        stop_requested=stop_requested,
        unpack=unpack,
        val_batches=val_batches,
        ranks=ranks,
    )
    swept: torch.optim.Optimizer = one_optimizer(optimizer)
    check_objects(model, swept, loss_fn, train_loader)
    check_lr_free(swept, arguments.flag("force_sweep", force_sweep))
    device = sweep_device(model, device)
    ranks = ranks or Ranks.of_group()
    options = LoopOptions(precision, accumulate, callback, stop_requested, ranks)
    trainee = SingleModel(model, swept, loss_fn, device, val_batches, channels_last, ranks, unpack)

    with kept_while_sweeping(model, swept, snapshot, device) as kept:
        started = time.perf_counter()
        prepare_for_sweep(swept)
        with seeded_rng(seed, device):
            outcome = sweep_loop(
                trainee, [endless_batches(train_loader)], settings, device, options
            )
    result = analysed_result(
        outcome.records[0],
        outcome.stops[0],
        settings,
        method,
        time.perf_counter() - started,
        skipped_steps=outcome.skipped_steps,
        group_ratios=outcome.group_ratios,
    )
    return dataclasses.replace(result, snapshot=kept.place)


def prepared_model(
    model: torch.nn.Module,
    device: torch.device,
    ranks: Ranks,
    *,
    channels_last: bool = False,
    compile: bool = False,
    parallel: str = "ddp",
) -> torch.nn.Module:
    """The model as the sweep trains it: channels-last memory, DistributedDataParallel or FSDP2
    under torchrun (`parallel`), torch.compile; applied after any check that needs the plain
    model."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ranks.distributed:
        model = wrapped_for_ranks(model, device, parallel)
    if compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def check_sweep_options(method: str, precision: str, accumulate: int) -> None:
    """The engine's own arguments, checked before any work (the sweep's by SweepSettings)."""
    check_method(arguments.text("method", method, DEFAULT_METHOD))
    check_choice("precision", arguments.text("precision", precision, "fp32"), PRECISIONS)
    if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
        raise ConfigError(f"accumulate must be a positive integer; got {accumulate!r}.")


def check_callers_options(
    *,
    seed: Any,
    channels_last: Any,
    snapshot: Any,
    callback: Any,
    stop_requested: Any,
    unpack: Any,
    val_batches: Any,
    ranks: Any,
) -> None:
    """The rest of `range_test`'s keyword arguments, by type (lrfind.core.arguments): what
    the CLI never gets wrong, and a Python caller may."""
    if seed is not None and not 0 <= arguments.integer("seed", seed, "0") <= MAX_SEED:
        raise ConfigError(
            f"seed must be between 0 and {MAX_SEED} (torch seeds are 64-bit, and each repeat "
            f"adds one); got {seed}. Pass e.g. seed=0."
        )
    arguments.flag("channels_last", channels_last)
    check_choice("snapshot", arguments.text("snapshot", snapshot, "auto"), SNAPSHOT_PLACES)
    arguments.optional_callable("callback", callback, "of one StepRecord")
    arguments.optional_callable("stop_requested", stop_requested, "of no arguments")
    arguments.optional_callable("unpack", unpack, "of one batch, returning (inputs, targets)")
    if val_batches is not None and (
        isinstance(val_batches, (str, bytes, torch.Tensor)) or not hasattr(val_batches, "__len__")
    ):
        raise ConfigError(
            f"val_batches must be a list of batches (each as the loader gives them), or None; "
            f"got {arguments.shown(val_batches)}. Pass e.g. val_batches=list(itertools.islice("
            "val_loader, 4))."
        )
    if ranks is not None and not isinstance(ranks, Ranks):
        raise ConfigError(
            f"ranks must be an lrfind.engine.distributed.Ranks, or None for those of the "
            f"process group; got {arguments.shown(ranks)}. Leave it out."
        )


def sweep_device(model: torch.nn.Module, device: Any) -> torch.device:
    """Where the sweep runs: `device` (a torch.device or its name), else the device of the
    model's first parameter."""
    if device is None:
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise ConfigError(
            f"device must be a torch.device or its name, or None for the model's own; got "
            f"{arguments.shown(device)}. Pass e.g. device='cuda' or device='cpu'."
        )
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"device {device!r} is not a device torch knows. Pass e.g. device='cuda', "
            "'cuda:1', 'mps' or 'cpu', or leave it out for the model's own."
        ) from None


def check_objects(model: Any, optimizer: Any, loss_fn: Any, train_loader: Any = ()) -> None:
    """The caller's objects, before any work: a module, an optimizer lrfind can sweep over
    this model's parameters, gradients on, no tensor without data, a loss that can be called
    (an instance, not its class) and a loader that can be iterated."""
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"model must be a torch.nn.Module; got {arguments.shown(model)}. Pass the network "
            "itself (for a function, wrap it in a Module whose forward calls it)."
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer; got {arguments.shown(optimizer)}. "
            "Pass e.g. torch.optim.SGD(model.parameters(), lr=1e-3)."
        )
    _check_optimizer_kind(optimizer)
    if not torch.is_grad_enabled():
        raise ConfigError(
            "gradients are off (range_test was called inside torch.no_grad() or "
            "torch.inference_mode()), and the sweep trains the model. Call it outside that "
            "block."
        )
    if not hasattr(type(train_loader), "__iter__") and not hasattr(
        type(train_loader), "__getitem__"
    ):
        raise ConfigError(
            f"train_loader must be an iterable of batches; got {arguments.shown(train_loader)}. "
            "Pass e.g. a torch.utils.data.DataLoader or a list of (inputs, targets)."
        )
    if isinstance(loss_fn, type) or (loss_fn is not None and not callable(loss_fn)):
        shown = loss_fn.__name__ if isinstance(loss_fn, type) else repr(loss_fn)[:60]
        raise ConfigError(
            f"loss_fn must be a function or a loss instance; got {shown}. Pass e.g. "
            "torch.nn.functional.cross_entropy or torch.nn.CrossEntropyLoss() (with the "
            "parentheses), or None when the model computes its own loss."
        )
    own = {id(parameter) for parameter in model.parameters()}
    swept = [p for group in optimizer.param_groups for p in group["params"]]
    if not swept:
        raise ConfigError(
            f"the optimizer holds no parameters ({len(optimizer.param_groups)} parameter "
            "group(s), all empty), so the sweep would train nothing. Build it over the "
            "model: torch.optim.SGD(model.parameters(), lr=...)."
        )
    if not any(parameter.requires_grad for parameter in swept):
        raise ConfigError(
            "every parameter the optimizer holds has requires_grad=False, so the sweep would "
            "train nothing. Unfreeze the layers to train (requires_grad_(True)), or build the "
            "optimizer over those that train."
        )
    on_meta = next(
        (name for name, tensor in _named_tensors(model) if tensor.device.type == "meta"), None
    )
    if on_meta is not None or any(p.device.type == "meta" for p in swept):
        shown = f"the model's {on_meta!r}" if on_meta else "a tensor the optimizer holds"
        raise ConfigError(
            f"{shown} is on the meta device: it has a shape but no values, so there is "
            "nothing to train or to restore. Materialise the model first, e.g. "
            "model.to_empty(device='cpu') and then load or initialise its weights."
        )
    if not any(id(parameter) in own for parameter in swept):
        raise ConfigError(
            "the optimizer holds none of the model's parameters, so the sweep would train "
            "nothing it measures. Build it over this model: "
            "torch.optim.SGD(model.parameters(), lr=...)."
        )
    rates = [group.get("lr") for group in optimizer.param_groups]
    if any(not isinstance(rate, (float, int, torch.Tensor)) for rate in rates):
        raise ConfigError(
            f"optimizer {type(optimizer).__name__} has a parameter group without a numeric "
            "`lr` (its defaults hold none), so there is no rate for the sweep to set. Give "
            "the optimizer an `lr` argument that its step reads."
        )
    if not any(float(rate) > 0 for rate in rates if rate is not None):
        raise ConfigError(
            "every parameter group of the optimizer has lr 0: the sweep keeps each group's "
            "ratio to the first group with a positive rate, and a group at 0 stays frozen, so "
            "nothing would train. Give the groups to train a positive lr."
        )


def _check_optimizer_kind(optimizer: torch.optim.Optimizer) -> None:
    """Refuse a torch.optim class lrfind cannot sweep (or a subclass of one), for the reason
    the CLI gives (lrfind.settings.optimizers.REFUSED); each member of a set."""
    members = (
        list(optimizer.optimizers.values()) if isinstance(optimizer, OptimizerSet) else [optimizer]
    )
    for member in members:
        for kind in type(member).__mro__:
            name = kind.__name__.lower()
            if kind.__module__.startswith(TORCH_MODULE) and name in REFUSED:
                raise ConfigError(
                    f"optimizer {type(member).__name__} cannot run a range test: {REFUSED[name]}."
                )


def _named_tensors(model: torch.nn.Module) -> Any:
    yield from model.named_parameters()
    yield from model.named_buffers()


def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | Sequence[Any] | Mapping[str, Any],
    loss_fn: LossFunction | None,
    train_loader: Iterable[Any],
    *,
    repeats: int = REPEATS,
    refine: bool = True,
    auto_range: bool = False,
    budget: float = SearchSettings.budget,
    epochs: float | None = None,
    training_steps: int | None = None,
    method: str = DEFAULT_METHOD,
    seed: int = 0,
    on_sweep: Callable[[int, SweepSettings], None] | None = None,
    **sweep_options: Any,
) -> SearchOutcome:
    """lrfind's default plan (lrfind.core.plan) on your objects: the full sweep, then
    focused sweeps until their median is pinned, at most `repeats`, each from the same
    starting weights with a new seed (data order, dropout and other randomness), and the
    median of their suggestions.

        outcome = find_lr(model, optimizer, loss_fn, loader)
        outcome.recommendation.max_lr, outcome.recommendation.interval

    `sweep_options` are `range_test`'s (start_lr, end_lr, steps, ...). A loader with its own
    fixed order sees the same batches in every repeat; shuffle it to get the benefit.
    `on_sweep(repeat, settings)` is called before each sweep starts (repeat 0 is the full
    sweep), so a progress display knows each sweep's range and steps. The answer is for a
    training run of `training_steps`, or `epochs` passes over a sized `train_loader`, else
    lrfind.core.horizon's default; `recommendation.horizon` says which.
    """
    arguments.check_keywords("find_lr", sweep_options, FIND_LR_SWEEP_OPTIONS)
    arguments.integer("seed", seed, "0")
    arguments.optional_callable("on_sweep", on_sweep, "of (repeat, settings)")
    base = {name: sweep_options.pop(name) for name in SWEEP_FIELDS if name in sweep_options}
    swept: torch.optim.Optimizer = one_optimizer(optimizer)

    def run_sweep(repeat: int, settings: SweepSettings) -> RangeTestResult:
        if on_sweep is not None:
            on_sweep(repeat, settings)
        return range_test(
            model,
            swept,
            loss_fn,
            train_loader,
            **dataclasses.asdict(settings),
            method=method,
            seed=seed + repeat,
            **sweep_options,
        )

    search_settings = SearchSettings(
        repeats=repeats, refine=refine, auto_range=auto_range, budget=budget, epochs=epochs
    )
    steps = arguments.optional_positive_integer("training_steps", training_steps)
    length = training_length(
        epochs=epochs,
        training_steps=steps,
        batches_per_epoch=_length(train_loader),
        accumulate=sweep_options.get("accumulate", 1),
        epochs_name="epochs=",
    )
    return search(
        run_sweep,
        SweepSettings(**base),
        search_settings,
        method,
        horizon=measured_horizon(swept, *length),
    )


def _length(loader: Any) -> int | None:
    """The loader's batches per epoch, or None for one without a length."""
    try:
        return len(loader)
    except TypeError:
        return None


# The keyword options each entry point takes (the API checks a caller's names against them).
RANGE_TEST_OPTIONS = tuple(
    name
    for name, parameter in inspect.signature(range_test).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
FIND_LR_SWEEP_OPTIONS = tuple(name for name in RANGE_TEST_OPTIONS if name not in ("method", "seed"))
FIND_LR_OPTIONS = (
    *(
        name
        for name, parameter in inspect.signature(find_lr).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ),
    *FIND_LR_SWEEP_OPTIONS,
)
