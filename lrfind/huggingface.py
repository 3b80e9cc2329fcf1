"""lrfind on Hugging Face transformers: a model that computes its own loss needs nothing more
than the Python API, and `LrfindCallback` runs the test inside `Trainer.train`
(`pip install 'lrfind[hf]'`).

    import lrfind
    outcome = lrfind.find_lr(model, optimizer, None, loader)  # batches: input_ids, ..., labels
    from lrfind.huggingface import LrfindCallback
    trainer = Trainer(model, args, train_dataset=dataset, callbacks=[LrfindCallback()])
    trainer.train()                                # sweeps first, then trains at the rate found

Mapping batches go to the model as keyword arguments, `labels` included, and the `loss` of the
`ModelOutput` (or the first item of a `return_dict=False` tuple) is each step's loss
(lrfind.setup.batches, docs/rules.md). docs/integrations.md has the rules of the callback.
"""

from __future__ import annotations

from typing import Any

from lrfind import api
from lrfind.engine.extras import missing_extra, warn_no_recommendation
from lrfind.engine.rescale import rescale_rates
from lrfind.errors import ConfigError
from lrfind.outputs.notebook import NotebookOutcome

try:
    import transformers
except ImportError as error:
    raise missing_extra(error, "hf") from error

# Schedules that hold the rate: they get the recommendation's constant `lr`, the others (the
# rate is their peak) its `max_lr`.
CONSTANT_SCHEDULES = ("constant", "constant_with_warmup")


class LrfindCallback(transformers.TrainerCallback):
    """Runs lrfind's default plan when `Trainer.train` begins, on the model, optimizer and
    training batches it is about to use, then sets the recommended rate before the first step.

        trainer = Trainer(model, args, train_dataset=dataset, callbacks=[LrfindCallback()])

    The Trainer's scheduler keeps its kind (`lr_scheduler_type`) and shape; all its rates are
    scaled so that the configured `learning_rate` becomes the recommendation's `max_lr` (the
    peak of a decaying or warmup schedule), or its constant `lr` under a constant schedule
    (lrfind.engine.rescale). Each step's loss is the model's own (it computes it from
    `labels`); `loss_fn(outputs, targets)` is for a model that does not. The sweep runs with the
    Trainer's bf16/fp16 and gradient accumulation unless `options` (lrfind.find_lr's: steps,
    start_lr, end_lr, repeats, ...) say otherwise. `outcome` then holds the result and
    `applied` the rate set, or None when the sweep gave no recommendation (a warning says why;
    training goes on at the configured rate).

    Args:
        loss_fn: `loss_fn(outputs, targets)` for a model that does not compute its own loss;
            None (the default) uses the model's.
        progress: As for `lrfind.find_lr`.
        **options: `lrfind.find_lr`'s keyword arguments (steps, start_lr, end_lr, repeats,
            method, seed, ...), except unpack; they override the Trainer's bf16/fp16 and
            gradient accumulation.

    Raises:
        ConfigError: At construction: `options` hold unpack. When training begins: the
            Trainer runs several processes or passes no model, optimizer or train
            dataloader to its callbacks, or anything `lrfind.find_lr` refuses.
        SweepError: As for `lrfind.find_lr`, raised from `Trainer.train`.
        UserCodeError: As for `lrfind.find_lr`, raised from `Trainer.train`.
    """

    def __init__(
        self, *, loss_fn: Any = None, progress: bool | None = None, **options: Any
    ) -> None:
        super().__init__()
        if "unpack" in options:
            raise ConfigError(
                "unpack= is not taken here: the Trainer's data collator shapes the batches. "
                "Give the model the columns it takes (and `labels`)."
            )
        self.loss_fn = loss_fn
        self.progress = progress
        self.options = options
        self.outcome: NotebookOutcome | None = None
        self.applied: float | None = None

    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if args.world_size > 1:
            raise ConfigError(
                f"LrfindCallback runs on one device; this Trainer has {args.world_size} "
                "processes. Run lrfind.find_lr(model, optimizer, None, loader) on one device "
                "before training, and set the learning_rate it recommends."
            )
        if model is None or optimizer is None or train_dataloader is None:
            raise ConfigError(
                "LrfindCallback needs the model, optimizer and train dataloader that "
                "Trainer.train passes to on_train_begin; this Trainer passed none. Use "
                "lrfind.find_lr(model, optimizer, None, loader) instead."
            )
        # accelerate wraps the optimizer, the scheduler and the loader: the sweep uses the torch
        # objects inside, so accelerate's own step and epoch counts are left as they were
        torch_optimizer = getattr(optimizer, "optimizer", optimizer)
        schedulers = (
            [] if lr_scheduler is None else [getattr(lr_scheduler, "scheduler", lr_scheduler)]
        )
        loader = getattr(train_dataloader, "base_dataloader", train_dataloader)
        precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
        options = {
            "precision": precision,
            "accumulate": int(args.gradient_accumulation_steps),
            **self.options,
        }
        self.outcome = api.find_lr(
            model, torch_optimizer, self.loss_fn, loader, progress=self.progress, **options
        )
        recommendation = self.outcome.recommendation
        if recommendation is None:
            self.applied = None
            warn_no_recommendation(self.outcome.no_recommendation, "learning_rate")
            return
        kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        constant = not schedulers or kind in CONSTANT_SCHEDULES
        self.applied = recommendation.lr if constant else recommendation.max_lr
        rescale_rates(torch_optimizer, schedulers, self.applied)
