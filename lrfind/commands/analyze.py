"""`lrfind analyze` as a function: re-analyse a saved curve and write a run folder for it.

    lrfind analyze runs/lenet-fashion-mnist-20261121-101500/sweep.csv --method valley

Reads lrfind's own sweep.csv or any CSV with `lr` and `loss` columns, without torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrfind.core.analysis import Recommendation, analyze, check_method
from lrfind.core.horizon import scaled, stored_horizon
from lrfind.core.plan import answer_of_sweeps
from lrfind.core.settings import SweepSettings
from lrfind.errors import CurveFileError, LrfindError
from lrfind.outputs.curves import AnalysedCurve, read_curve_csv, write_curve_files
from lrfind.outputs.documents import document, read_result, recommendation_blocks, sweep_document
from lrfind.outputs.files import RunFolder, claim_run_folder, write_json
from lrfind.settings.paths import os_refusal


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

    With several repeats in the file (an lrfind run), the recommendation combines them by the
    run's own rule (lrfind.core.plan.answer_of_sweeps): the median of the finished repeats,
    base_lr from the full sweep (repeat 0).
    """
    check_method(method)
    SweepSettings(smoothing=smoothing, divergence_factor=divergence_factor)  # validates both
    path = Path(path)
    try:
        os.stat(path)  # a path the OS refuses is named before the folder beside it is claimed
    except FileNotFoundError:
        pass  # the reader says so
    except OSError as error:
        raise CurveFileError(os_refusal(error, "curve file", path)) from None
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
    stops, notes, horizon = _run_record(path, [curve.repeat for curve in curves])
    recommendation, reasons, interrupted = answer_of_sweeps(
        main,
        [(curve.analysis, stops[curve.repeat]) for curve in curves[1:]],
        method,
        stops[curves[0].repeat],
    )
    if recommendation is not None and horizon is not None:
        recommendation = scaled(recommendation, horizon)
    log_x = bool(np.allclose(np.diff(np.log10(main.lrs)), np.log10(main.lrs[1] / main.lrs[0])))
    written = document(
        source=str(path),
        analysis={"method": method, "smoothing": smoothing, "divergence_factor": divergence_factor},
        sweep=sweep_document(main, len(main.lrs), "as recorded"),
        repeats=[
            {"repeat": curve.repeat, **sweep_document(curve.analysis, len(curve.analysis.lrs))}
            for curve in curves[1:]
        ],
        interrupted=interrupted,
        **recommendation_blocks(recommendation, reasons, notes + main.diagnostics, None),
    )
    with folder.staged() as staging:
        title = f"Re-analysis of {path} ({method})"
        write_curve_files(staging, curves, recommendation, title, log_x=log_x)
        write_json(staging / "result.json", written)
    return Reanalysis(out=out, curves=curves, recommendation=recommendation, document=written)


def _run_record(
    path: Path, repeats: list[int]
) -> tuple[dict[int, str], list[str], dict[str, object] | None]:
    """Why each sweep of the file stopped, and the training run its answer was scaled for, as
    the run's result.json beside it says (a sweep.csv alone cannot tell a sweep cut by Ctrl-C
    from one that ran its course, nor which optimizer trained it), so that the re-analysis
    combines the same sweeps as the run did and answers for the same run; "as recorded" and
    no scaling for a file from elsewhere. A note when a result.json is there but unusable."""
    stops = dict.fromkeys(repeats, "as recorded")
    beside = path.parent / "result.json"
    if not beside.is_file():
        return stops, [], None
    try:
        written = read_result(beside)
        recorded = {0: written["sweep"]["stop_reason"]}
        recorded |= {item["repeat"]: item["stop_reason"] for item in written.get("repeats", [])}
        block = (written.get("recommendation") or {}).get("horizon")
        horizon = stored_horizon(block)
    except (LrfindError, KeyError, TypeError, AttributeError) as error:
        return stops, [
            f"{beside} could not tell which sweeps were interrupted ({error}), so every sweep "
            "of the file counts as finished."
        ], None  # fmt: skip
    if sorted(recorded) != sorted(repeats):
        return stops, [], None  # a result of other sweeps than this file's: not this file's run
    notes = []
    if block is not None and horizon is None:
        notes.append(
            f"{beside} holds a recommendation.horizon that lrfind could not have written "
            f"({repr(block)[:80]}), so the answer is as read from the curves, not scaled "
            "for the training run; rerun `lrfind run` for a scaled one."
        )
    return {repeat: str(recorded[repeat]) for repeat in repeats}, notes, horizon
