"""Live progress of sweeps on stderr: the bars of `lrfind run` and of the notebook API.

    bars = sweep_bars(progress=None)   # None where stderr is neither a terminal nor Jupyter
    bars.sweep("full sweep", total=100)
    bars.step(record)                  # the engine's callback, one StepRecord per step
    bars.stop()

In a terminal, rich draws bars that update in place. In a Jupyter kernel rich draws them in
a widget when ipywidgets is installed; without it, one text line per sweep is rewritten in
place (`\\r`, which notebooks honour). Elsewhere (a pipe, a log file) the bars are printed once,
as they stand when they stop. The engine never prints: this is fed by its callbacks.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Protocol

from lrfind.core.records import StepRecord
from lrfind.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

# The text fallback rewrites its line this many times per sweep at most.
TEXT_UPDATES_PER_SWEEP = 50


class Bars(Protocol):
    def sweep(self, name: str, total: int) -> None: ...
    def step(self, record: StepRecord) -> None: ...
    def stop(self) -> None: ...


def sweep_name(repeats: tuple[int, ...], count: int) -> str:
    """How a sweep is named in the bars: the full sweep, one repeat of at most `count` (they
    stop once their median is pinned), or several repeats stacked into one sweep."""
    if repeats == (0,):
        return "full sweep"
    if len(repeats) == 1:
        return f"repeat {repeats[0]} (up to {count})"
    return f"repeats {repeats[0]}-{repeats[-1]} stacked"


def sweep_bars(progress: bool | None, console: Console | None = None) -> Bars | None:
    """The display `progress` asks for on `console` (stderr by default): None (automatic) shows
    bars where stderr is a terminal or a Jupyter kernel, True always, False never."""
    from rich.console import Console

    console = console or Console(stderr=True, emoji=False)
    interactive = console.is_terminal or console.is_jupyter
    if progress is False or (progress is None and not interactive):
        return None
    if console.is_jupyter and importlib.util.find_spec("ipywidgets") is None:
        return TextBars(console.file)
    return RichBars(console)


class RichBars:
    """One rich bar per sweep, with its step, LR and smoothed loss; a sweep that stopped
    early keeps the bar where it stopped."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description:>10}[/]"),
            BarColumn(),
            TextColumn("step {task.completed:>4.0f}/{task.total:.0f}"),
            TextColumn("lr {task.fields[lr]:>9.3g}"),
            TextColumn("loss {task.fields[loss]:>8.4g}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None
        self.progress.start()

    def sweep(self, name: str, total: int) -> None:
        self._end_task()
        self.task = self.progress.add_task(name, total=total, lr=float("nan"), loss=float("nan"))

    def step(self, record: StepRecord) -> None:
        if self.task is not None:
            self.progress.update(
                self.task, completed=record.step + 1, lr=record.lr, loss=record.smoothed_loss
            )

    def stop(self) -> None:
        self._end_task()
        self.progress.stop()

    def _end_task(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, total=self.progress.tasks[self.task].completed)


class TextBars:
    """Plain text for a notebook without ipywidgets: one line per sweep, rewritten in place;
    a sweep that stopped early ends on the step it stopped at, as a rich bar does."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.name = ""
        self.total = 0
        self.last: StepRecord | None = None  # written, its line not yet ended

    def sweep(self, name: str, total: int) -> None:
        self._end_line()
        self.name, self.total = name, total

    def step(self, record: StepRecord) -> None:
        done = record.step + 1
        every = max(1, self.total // TEXT_UPDATES_PER_SWEEP)
        if done % every == 0 or done == self.total:
            self._write(record, self.total)
        self.last = record

    def stop(self) -> None:
        self._end_line()

    def _write(self, record: StepRecord, total: int) -> None:
        self.stream.write(
            f"\r{self.name}: step {record.step + 1}/{total}  lr {record.lr:.3g}  "
            f"loss {record.smoothed_loss:.4g}"
        )
        self.stream.flush()

    def _end_line(self) -> None:
        if self.last is not None:
            self._write(self.last, self.last.step + 1)
            self.stream.write("\n")
            self.stream.flush()
            self.last = None


class SweepProgress:
    """The bars of a run's or an API call's sweeps, opened at the first recorded step (a call
    refused before any work shows none), and the caller's own callback, which sees every
    record as before. `progress` as for `sweep_bars`."""

    def __init__(
        self,
        progress: bool | None,
        console: Console | None = None,
        callback: Callable[[StepRecord], None] | None = None,
    ) -> None:
        if progress is not None and not isinstance(progress, bool):
            raise ConfigError(
                f"progress must be True (always show bars), False (never) or None (when "
                f"stderr is a terminal or a Jupyter kernel); got {progress!r}."
            )
        self.progress = progress
        self.console = console
        self.callback = callback
        self.bars: Bars | None = None
        self.opened = False
        self.coming: tuple[str, int] | None = None  # the sweep announced, not yet stepped

    def sweep(self, name: str, total: int) -> None:
        self.coming = (name, total)

    def step(self, record: StepRecord) -> None:
        if self.coming is not None:
            if not self.opened:
                self.bars, self.opened = sweep_bars(self.progress, self.console), True
            if self.bars is not None:
                self.bars.sweep(*self.coming)
            self.coming = None
        if self.bars is not None:
            self.bars.step(record)
        if self.callback is not None:
            self.callback(record)

    def stop(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
