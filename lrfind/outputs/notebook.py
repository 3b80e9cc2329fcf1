"""What a notebook shows of a range test: its figure, its rows and every method's suggestion.

    outcome = lrfind.find_lr(model, optimizer, loss_fn, loader)
    outcome.plot()          # sweep.png's figure; Jupyter shows it once, as the cell's value
    outcome.to_dataframe()  # sweep.csv's rows
    outcome.suggestions()   # every suggestion method's rates, the chosen one marked

`lrfind.range_test` and `lrfind.find_lr` (lrfind.api) return these classes. They subclass
the engine's `RangeTestResult` and the plan's `SearchOutcome`, so every attribute of those
works as before; they add the method the rates were asked of, and the three views. The
figure is drawn by the code that draws sweep.png (lrfind.outputs.plots), the rows are those
of sweep.csv (lrfind.outputs.curves), the suggestions come from lrfind.core.plan.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import io
import math
from typing import TYPE_CHECKING, Any

from lrfind.core.analysis import Recommendation
from lrfind.core.methods import DEFAULT_METHOD
from lrfind.core.plan import SearchOutcome, Sweep, recommendations_by_method
from lrfind.core.records import RangeTestResult
from lrfind.outputs.curves import CSV_COLUMNS, AnalysedCurve, plot_marks, sweep_rows
from lrfind.outputs.plots import sweep_figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

SUGGESTION_COLUMNS = ("chosen", "max_lr", "base_lr", "lr", "confidence")


class _Views(abc.ABC):
    """plot, to_dataframe and suggestions, for anything that can say which sweeps it ran
    (`_outcome`: the plan's view of them) and which method it asked (`method`)."""

    method: str

    @abc.abstractmethod
    def _outcome(self) -> SearchOutcome: ...

    def plot(self, ax: Any = None, *, title: str | None = None) -> Figure:
        """Loss against LR, as sweep.png draws it: the full sweep raw and smoothed, every
        repeat smoothed, the held-out loss when recorded, the recommended base_lr, max_lr
        (its legend entry names the chosen method) and constant lr, where the loss diverged,
        and each other method's max_lr as a tick on the x axis.

        Draws into `ax` when given (a matplotlib Axes) and returns its figure; otherwise
        returns a new figure that is not pyplot's, so Jupyter shows it once.
        """
        outcome = self._outcome()
        main = outcome.main
        chosen = outcome.recommendation
        others = tuple(
            (method, answer.max_lr)
            for method, answer in recommendations_by_method(outcome).items()
            if method != self.method and answer is not None
        )
        marks = dataclasses.replace(
            plot_marks(main.analysis, chosen),
            lr=None if chosen is None else chosen.lr,
            method=None if chosen is None else self.method,
            other_methods=others,
        )
        return sweep_figure(
            [curve.lines() for curve in _curves(outcome)],
            marks,
            title or _title(outcome, self.method),
            log_x=main.settings.mode == "exp",
            axes=ax,
            figure_class=None if ax is not None else _notebook_figure(),
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per step of every sweep, with sweep.csv's columns (repeat, step, lr,
        loss, smoothed_loss, val_loss): `smoothed_loss` is the analysis's lag-free
        smoothing (NaN from divergence on), `val_loss` NaN when no held-out loss was
        recorded."""
        import pandas as pd

        lines = [curve.lines() for curve in _curves(self._outcome())]
        frame = pd.DataFrame(sweep_rows(lines), columns=list(CSV_COLUMNS))
        return frame.astype({"repeat": int, "step": int, "val_loss": float})

    def suggestions(self) -> pd.DataFrame:
        """What every suggestion method recommends from these sweeps, one row per method
        (its name is the index): `chosen` marks the method this result was asked for,
        whose row is its own recommendation; the rates are NaN where a method finds no
        answer."""
        import pandas as pd

        outcome = self._outcome()
        answers = recommendations_by_method(outcome)
        answers[self.method] = outcome.recommendation
        rows = [
            _suggestion_row(method == self.method, answer) for method, answer in answers.items()
        ]
        frame = pd.DataFrame(rows, columns=list(SUGGESTION_COLUMNS), index=list(answers))
        frame.index.name = "method"
        return frame


@dataclasses.dataclass(frozen=True)
class NotebookResult(RangeTestResult, _Views):
    """One sweep's result (lrfind.range_test), with plot, to_dataframe and suggestions."""

    method: str = DEFAULT_METHOD

    @classmethod
    def of(cls, result: RangeTestResult, method: str) -> NotebookResult:
        fields = {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
        return cls(**{**fields, "method": method})

    def _outcome(self) -> SearchOutcome:
        # One sweep as the plan would hold it; range_test's reading of an interrupted sweep
        # stands as it is (unlike the plan's), so every method's is read the same way.
        return SearchOutcome(
            [Sweep(0, self)],
            self.recommendation,
            [],
            no_recommendation=self.analysis.no_recommendation,
        )


@dataclasses.dataclass(frozen=True)
class NotebookOutcome(SearchOutcome, _Views):
    """The default plan's outcome (lrfind.find_lr), with plot, to_dataframe and suggestions;
    each sweep's result is a NotebookResult."""

    method: str = DEFAULT_METHOD

    @classmethod
    def of(cls, outcome: SearchOutcome, method: str) -> NotebookOutcome:
        fields = {field.name: getattr(outcome, field.name) for field in dataclasses.fields(outcome)}
        sweeps = [
            Sweep(sweep.repeat, NotebookResult.of(sweep.result, method)) for sweep in outcome.sweeps
        ]
        return cls(**{**fields, "sweeps": sweeps, "method": method})

    def _outcome(self) -> SearchOutcome:
        return self


def _curves(outcome: SearchOutcome) -> list[AnalysedCurve]:
    return [
        AnalysedCurve(sweep.repeat, sweep.result.analysis, sweep.result.val_losses)
        for sweep in outcome.sweeps
    ]


def _title(outcome: SearchOutcome, method: str) -> str:
    repeats = len(outcome.sweeps) - 1
    ran = "one sweep" if not repeats else f"full sweep and {repeats} focused repeats"
    answer = outcome.recommendation
    verdict = "no recommendation" if answer is None else f"{answer.confidence} confidence"
    return f"LR range test: {ran}\n{method} rule, {verdict}"


def _suggestion_row(chosen: bool, answer: Recommendation | None) -> tuple[object, ...]:
    if answer is None:
        return (chosen, math.nan, math.nan, math.nan, "no answer")
    return (chosen, answer.max_lr, answer.base_lr, answer.lr, answer.confidence)


@functools.cache
def _notebook_figure() -> type[Figure]:
    """matplotlib's Figure that also shows itself as a PNG in IPython (`_repr_png_`): a
    figure made without pyplot has no inline formatter and would show as text."""
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    return NotebookFigure
