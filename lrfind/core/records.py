"""What a sweep records, step by step, and what one sweep's result holds.

    result = analysed_result(records, STOP_DIVERGED, settings, "bottom", sweep_seconds=1.2)
    result.recommendation

Plain values shared by the engine (which fills them), the plan (which combines them) and the
outputs (which write them), so none of those needs the others to describe a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrfind.core.analysis import Analysis, Recommendation, analyze
from lrfind.core.settings import SweepSettings

STOP_COMPLETED = "completed"  # every planned step ran
STOP_DIVERGED = "diverged"  # see lrfind.core.analysis.DivergenceDetector
STOP_NON_FINITE = "non_finite"  # a loss was NaN or infinite
STOP_INTERRUPTED = "interrupted"  # stop_requested() said so (Ctrl-C, SIGTERM)


@dataclass(frozen=True)
class StepRecord:
    step: int
    lr: float
    loss: float
    smoothed_loss: float  # causal EMA, the value the divergence rule watches
    val_loss: float | None = None  # mean loss of the fixed held-out batches, when given


@dataclass(frozen=True)
class SnapshotPlace:
    """Where a range test kept the caller's state while it swept (lrfind.engine.snapshot)."""

    place: str  # device, cpu or disk (SNAPSHOT_PLACES less auto)
    state_bytes: int  # state dict, buffers, gradients and optimizer state, each tensor once
    reason: str  # why there, as a phrase

    def to_dict(self) -> dict[str, object]:
        return {"place": self.place, "state_bytes": self.state_bytes, "reason": self.reason}


@dataclass(frozen=True)
class RangeTestResult:
    records: list[StepRecord]
    stop_reason: str
    settings: SweepSettings
    analysis: Analysis
    sweep_seconds: float
    skipped_steps: int = 0  # fp16 steps the GradScaler skipped (the LR did not advance)
    group_ratios: tuple[float, ...] = (1.0,)  # each group's LR / the reference group's (core.ramp)
    snapshot: SnapshotPlace | None = None  # None for stacked copies, which need none

    @property
    def lrs(self) -> np.ndarray:
        return np.array([record.lr for record in self.records])

    @property
    def losses(self) -> np.ndarray:
        return np.array([record.loss for record in self.records])

    @property
    def val_losses(self) -> np.ndarray | None:
        if not self.records or self.records[0].val_loss is None:
            return None
        return np.array([record.val_loss for record in self.records], dtype=float)

    @property
    def recommendation(self) -> Recommendation | None:
        return self.analysis.recommendation

    def analysis_by(self, method: str) -> Analysis:
        """This sweep's records analysed by another suggestion method, with its settings."""
        return _analysis(self.records, self.settings, method)


def _analysis(records: list[StepRecord], settings: SweepSettings, method: str) -> Analysis:
    return analyze(
        [record.lr for record in records],
        [record.loss for record in records],
        smoothing=settings.smoothing,
        divergence_factor=settings.divergence_factor,
        method=method,
        planned_steps=settings.steps,
    )


def analysed_result(
    records: list[StepRecord],
    stop_reason: str,
    settings: SweepSettings,
    method: str,
    sweep_seconds: float,
    *,
    skipped_steps: int = 0,
    group_ratios: tuple[float, ...] = (1.0,),
) -> RangeTestResult:
    """One sweep's records, analysed as every engine reports them."""
    return RangeTestResult(
        records=records,
        stop_reason=stop_reason,
        settings=settings,
        analysis=_analysis(records, settings, method),
        sweep_seconds=sweep_seconds,
        skipped_steps=skipped_steps,
        group_ratios=group_ratios,
    )
