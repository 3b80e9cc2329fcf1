"""lrfind.lightning with the real Lightning: the range test on a LightningModule's own
training_step and configure_optimizers without a Trainer, the module bit-identical afterwards,
and LrfindCallback setting the rate before a real `Trainer.fit` trains."""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

if os.environ.get("CI"):  # CI installs the extras: a missing one fails there
    import lightning.pytorch as pl
else:
    pl = pytest.importorskip("lightning.pytorch", reason="pip install -e '.[lightning]'")
import torchmetrics

import lrfind.lightning as lrfind_lightning
from lrfind.engine.lightning import single_optimizer
from lrfind.errors import ConfigError, SweepError

# Lightning's own: the frozen part is in eval mode on purpose; its pytree helper on this torch
pytestmark = [
    pytest.mark.filterwarnings("ignore:Found .* module.s. in eval mode:UserWarning"),
    pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated"),
]
SWEEP = {"start_lr": 1e-4, "end_lr": 100.0, "steps": 80, "repeats": 0, "progress": False}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread each step, not a thread pool fighting other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(count: int = 1024, seed: int = 0) -> TensorDataset:
    """Four Gaussian blobs in 8 dimensions: a small MLP learns them in a few dozen steps."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 8, generator=generator) * 2
    labels = torch.randint(0, 4, (count,), generator=generator)
    return TensorDataset(centers[labels] + torch.randn(count, 8, generator=generator), labels)


def loader(batch_size: int = 32) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(blobs(), batch_size=batch_size, shuffle=True, generator=generator)


class Classifier(pl.LightningModule):
    """An MLP with batch norm (buffers), a frozen part in eval mode, a torchmetrics metric it
    updates and logs, and `self.log` on every step: all of which the sweep must leave as is."""

    def __init__(self, scheduler: str | None = None) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.frozen = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8))
        self.frozen.requires_grad_(False)
        self.frozen.eval()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 32),
            torch.nn.BatchNorm1d(32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 4),
        )
        self.accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=4)
        self.batch_indices: list[int] = []

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs + 0.1 * self.frozen(inputs))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        inputs, labels = batch
        logits = self(inputs)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        self.accuracy(logits, labels)
        self.log("train_loss", loss, prog_bar=True)
        self.log_dict({"train_accuracy": self.accuracy})
        self.batch_indices.append(batch_idx)
        return {"loss": loss}

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        if self.scheduler == "step":
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 2, gamma=0.5)]
        return optimizer


def state(module: torch.nn.Module) -> dict[str, Any]:
    """Everything the sweep could change, as plain copies."""
    return {
        "tensors": {key: value.clone() for key, value in module.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in module.parameters()],
        "modes": [part.training for part in module.modules()],
        "metric": {key: value.clone() for key, value in module.accuracy.metric_state.items()},
        "metric_updates": module.accuracy._update_count,
    }


def same(before: dict[str, Any], after: dict[str, Any]) -> bool:
    tensors = before["tensors"].keys() == after["tensors"].keys() and all(
        torch.equal(before["tensors"][key], after["tensors"][key]) for key in before["tensors"]
    )
    grads = all(
        (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
        for a, b in zip(before["grads"], after["grads"], strict=True)
    )
    metric = all(
        torch.equal(before["metric"][key], after["metric"][key]) for key in before["metric"]
    )
    return (
        tensors
        and grads
        and metric
        and before["modes"] == after["modes"]
        and before["metric_updates"] == after["metric_updates"]
    )


def trained_once(module: Classifier) -> None:
    """One step by hand, so gradients and the metric hold values the sweep must keep."""
    inputs, labels = blobs(16, seed=1).tensors
    module.accuracy(module(inputs), labels)
    torch.nn.functional.cross_entropy(module(inputs), labels).backward()


def test_find_lr_on_the_modules_own_step_recommends_a_rate_and_leaves_it_bit_identical() -> None:
    torch.manual_seed(0)
    module = Classifier()
    trained_once(module)
    before = state(module)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = lrfind_lightning.find_lr(module, train_dataloaders=loader(), **SWEEP)
    recommendation = outcome.recommendation
    assert recommendation is not None
    assert SWEEP["start_lr"] < recommendation.max_lr < SWEEP["end_lr"]
    assert recommendation.confidence != "low", recommendation.confidence_reasons
    assert same(before, state(module))
    assert module.frozen.training is False and module.net.training is True
    assert [str(warning.message) for warning in caught] == []  # self.log without a Trainer
    # batch_idx counted the sweep's steps from 0, one per batch
    assert module.batch_indices == list(range(len(outcome.main.records)))


def test_range_test_returns_one_sweep_with_the_notebook_views() -> None:
    torch.manual_seed(0)
    result = lrfind_lightning.range_test(
        Classifier(), train_dataloaders=loader(), start_lr=1e-4, end_lr=100.0, steps=80
    )
    assert result.recommendation is not None
    assert len(result.to_dataframe()) == len(result.records)


class Blobs(pl.LightningDataModule):
    """Integer-coded inputs that only its on_after_batch_transfer hook turns into floats."""

    def __init__(self) -> None:
        super().__init__()
        self.stages: list[str] = []

    def setup(self, stage: str) -> None:
        self.stages.append(stage)
        inputs, labels = blobs().tensors
        self.dataset = TensorDataset((inputs * 1000).round().long(), labels)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.dataset, batch_size=32, shuffle=True)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        inputs, labels = batch
        return inputs.float() / 1000, labels


def test_a_datamodule_is_set_up_for_fit_and_its_transfer_hook_shapes_every_batch() -> None:
    torch.manual_seed(0)
    datamodule = Blobs()
    outcome = lrfind_lightning.find_lr(Classifier(), datamodule, seed=0, **SWEEP)
    assert datamodule.stages == ["fit"]
    assert outcome.recommendation is not None


@pytest.mark.parametrize(
    "shape",
    [
        lambda opt: opt,
        lambda opt: [opt],
        lambda opt: (opt,),
        lambda opt: {"optimizer": opt},
        lambda opt: {"optimizer": opt, "lr_scheduler": {"scheduler": object(), "interval": "step"}},
        lambda opt: [{"optimizer": opt, "lr_scheduler": object()}],
        lambda opt: ([opt], [object()]),
    ],
    ids=["optimizer", "list", "tuple", "dict", "dict-scheduler", "list-of-dicts", "pair"],
)
def test_every_configure_optimizers_shape_gives_its_one_optimizer(shape: Any) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert single_optimizer(shape(optimizer)) is optimizer


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "returned no optimizer"),
        ("several", "returned 2 optimizers"),
        ({"lr_scheduler": None}, "no 'optimizer'"),
        (42, "a int, which is not an optimizer"),
    ],
)
def test_configure_optimizers_without_exactly_one_optimizer_is_refused(
    config: Any, message: str
) -> None:
    if config == "several":
        parameters = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
        config = [torch.optim.SGD([p], lr=0.1) for p in parameters]
    with pytest.raises(ConfigError, match=message):
        single_optimizer(config)


def test_manual_optimization_is_refused_before_any_step() -> None:
    module = Classifier()
    module.automatic_optimization = False
    with pytest.raises(ConfigError, match="manual optimization"):
        lrfind_lightning.find_lr(module, train_dataloaders=loader(), **SWEEP)
    assert module.batch_indices == []


def test_a_step_that_returns_no_loss_names_its_batch() -> None:
    class Skips(Classifier):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return None if batch_idx == 3 else super().training_step(batch, batch_idx)

    torch.manual_seed(0)
    module = Skips()
    before = state(module)
    with pytest.raises(SweepError, match="returned None for batch_idx 3"):
        lrfind_lightning.find_lr(module, train_dataloaders=loader(), **SWEEP)
    assert same(before, state(module))  # restored on error too


def test_a_loss_function_is_refused_for_a_module_that_computes_its_own() -> None:
    with pytest.raises(ConfigError, match="loss_fn cannot be given"):
        lrfind_lightning.find_lr(
            Classifier(), train_dataloaders=loader(), loss_fn=torch.nn.functional.mse_loss
        )


class FirstStep(pl.Callback):
    """What fit trains with at its first step: the rate, the scheduler, and the weights."""

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == 0:
            self.lr = trainer.optimizers[0].param_groups[0]["lr"]
            self.schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
            self.tensors = {key: value.clone() for key, value in module.state_dict().items()}
            self.logged = dict(trainer.callback_metrics)  # what the sweep's self.log left


def fit(module: Classifier, callback: Any, max_steps: int = 4) -> FirstStep:
    first = FirstStep()
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, first],
    )
    trainer.fit(module, loader())
    return first


CALLBACK_SWEEP = {key: value for key, value in SWEEP.items() if key != "progress"}


def test_the_callback_sets_the_constant_rate_before_fit_from_the_unchanged_weights() -> None:
    torch.manual_seed(0)
    module = Classifier()
    start = {key: value.clone() for key, value in module.state_dict().items()}
    callback = lrfind_lightning.LrfindCallback(progress=False, **CALLBACK_SWEEP)
    first = fit(module, callback)
    recommendation = callback.outcome.recommendation
    assert recommendation is not None
    assert recommendation.horizon is not None  # the answer is for the fit the Trainer runs
    assert str(recommendation.horizon["source"]).endswith(" training steps")
    assert callback.applied == pytest.approx(first.lr, rel=1e-12)
    assert first.lr == pytest.approx(recommendation.lr)
    assert first.tensors.keys() == start.keys()
    assert all(torch.equal(first.tensors[key], start[key]) for key in start)
    assert first.logged == {}


def test_the_callback_scales_the_modules_own_scheduler_to_the_recommended_peak() -> None:
    torch.manual_seed(0)
    callback = lrfind_lightning.LrfindCallback(progress=False, **CALLBACK_SWEEP)
    first = fit(Classifier(scheduler="step"), callback)
    recommendation = callback.outcome.recommendation
    assert recommendation is not None
    (scheduler,) = first.schedulers
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert scheduler.base_lrs == [pytest.approx(recommendation.max_lr)]
    assert first.lr == pytest.approx(recommendation.max_lr)


def test_the_callback_builds_a_one_cycle_schedule_over_the_whole_fit() -> None:
    torch.manual_seed(0)
    callback = lrfind_lightning.LrfindCallback(
        schedule="onecycle", progress=False, **CALLBACK_SWEEP
    )
    first = fit(Classifier(scheduler="step"), callback, max_steps=6)
    recommendation = callback.outcome.recommendation
    assert recommendation is not None
    (scheduler,) = first.schedulers
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert scheduler.total_steps == 6
    # the schedule section rounds its rates to paste (lrfind.core.schedules)
    peak = max(group["max_lr"] for group in scheduler.optimizer.param_groups)
    assert peak == pytest.approx(recommendation.max_lr, rel=1e-3)


def test_an_unknown_schedule_kind_is_refused_when_the_callback_is_made() -> None:
    with pytest.raises(ConfigError, match="unknown schedule kind 'one-cycle'"):
        lrfind_lightning.LrfindCallback(schedule="one-cycle")


def test_a_training_script_with_the_callback_trains_at_the_rate_it_found(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """What a user's training script does: the callback with its defaults (progress shown),
    a Trainer that logs nothing, fit; the rate it found is the one fit trained at."""
    torch.manual_seed(0)
    callback = lrfind_lightning.LrfindCallback(
        schedule="onecycle", start_lr=1e-4, end_lr=100.0, steps=80, repeats=0
    )
    trainer = pl.Trainer(
        max_steps=20, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Classifier(), loader())
    recommendation = callback.outcome.recommendation
    assert recommendation is not None
    assert callback.applied == recommendation.max_lr > 0
    assert trainer.global_step == 20
    assert float(trainer.callback_metrics["train_loss"]) < 1.0  # from ln 4 = 1.39: fit trained
    printed = capfd.readouterr().err + caplog.text
    printed += "".join(str(warning.message) for warning in caught)
    assert "self.log" not in printed


def test_without_lightning_the_integration_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "lrfind.lightning")
    with pytest.raises(ConfigError, match=re.escape("pip install 'lrfind[lightning]'")):
        importlib.import_module("lrfind.lightning")


def test_a_callback_without_a_rate_warns_once_with_the_reasons() -> None:
    from lrfind.engine.extras import warn_no_recommendation

    with pytest.warns(
        UserWarning,
        match=r"\(the loss shows no clear descent\); training goes on at the configured rate",
    ):
        warn_no_recommendation(["the loss shows no clear descent"], "rate")
    with pytest.warns(UserWarning, match=r"\(no clear descent\).*configured learning_rate"):
        warn_no_recommendation(None, "learning_rate")
