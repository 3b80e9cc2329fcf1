"""The Python API as a notebook meets it: the engine's range test and plan, with live progress
while they run and results that draw themselves.

    import lrfind
    outcome = lrfind.find_lr(model, optimizer, loss_fn, train_loader)
    outcome.plot()          # the figure of sweep.png
    outcome.suggestions()   # every method's rates, the chosen one marked

`lrfind.range_test` and `lrfind.find_lr` are the functions here. They run
lrfind.engine.finder's, which never print, and feed its callbacks to progress bars on
stderr (lrfind.outputs.progress) where someone watches: in a Jupyter kernel or when stderr is
a terminal; `progress=False` turns them off, `progress=True` on. They return the engine's
results as lrfind.outputs.notebook's subclasses, which add `plot`, `to_dataframe` and
`suggestions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from lrfind.core.arguments import check_keywords, optional_callable
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.settings import REPEATS, SWEEP_FIELDS, SweepSettings
from lrfind.engine import finder as engine
from lrfind.outputs.notebook import NotebookOutcome, NotebookResult
from lrfind.outputs.progress import SweepProgress, sweep_name


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Any,
    train_loader: Iterable[Any],
    *,
    progress: bool | None = None,
    **options: Any,
) -> NotebookResult:
    """One LR range test on your objects, analysed: lrfind.engine.finder.range_test,
    whose keyword arguments `options` are (start_lr, end_lr, steps, method, seed, callback,
    ...), with a progress bar as `progress` says (None: when someone watches).

        result = lrfind.range_test(model, optimizer, loss_fn, loader, end_lr=1, steps=80)
        result.recommendation, result.plot(), result.to_dataframe(), result.suggestions()

    Args:
        model: The network to sweep. Its weights and buffers, and the optimizer's state, are
            restored when the test ends, however it ends.
        optimizer: An optimizer over `model`'s parameters. The sweep sets its rate at every
            step; several parameter groups keep their ratios to the first.
        loss_fn: `loss_fn(outputs, targets)`, a function or a loss instance (not its class);
            None when the model computes its own loss.
        train_loader: Any iterable of batches (docs/rules.md), started again when it runs out.
        progress: True always shows a bar on stderr, False never, None when stderr is a
            terminal or a Jupyter kernel.
        **options: The engine's keyword arguments (docs/api.md): start_lr, end_lr, steps,
            mode, smoothing, divergence_factor, method, seed, device, val_batches, callback,
            stop_requested, precision, accumulate, channels_last, unpack, ranks, snapshot.

    Returns:
        The analysed sweep, a `RangeTestResult` that also has `plot()`, `to_dataframe()` and
        `suggestions()`. Its `recommendation` is None when the curve holds no answer, and
        `analysis.no_recommendation` then says why.

    Raises:
        ConfigError: Before any training: an option is out of range or unknown (the range,
            steps, method, precision, accumulate, snapshot, progress), `loss_fn` is a class,
            or the optimizer holds none of the model's parameters.
        SweepError: The sweep cannot go on: the loader yields no batches, a batch or an
            output does not follow the batch rule, the first loss is not finite, fp16
            overflows at the first rate, or there is no room to keep the model's state.
        UserCodeError: The model, the loss, the loader or the optimizer raised; the message
            says where, and the original error is its `__cause__`.
        ConfigError: Also when `options` names an argument the engine does not take, or
            one of them has the wrong type.
    """
    check_keywords("range_test", options, engine.RANGE_TEST_OPTIONS)
    settings = _sweep_settings(options)  # checked before a bar is drawn for it
    shown = SweepProgress(progress, callback=options.pop("callback", None))
    shown.sweep("sweep", settings.steps)
    try:
        result = engine.range_test(
            model, optimizer, loss_fn, train_loader, callback=shown.step, **options
        )
    finally:
        shown.stop()
    return NotebookResult.of(result, options.get("method", DEFAULT_METHOD))


def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Any,
    train_loader: Iterable[Any],
    *,
    progress: bool | None = None,
    **options: Any,
) -> NotebookOutcome:
    """lrfind's default plan on your objects (the full sweep, focused repeats, their median):
    lrfind.engine.finder.find_lr, whose keyword arguments `options` are (repeats, method,
    seed, on_sweep, and range_test's), with one progress bar per sweep as `progress` says.

        outcome = lrfind.find_lr(model, optimizer, loss_fn, loader)
        outcome.recommendation, outcome.plot(), outcome.suggestions()

    Args:
        model: As for `range_test`; each sweep starts from its weights, restored at the end.
        optimizer: As for `range_test`.
        loss_fn: As for `range_test`.
        train_loader: As for `range_test`; shuffle it, or every repeat sees the same batches.
        progress: As for `range_test`, with one bar per sweep.
        **options: The plan's keyword arguments: repeats (the most focused repeats after the
            full sweep; 0 for the full sweep alone), refine (False: the repeats sweep the full
            range), auto_range (move a wrong end of the range and sweep again), budget (the most
            steps of the whole plan, in full sweeps), epochs or training_steps (the training
            run the answer is for; 1,000 steps when neither is given), method, seed
            (the full sweep's; repeat k uses seed + k), on_sweep(repeat, settings), and
            `range_test`'s options (start_lr, end_lr, steps, ...).

    Returns:
        The plan's outcome, a `SearchOutcome` that also has `plot()`, `to_dataframe()` and
        `suggestions()`: `recommendation` (the repeats' median with its interval and
        confidence, or None when the sweeps hold no answer, `no_recommendation` then saying
        why), `sweeps` (the full sweep first) and `notes` (what the plan did beyond one sweep).

    Raises:
        ConfigError: As for `range_test`, and `repeats` outside 0 to 100.
        SweepError: As for `range_test`, from any of the sweeps.
        UserCodeError: As for `range_test`.
        ConfigError: Also when `options` names an argument neither the plan nor the engine
            takes, or one of them has the wrong type.
    """
    check_keywords("find_lr", options, engine.FIND_LR_OPTIONS)
    _sweep_settings(options)
    shown = SweepProgress(progress, callback=options.pop("callback", None))
    on_sweep = options.pop("on_sweep", None)
    repeats = options.get("repeats", REPEATS)

    def announce(repeat: int, settings: SweepSettings) -> None:
        shown.sweep(sweep_name((repeat,), repeats), settings.steps)
        if on_sweep is not None:
            on_sweep(repeat, settings)

    try:
        outcome = engine.find_lr(
            model,
            optimizer,
            loss_fn,
            train_loader,
            callback=shown.step,
            on_sweep=announce,
            **options,
        )
    finally:
        shown.stop()
    return NotebookOutcome.of(outcome, options.get("method", DEFAULT_METHOD))


def _sweep_settings(options: dict[str, Any]) -> SweepSettings:
    """The sweep's settings among `options`, checked as the engine will check them, and the
    callbacks checked here, before progress wraps them."""
    optional_callable("callback", options.get("callback"), "of one StepRecord")
    optional_callable("on_sweep", options.get("on_sweep"), "of (repeat, settings)")
    return SweepSettings(**{name: options[name] for name in SWEEP_FIELDS if name in options})
