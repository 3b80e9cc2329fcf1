"""`lrfind analyze` as a function: re-analyse a saved curve and write a run folder for it.

    lrfind analyze runs/lenet-fashion-mnist-20261121-101500/sweep.csv --method valley

Reads lrfind's own sweep.csv or any CSV with `lr` and `loss` columns, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrfind.core.analysis import Recommendation, analyze, check_method, combine, unconfirmed
from lrfind.core.settings import SweepSettings
from lrfind.outputs.curves import AnalysedCurve, read_curve_csv, write_curve_files
from lrfind.outputs.documents import document, recommendation_blocks, sweep_document
from lrfind.outputs.files import RunFolder, claim_run_folder, write_json


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
    check_method(method)
    SweepSettings(smoothing=smoothing, divergence_factor=divergence_factor)  # validates both
    path = Path(path)
    out = out or path.parent / f"reanalysed-{method}"
    with claim_run_folder(out, overwrite) as folder:
        return _reanalyse(path, out, folder, method, smoothing, divergence_factor)


def _reanalyse(
    path: Path,
    out: Path,
    folder: RunFolder,
    method: str,
    smoothing: float,
    divergence_factor: float,
) -> Reanalysis:
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
        for curve in read_curve_csv(path)
    ]
    main = curves[0].analysis
    recommendation, reasons = main.recommendation, main.no_recommendation
    if len(curves) > 1 and recommendation is not None:
        repeats = [curve.analysis.recommendation for curve in curves[1:]]
        recommendation = combine(repeats, method, full=main.recommendation)
        reasons = unconfirmed(repeats)
    log_x = bool(np.allclose(np.diff(np.log10(main.lrs)), np.log10(main.lrs[1] / main.lrs[0])))
    written = document(
        source=str(path),
        analysis={"method": method, "smoothing": smoothing, "divergence_factor": divergence_factor},
        sweep=sweep_document(main, len(main.lrs), "as recorded"),
        repeats=[
            {"repeat": curve.repeat, **sweep_document(curve.analysis, len(curve.analysis.lrs))}
            for curve in curves[1:]
        ],
        **recommendation_blocks(recommendation, reasons, main.diagnostics, None),
    )
    with folder.staged() as staging:
        title = f"Re-analysis of {path} ({method})"
        write_curve_files(staging, curves, recommendation, title, log_x=log_x)
        write_json(staging / "result.json", written)
    return Reanalysis(out=out, curves=curves, recommendation=recommendation, document=written)
