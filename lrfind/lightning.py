"""lrfind on Lightning: the range test on a LightningModule, with its own `training_step` and
`configure_optimizers`, with or without a Trainer (`pip install 'lrfind[lightning]'`).

    from lrfind.lightning import LrfindCallback, find_lr
    outcome = find_lr(module, datamodule)    # no Trainer; the module is unchanged afterwards
    outcome.recommendation.max_lr, outcome.plot()
    trainer = Trainer(callbacks=[LrfindCallback(schedule="onecycle")])  # sweeps, then fits
    trainer.fit(module, datamodule)

`find_lr` and `range_test` return what `lrfind.find_lr` and `lrfind.range_test` return, and take
their keyword arguments (start_lr, end_lr, steps, repeats, method, seed, precision, ...).
The sweep trains the module through lrfind.engine.lightning's `TrainingStep`: every step's loss
is what `training_step(batch, batch_idx)` returns, batches go through the transfer hooks, and
`self.log` records nothing meanwhile. docs/integrations.md has the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from lrfind import api
from lrfind.core.analysis import Recommendation
from lrfind.core.schedules import check_kind
from lrfind.engine.extras import missing_extra, warn_no_recommendation
from lrfind.engine.lightning import (
    TrainingStep,
    kept_module,
    one_loader,
    single_optimizer,
    train_loader,
)
from lrfind.engine.rescale import rescale_rates
from lrfind.engine.schedulers import build_scheduler
from lrfind.errors import ConfigError
from lrfind.outputs.notebook import NotebookOutcome, NotebookResult

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.types import LRSchedulerConfig
except ImportError as error:
    raise missing_extra(error, "lightning") from error

# Trainer precision -> the range test's: mixed precision runs the forward under autocast.
PRECISIONS = {"bf16-mixed": "bf16", "16-mixed": "fp16"}
NOT_OPTIONS = ("loss_fn", "unpack")  # training_step is the loss and reads the batch itself


def find_lr(
    module: Any,
    datamodule: Any = None,
    train_dataloaders: Any = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool | None = None,
    **options: Any,
) -> NotebookOutcome:
    """lrfind's default plan (the full sweep, focused repeats, their median) on a
    LightningModule: its `training_step` gives the loss, `configure_optimizers()` the optimizer
    (or pass `optimizer=`; schedulers are left out), the data comes as `Trainer.fit` takes it.
    The module's weights, buffers, gradients, metrics and train/eval modes are as before.

    Args:
        module: A `lightning.pytorch.LightningModule` with automatic optimization.
        datamodule: A `LightningDataModule` to take the training data from (its
            `prepare_data` and `setup("fit")` run first), as `Trainer.fit` takes it.
        train_dataloaders: The loader to train on instead (any iterable of batches). With
            neither, the module's own `train_dataloader()`.
        optimizer: The optimizer to sweep instead of the one `configure_optimizers()` returns.
        progress: As for `lrfind.find_lr`.
        **options: `lrfind.find_lr`'s keyword arguments (start_lr, end_lr, steps, repeats,
            method, seed, precision, ...), except loss_fn and unpack.

    Returns:
        What `lrfind.find_lr` returns: the plan's outcome, with its `recommendation` (None
        when the sweeps hold no answer), `plot()` and `suggestions()`.

    Raises:
        ConfigError: Before any training: `module` is not a LightningModule or optimizes
            manually; both `datamodule` and `train_dataloaders` are given, neither where the
            module has no `train_dataloader`, or the data is several loaders or no iterable;
            `configure_optimizers()` gives no optimizer or several (pass `optimizer=`);
            `options` hold loss_fn, unpack or a bad value.
        SweepError: As for `lrfind.find_lr`, and `training_step` returned no loss.
        UserCodeError: `training_step`, a batch transfer hook or the loader raised during
            the sweep. An error of `configure_optimizers()` or of the DataModule's
            `prepare_data`, `setup` or `train_dataloader` passes through as raised.
    """
    step, optimizer = _prepared(module, datamodule, optimizer, options)
    loader = train_loader(module, datamodule, train_dataloaders)
    return _find_lr(step, optimizer, loader, progress, options)


def range_test(
    module: Any,
    datamodule: Any = None,
    train_dataloaders: Any = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool | None = None,
    **options: Any,
) -> NotebookResult:
    """One LR range test on a LightningModule, analysed; as `find_lr` for the rest.

    Args:
        module: As for `find_lr`.
        datamodule: As for `find_lr`.
        train_dataloaders: As for `find_lr`.
        optimizer: As for `find_lr`.
        progress: As for `lrfind.range_test`.
        **options: `lrfind.range_test`'s keyword arguments (start_lr, end_lr, steps, method,
            seed, precision, ...), except loss_fn and unpack.

    Returns:
        What `lrfind.range_test` returns: the analysed sweep, with its `recommendation`
        (None when the curve holds no answer), `plot()`, `to_dataframe()` and `suggestions()`.

    Raises:
        ConfigError: As for `find_lr`.
        SweepError: As for `find_lr`.
        UserCodeError: As for `find_lr`.
    """
    step, optimizer = _prepared(module, datamodule, optimizer, options)
    loader = train_loader(module, datamodule, train_dataloaders)
    with kept_module(module):
        return api.range_test(
            step, optimizer, None, loader, unpack=step.unpack, progress=progress, **options
        )


def _prepared(
    module: Any,
    datamodule: Any,
    optimizer: torch.optim.Optimizer | None,
    options: Mapping[str, Any],
) -> tuple[TrainingStep, torch.optim.Optimizer]:
    """Checked before any work: the module, the options and the optimizer."""
    step = TrainingStep(module, datamodule)
    _check_options(options)
    if optimizer is None:
        optimizer = single_optimizer(module.configure_optimizers())
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer= must be a torch.optim.Optimizer; got a {type(optimizer).__name__}."
        )
    return step, optimizer


def _find_lr(
    step: TrainingStep,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    progress: bool | None,
    options: dict[str, Any],
) -> NotebookOutcome:
    on_sweep = options.pop("on_sweep", None)

    def announce(repeat: int, settings: Any) -> None:
        step.reset()  # each sweep counts batch_idx from 0, as each epoch of fit does
        if on_sweep is not None:
            on_sweep(repeat, settings)

    with kept_module(step.lightning_module):
        return api.find_lr(
            step,
            optimizer,
            None,
            loader,
            unpack=step.unpack,
            progress=progress,
            on_sweep=announce,
            **options,
        )


def _check_options(options: Mapping[str, Any]) -> None:
    refused = [name for name in NOT_OPTIONS if name in options]
    if refused:
        raise ConfigError(
            f"{', '.join(refused)} cannot be given for a LightningModule: its training_step "
            "computes the loss from the batch as the loader gives it (after the transfer "
            "hooks). Change training_step, or the DataModule's on_after_batch_transfer."
        )


class LrfindCallback(pl.Callback):
    """Runs lrfind's range test when `Trainer.fit` starts, on the module, optimizer and
    training data fit is about to use, then sets the recommended rate before the first step.

        trainer = Trainer(max_epochs=5, callbacks=[LrfindCallback(schedule="onecycle")])

    `schedule` None keeps the training's own schedule: without a scheduler the optimizer
    trains at the recommendation's constant `lr`; with schedulers from configure_optimizers,
    all their rates are scaled so that the configured rate becomes `max_lr` (the schedule's
    peak), the shape kept (lrfind.engine.rescale). A schedule kind (onecycle, triangular,
    cosine, ... as in `lrfind apply`) replaces the schedulers with that schedule over the whole
    fit, stepped every optimizer step. The sweep runs with the Trainer's mixed precision and
    gradient accumulation unless `options` say otherwise; `options` are `find_lr`'s.
    After fit starts, `outcome` holds the result (its `plot()` draws the curve) and `applied`
    the rate set, or None when the sweep gave no recommendation (a warning says why, and
    training goes on at the configured rate).

    Args:
        schedule: None to keep the training's own schedule, or a schedule kind of
            `lrfind apply` to replace it.
        progress: As for `lrfind.find_lr`.
        **options: `find_lr`'s keyword arguments (start_lr, end_lr, steps, repeats, method,
            seed, ...), except loss_fn and unpack; they override the Trainer's precision and
            gradient accumulation.

    Raises:
        ConfigError: At construction: `schedule` is not a known kind, or `options` hold
            loss_fn or unpack. When fit starts: the Trainer runs several processes or has
            several optimizers, `schedule` is given and the fit has no end (no max_steps or
            max_epochs, or an endless loader), or anything `find_lr` refuses.
        SweepError: As for `find_lr`, raised from `Trainer.fit`.
        UserCodeError: As for `find_lr`, raised from `Trainer.fit`.
    """

    def __init__(
        self, *, schedule: str | None = None, progress: bool | None = None, **options: Any
    ) -> None:
        super().__init__()
        if schedule is not None:
            check_kind(schedule)
        _check_options(options)
        self.schedule = schedule
        self.progress = progress
        self.options = options
        self.outcome: NotebookOutcome | None = None
        self.applied: float | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.world_size > 1:
            raise ConfigError(
                f"LrfindCallback runs on one device; this Trainer has {trainer.world_size} "
                "processes. Run lrfind.lightning.find_lr(module, datamodule) on one device "
                "before fit, and set the rate it recommends."
            )
        optimizer = single_optimizer(list(trainer.optimizers), "the Trainer's optimizers")
        trainer.fit_loop.setup_data()
        loader = one_loader(trainer.train_dataloader)
        options = {
            "precision": PRECISIONS.get(str(trainer.precision), "fp32"),
            "accumulate": int(trainer.accumulate_grad_batches),
            **_training_length(trainer),
            **self.options,
        }
        step, optimizer = _prepared(pl_module, trainer.datamodule, optimizer, options)
        self.outcome = _find_lr(step, optimizer, loader, self.progress, options)
        recommendation = self.outcome.recommendation
        if recommendation is None:
            self.applied = None
            warn_no_recommendation(self.outcome.no_recommendation, "rate")
            return
        self.applied = self._apply(trainer, optimizer, recommendation)

    def _apply(
        self, trainer: Any, optimizer: torch.optim.Optimizer, recommendation: Recommendation
    ) -> float:
        configs = list(trainer.lr_scheduler_configs)
        if self.schedule is None:
            rate = recommendation.max_lr if configs else recommendation.lr
            rescale_rates(optimizer, [config.scheduler for config in configs], rate)
            return rate
        steps_per_epoch, epochs = _schedule_lengths(trainer)
        scheduler = build_scheduler(
            optimizer, recommendation, self.schedule, steps_per_epoch, epochs
        )
        trainer.strategy.lr_scheduler_configs = [LRSchedulerConfig(scheduler, interval="step")]
        return recommendation.max_lr


def _schedule_lengths(trainer: Any) -> tuple[int, int]:
    """(optimizer steps per epoch, epochs) of the fit: a schedule over all its steps."""
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ConfigError(
            "LrfindCallback(schedule=...) needs the length of training, and this fit has no "
            "end (max_epochs=-1 and no max_steps, or an endless loader). Set max_steps or "
            "max_epochs, or leave schedule=None."
        )
    batches = trainer.num_training_batches
    per_epoch = int(total)
    if math.isfinite(batches):
        per_epoch = min(per_epoch, math.ceil(batches / trainer.accumulate_grad_batches))
    per_epoch = max(per_epoch, 1)
    return per_epoch, max(math.ceil(int(total) / per_epoch), 1)


def _training_length(trainer: Any) -> dict[str, int]:
    """The fit's optimizer steps, when the Trainer knows them: the run the answer is for."""
    try:
        steps = float(trainer.estimated_stepping_batches)
    except Exception:  # no length known (an endless loader without max_steps)
        return {}
    return {"training_steps": int(steps)} if math.isfinite(steps) and steps >= 1 else {}
