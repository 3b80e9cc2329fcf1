"""TensorBoard scalars for sweeps and training runs (the optional `lrfind[tensorboard]` extra).

    lrfind run --tensorboard tb/ && tensorboard --logdir tb/

Every sweep and every trained schedule is its own TensorBoard run (a sub-folder), so runs
with the same tags overlay: `sweep/loss` against the step for each repeat; `lr`, losses and
accuracies for each schedule.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lrfind.core.plan import SearchOutcome
from lrfind.errors import ConfigError, LrfindError
from lrfind.outputs.plots import HistoryLines

MISSING = (
    "--tensorboard needs the tensorboard package, which is not installed. Install it with "
    "`pip install 'lrfind[tensorboard]'` (or `pip install tensorboard`), or drop --tensorboard."
)


def check_tensorboard(folder: Path | None = None) -> None:
    """Fail before any work when the extra is missing or `folder` cannot hold TensorBoard
    runs (it is a file, or lies under one)."""
    if folder is not None:
        blocked = next(
            (place for place in (Path(folder), *Path(folder).parents) if place.exists()), None
        )
        if blocked is not None and not blocked.is_dir():
            raise ConfigError(
                f"--tensorboard {folder} cannot be a folder: {blocked} is a file. Give a "
                "folder for the TensorBoard runs, e.g. --tensorboard tb/."
            )
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise LrfindError(MISSING) from None


def open_writer(folder: Path) -> Any:
    check_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


def write_sweep_scalars(folder: Path, outcome: SearchOutcome, summary: str) -> None:
    """Loss, smoothed loss and LR per step of every sweep, and the recommendation as text."""
    for sweep in outcome.sweeps:
        name = "full" if sweep.repeat == 0 else f"repeat-{sweep.repeat}"
        writer = open_writer(folder / name)
        analysis = sweep.result.analysis
        try:
            for step, (lr, loss, smoothed) in enumerate(
                zip(analysis.lrs, analysis.losses, analysis.smoothed, strict=True)
            ):
                writer.add_scalar("sweep/lr", float(lr), step)
                if math.isfinite(loss):
                    writer.add_scalar("sweep/loss", float(loss), step)
                if math.isfinite(smoothed):
                    writer.add_scalar("sweep/smoothed_loss", float(smoothed), step)
            if sweep.repeat == 0:
                writer.add_text("recommendation", summary)
        finally:
            writer.close()


def write_training_scalars(folder: Path, run: HistoryLines, steps_per_epoch: int) -> None:
    """LR per step; losses and accuracies per epoch, at the epoch's last step."""
    writer = open_writer(folder)
    try:
        for step, lr in enumerate(run.step_lrs):
            writer.add_scalar("lr", lr, step)
        for index, epoch in enumerate(run.epochs):
            for tag in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
                value = getattr(run, tag)[index]
                if value is not None and math.isfinite(value):
                    writer.add_scalar(tag, value, epoch * steps_per_epoch)
    finally:
        writer.close()
