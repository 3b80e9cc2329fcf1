"""A LightningModule as lrfind's sweep trains it: its own `training_step` gives each step's
loss and its own `configure_optimizers` the optimizer; no Trainer is needed.

    step = TrainingStep(module, datamodule)
    optimizer = single_optimizer(module.configure_optimizers())
    with kept_module(module):
        lrfind.api.find_lr(step, optimizer, None, train_loader(module, datamodule),
                           unpack=step.unpack)

`TrainingStep` is a plain model to the sweep loop (lrfind.engine.loop), so the range test, its
snapshot and the plan run unchanged: its forward is `training_step(batch, batch_idx)`, and it
returns the step's loss as a model-computed loss (lrfind.setup.batches). Each batch goes through
the module's (or the DataModule's) `on_before_batch_transfer`, `transfer_batch_to_device` and
`on_after_batch_transfer` hooks, as in `Trainer.fit`. The snapshot of the range test restores
the weights, buffers, gradients and the optimizer; `kept_module` adds what is Lightning's own:
`self.log` and `self.log_dict` record nothing while the sweep runs (no warnings without a
Trainer, nothing left in a Trainer's results), torchmetrics metrics get their state back, and
each submodule its own train/eval mode. lrfind.lightning is the public face of this module.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from lrfind.engine.extras import missing_extra
from lrfind.errors import ConfigError, SweepError, noted

try:
    import lightning.pytorch as pl
    import torchmetrics
    from lightning.pytorch.utilities.model_helpers import is_overridden
except ImportError as error:
    raise missing_extra(error, "lightning") from error

METRIC_COUNTERS = ("_update_count", "_computed", "_forward_cache")
BATCH_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


class ModuleModes:
    """Each submodule's train/eval flag, as the module had them: a module may keep some parts
    in eval mode (a frozen backbone's batch norm), and `Trainer.fit` trains it that way."""

    def __init__(self, module: nn.Module) -> None:
        self.flags = [(part, part.training) for part in module.modules()]
        self.root = module

    def training(self) -> None:
        """The modes to train in: the module's own, or all train when it was in eval mode."""
        if self.root.training:
            self.restore()
        else:
            self.root.train()

    def restore(self) -> None:
        for part, flag in self.flags:  # parents before children, so each flag is the last set
            part.train(flag)


class TrainingStep(nn.Module):
    """A LightningModule whose forward is its `training_step`, counting `batch_idx` from 0
    (`reset` starts a sweep's count again). `unpack` is the sweep's batch rule: the raw batch,
    through the transfer hooks, is passed as the one argument."""

    def __init__(self, module: Any, datamodule: Any = None) -> None:
        super().__init__()
        check_module(module)
        self.lightning_module = module
        self.datamodule = datamodule
        self.modes = ModuleModes(module)
        self.batch_idx = 0

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        batch_idx = self.batch_idx
        if self.training:
            self.batch_idx += 1
        return {"loss": step_loss(self.lightning_module.training_step(batch, batch_idx), batch_idx)}

    def train(self, mode: bool = True) -> TrainingStep:
        self.training = mode
        if mode:
            self.modes.training()
        else:
            self.lightning_module.eval()
        return self

    def reset(self) -> None:
        self.batch_idx = 0

    def unpack(self, raw: Any) -> tuple[dict[str, Any], None]:
        batch = raw
        with noted("in the batch transfer hooks (on_before_batch_transfer, ...)"):
            for name in BATCH_HOOKS:
                hook = self._hook(name)
                if name == "transfer_batch_to_device":
                    batch = hook(batch, self.lightning_module.device, 0)
                else:
                    batch = hook(batch, 0)
        return {"batch": batch}, None

    def _hook(self, name: str) -> Any:
        """The DataModule's hook when it overrides it, else the module's (as the Trainer)."""
        if self.datamodule is not None and is_overridden(name, self.datamodule):
            return getattr(self.datamodule, name)
        return getattr(self.lightning_module, name)


def check_module(module: Any) -> None:
    if not isinstance(module, pl.LightningModule):
        raise ConfigError(
            f"lrfind.lightning sweeps a lightning.pytorch.LightningModule; got a "
            f"{type(module).__name__}. For a plain torch model use lrfind.find_lr(model, "
            "optimizer, loss_fn, loader)."
        )
    if not module.automatic_optimization:
        raise ConfigError(
            f"{type(module).__name__} uses manual optimization (automatic_optimization = "
            "False): its training_step steps its optimizers itself, so lrfind cannot set the "
            "rate of each step. Run the range test on a module with automatic optimization, or "
            "call lrfind.find_lr on its network with a loss function."
        )


def step_loss(output: Any, batch_idx: int) -> torch.Tensor:
    """The loss `training_step` returned: a tensor, or a mapping's "loss"."""
    loss = output.get("loss") if isinstance(output, Mapping) else output
    if isinstance(loss, torch.Tensor):
        return loss
    if output is None:
        raise SweepError(
            f"training_step returned None for batch_idx {batch_idx}. Trainer.fit skips such a "
            "batch, but every step of a range test needs a loss: return it for every batch "
            "while lrfind runs (a tensor, or a dict with 'loss')."
        )
    got = (
        f"a mapping with keys {', '.join(map(str, output))}"
        if isinstance(output, Mapping)
        else f"a {type(output).__name__}"
    )
    raise SweepError(
        f"training_step returned {got} for batch_idx {batch_idx}; lrfind reads the loss from "
        "a tensor, or from the 'loss' entry of a dict, as Lightning does. Return one of these."
    )


def single_optimizer(config: Any, where: str = "configure_optimizers()") -> torch.optim.Optimizer:
    """The one optimizer of `configure_optimizers()`'s answer, in any of Lightning's shapes:
    an optimizer, a list or tuple of them, a dict with "optimizer", a list of such dicts, or
    (optimizers, schedulers). Schedulers are left out: the sweep sets every step's rate."""
    optimizers = _optimizers(config, where)
    if len(optimizers) != 1:
        count = "no optimizer" if not optimizers else f"{len(optimizers)} optimizers"
        raise ConfigError(
            f"{where} returned {count}; lrfind's range test trains with one optimizer. "
            + (
                "Return one from configure_optimizers, or pass optimizer= to lrfind."
                if not optimizers
                else "Pass the one to sweep as optimizer= (its parameter groups keep their "
                "ratios), or run the test on a module with one optimizer."
            )
        )
    return optimizers[0]


def _optimizers(config: Any, where: str) -> list[torch.optim.Optimizer]:
    if config is None:
        return []
    if isinstance(config, torch.optim.Optimizer):
        return [config]
    if isinstance(config, Mapping):
        if "optimizer" not in config:
            raise ConfigError(
                f"{where} returned a dict with keys {', '.join(map(str, config))} and no "
                "'optimizer'. Return {'optimizer': ..., 'lr_scheduler': ...} as Lightning reads it."
            )
        return _optimizers(config["optimizer"], where)
    if isinstance(config, (list, tuple)):
        if len(config) == 2 and all(isinstance(part, (list, tuple)) for part in config):
            return _optimizers(config[0], where)  # (optimizers, schedulers)
        return [optimizer for item in config for optimizer in _optimizers(item, where)]
    raise ConfigError(
        f"{where} returned a {type(config).__name__}, which is not an optimizer. Return a "
        "torch.optim.Optimizer, a list of them, a dict with 'optimizer', or (optimizers, "
        "schedulers)."
    )


def train_loader(module: Any, datamodule: Any = None, train_dataloaders: Any = None) -> Any:
    """The loader `Trainer.fit(module, train_dataloaders, datamodule=...)` would train on:
    the one given, the DataModule's (after its prepare_data and setup("fit")), or the
    module's own `train_dataloader()`."""
    if datamodule is not None and train_dataloaders is not None:
        raise ConfigError(
            "give either a datamodule or train_dataloaders, not both (as Trainer.fit)."
        )
    if train_dataloaders is not None:
        loader = train_dataloaders
    elif datamodule is not None:
        if not isinstance(datamodule, pl.LightningDataModule):
            raise ConfigError(
                f"datamodule must be a lightning.pytorch.LightningDataModule; got a "
                f"{type(datamodule).__name__}. Pass a loader as train_dataloaders= instead."
            )
        with noted("in the DataModule's prepare_data, setup('fit') or train_dataloader"):
            datamodule.prepare_data()
            datamodule.setup("fit")
            loader = datamodule.train_dataloader()
    elif is_overridden("train_dataloader", module):
        with noted("in the module's train_dataloader"):
            loader = module.train_dataloader()
    else:
        raise ConfigError(
            f"{type(module).__name__} has no train_dataloader and none was given: pass "
            "datamodule= or train_dataloaders= (a DataLoader)."
        )
    return one_loader(loader)


def one_loader(loader: Any) -> Iterable[Any]:
    """`loader`, refused when it is several loaders (Lightning combines those; lrfind does
    not)."""
    several = isinstance(loader, Mapping) or (
        isinstance(loader, (list, tuple))
        and bool(loader)
        and all(isinstance(item, torch.utils.data.DataLoader) for item in loader)
    )
    if several:
        raise ConfigError(
            f"the training data is {len(loader)} loaders; lrfind's range test reads one. "
            "Pass the main one as train_dataloaders=."
        )
    if not isinstance(loader, Iterable):
        raise ConfigError(
            f"the training data is a {type(loader).__name__}, which cannot be iterated. Pass "
            "a DataLoader (or any iterable of batches)."
        )
    return loader


@contextlib.contextmanager
def kept_module(module: Any) -> Iterator[None]:
    """While the block runs, `self.log` and `self.log_dict` record nothing; afterwards every
    torchmetrics metric of the module has its state back and every submodule its mode."""
    modes = ModuleModes(module)
    metrics = _metric_states(module)
    shadowed = {name: module.__dict__.get(name) for name in ("log", "log_dict")}
    for name in shadowed:
        object.__setattr__(module, name, _record_nothing)
    try:
        yield
    finally:
        for name, value in shadowed.items():
            if value is None:
                object.__delattr__(module, name)
            else:
                object.__setattr__(module, name, value)
        for metric, state in metrics:
            vars(metric).update(state)
        modes.restore()


def _record_nothing(*args: Any, **kwargs: Any) -> None:
    """`self.log` during a sweep: its steps are not training steps to be logged."""


def _metric_states(module: nn.Module) -> list[tuple[Any, dict[str, Any]]]:
    """Each torchmetrics metric of the module with a copy of its state: the values its
    `add_state` declared (`metric_state`) and its count of updates and cached results."""
    kept = []
    for part in module.modules():
        if isinstance(part, torchmetrics.Metric):
            names = [*part.metric_state, *METRIC_COUNTERS]
            attributes = vars(part)
            kept.append(
                (
                    part,
                    {name: copy.deepcopy(attributes[name]) for name in names if name in attributes},
                )
            )
    return kept
