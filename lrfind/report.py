"""Turning analysed curves into a run folder: sweep.csv, sweep.png and result.json.

    lrfind analyze runs/lenet-fashion-mnist-20261121-101500/sweep.csv --method valley

Shared by `lrfind run` (lrfind.pipeline) and `lrfind analyze`, which re-analyses a saved curve
(lrfind's own sweep.csv, or any CSV with `lr` and `loss` columns) without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from lrfind.analysis import Analysis, Recommendation, analyze, combine
from lrfind.export import (
    CurveRows,
    PlotMarks,
    check_run_folder,
    read_curve_csv,
    render_plot,
    staged_run_folder,
    write_json,
    write_sweep_csv,
)
from lrfind.schedules import schedule_parameters

RESULT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class AnalysedCurve:
    repeat: int
    analysis: Analysis
    val_losses: np.ndarray | None = None


def write_outputs(
    folder: Path,
    curves: list[AnalysedCurve],
    recommendation: Recommendation | None,
    title: str,
    log_x: bool = True,
) -> None:
    """sweep.csv and sweep.png: the full sweep (first) and every repeat."""
    rows = [
        CurveRows(
            repeat=curve.repeat,
            lrs=curve.analysis.lrs,
            losses=curve.analysis.losses,
            smoothed=curve.analysis.smoothed,
            val_losses=curve.val_losses,
        )
        for curve in curves
    ]
    write_sweep_csv(folder / "sweep.csv", rows)
    main = curves[0].analysis
    divergence = main.divergence_index
    marks = PlotMarks(
        base_lr=None if recommendation is None else recommendation.base_lr,
        max_lr=None if recommendation is None else recommendation.max_lr,
        divergence_lr=main.divergence_lr,
        divergence_loss=None if divergence is None else float(main.losses[divergence]),
    )
    render_plot(folder / "sweep.png", rows, marks, title, log_x=log_x)


def recommendation_document(
    recommendation: Recommendation | None, diagnostics: list[str], steps_per_epoch: int | None
) -> dict[str, Any]:
    """The `recommendation` block of result.json, with schedules and diagnostics."""
    if recommendation is None:
        return {
            "base_lr": None,
            "max_lr": None,
            "lr": None,
            "method": None,
            "confidence": "none",
            "confidence_reasons": ["the curve holds no usable descent to read a rate from"],
            "schedules": None,
            "diagnostics": diagnostics,
        }
    return {
        **recommendation.to_dict(),
        "schedules": schedule_parameters(
            recommendation.base_lr, recommendation.max_lr, recommendation.lr, steps_per_epoch
        ),
        "diagnostics": diagnostics,
    }


def sweep_document(
    analysis: Analysis, steps_planned: int, stop_reason: str = "as recorded"
) -> dict[str, Any]:
    """What one sweep did, for result.json."""
    return {
        "steps_planned": steps_planned,
        "steps_run": len(analysis.lrs),
        "stop_reason": stop_reason,
        "first_lr": float(analysis.lrs[0]),
        "last_lr": float(analysis.lrs[-1]),
        "divergence_step": analysis.divergence_index,
        "divergence_lr": analysis.divergence_lr,
        "min_smoothed_loss": float(analysis.smoothed[analysis.min_index]),
        "min_smoothed_loss_lr": float(analysis.lrs[analysis.min_index]),
        "first_loss": float(analysis.losses[0]),
        "usable_points": analysis.usable_points,
        "suggestion": None if analysis.recommendation is None else analysis.recommendation.max_lr,
    }


@dataclass(frozen=True)
class Reanalysis:
    out: Path
    curves: list[AnalysedCurve]
    recommendation: Recommendation | None
    document: dict[str, Any]


def analyze_file(
    path: Path,
    *,
    method: str,
    smoothing: float,
    divergence_factor: float,
    out: Path | None = None,
    overwrite: bool = False,
) -> Reanalysis:
    """Re-analyse a saved curve and write a run folder for it.

    With several repeats in the file (an lrfind run), the recommendation combines them as
    the run did: the median of the repeats, base_lr from the full sweep (repeat 0).
    """
    path = Path(path)
    out = out or path.parent / f"reanalysed-{method}"
    check_run_folder(out, overwrite)
    loaded = read_curve_csv(path)
    curves = [
        AnalysedCurve(
            curve.repeat,
            analyze(
                curve.lrs,
                curve.losses,
                smoothing=smoothing,
                divergence_factor=divergence_factor,
                method=method,
            ),
            curve.val_losses,
        )
        for curve in loaded
    ]
    main = curves[0].analysis
    recommendation = main.recommendation
    if len(curves) > 1:
        repeats = [curve.analysis.recommendation for curve in curves[1:]]
        recommendation = combine(repeats, method, full=main.recommendation)
    log_x = bool(np.allclose(np.diff(np.log10(main.lrs)), np.log10(main.lrs[1] / main.lrs[0])))
    document = {
        "format_version": RESULT_FORMAT_VERSION,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "source": str(path),
        "analysis": {
            "method": method,
            "smoothing": smoothing,
            "divergence_factor": divergence_factor,
        },
        "sweep": sweep_document(main, len(main.lrs), "as recorded"),
        "repeats": [
            {"repeat": curve.repeat, **sweep_document(curve.analysis, len(curve.analysis.lrs))}
            for curve in curves[1:]
        ],
        "recommendation": recommendation_document(recommendation, main.diagnostics, None),
    }
    with staged_run_folder(out, overwrite) as staging:
        write_outputs(
            staging, curves, recommendation, f"Re-analysis of {path} ({method})", log_x=log_x
        )
        write_json(staging / "result.json", document)
    return Reanalysis(out=out, curves=curves, recommendation=recommendation, document=document)
