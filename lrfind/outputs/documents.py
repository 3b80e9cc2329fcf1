"""The JSON documents lrfind writes (result.json, train.json) and the reader that checks them.

    document = read_result(Path("runs/lenet/result.json"))
    document["recommendation"]["max_lr"]     # recommendation is null when the curve holds none

Every document opens with `format_version` and `created`; the blocks that `lrfind run` and
`lrfind analyze` share (one sweep, the recommendation with its schedules) are built here
once. `read_result` refuses what is not an lrfind result, or one of a newer format.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from lrfind.core.analysis import Analysis, Recommendation
from lrfind.core.plan import SearchOutcome
from lrfind.core.records import SnapshotPlace
from lrfind.core.schedules import Bounds, schedule_parameters
from lrfind.errors import ConfigError
from lrfind.settings.formats import cut_document, json_ends_early, read_text
from lrfind.settings.paths import os_refusal

# Raised when a reader of the previous version would misread a document. Version 2: a curve
# without an answer has `recommendation: null` and its reasons in `no_recommendation`;
# `diagnostics` moved from the recommendation block to the top level.
RESULT_FORMAT_VERSION = 2


def document(**blocks: Any) -> dict[str, Any]:
    """A document: the format version and creation time, then `blocks` in order."""
    return {
        "format_version": RESULT_FORMAT_VERSION,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        **blocks,
    }


def recommendation_blocks(
    recommendation: Recommendation | None,
    reasons: list[str],
    diagnostics: list[str],
    steps_per_epoch: int | None,
) -> dict[str, Any]:
    """The last blocks of result.json: what went wrong with the curve (`diagnostics`), why
    there is no recommendation (`reasons`) when there is none, and the `recommendation` with
    its schedules, or null."""
    if recommendation is None:
        reasons = reasons or ["the curve holds no descent to read a rate from"]
        block = None
    else:
        reasons = []
        block = {
            **recommendation.to_dict(),
            "schedules": schedule_parameters(Bounds.of(recommendation), steps_per_epoch),
        }
    return {
        "diagnostics": diagnostics,
        "no_recommendation": reasons,
        "recommendation": block,
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


def search_blocks(outcome: SearchOutcome, seed: int) -> dict[str, Any]:
    """The blocks of result.json that describe the plan's sweeps and what they recommend."""
    main = outcome.main
    return {
        "sweep": {
            **sweep_document(main.analysis, main.settings.steps, main.stop_reason),
            "snapshot": _snapshot_block(main.snapshot),
        },
        "repeats": [
            {
                "repeat": sweep.repeat,
                "seed": seed + sweep.repeat,
                **sweep_document(
                    sweep.result.analysis, sweep.result.settings.steps, sweep.result.stop_reason
                ),
                "snapshot": _snapshot_block(sweep.result.snapshot),
            }
            for sweep in outcome.sweeps[1:]
        ],
        "steps_total": outcome.steps_run,
        # Sweeps the plan replaced (denser or re-ranged full sweeps, set-aside repeats): not
        # in sweep.csv, but trained.
        "steps_set_aside": outcome.steps_trained - outcome.steps_run,
    }


def _snapshot_block(snapshot: SnapshotPlace | None) -> dict[str, object] | None:
    """Where the sweep kept the model's state (lrfind.engine.snapshot); null for stacked
    copies, which keep none."""
    return None if snapshot is None else snapshot.to_dict()


def read_result(path: Path) -> dict[str, Any]:
    """A result.json of `lrfind run` or `lrfind analyze` (the latter has no `config` block),
    in today's shape whatever its format version, and checked: every field that apply, train
    and analyze read holds the kind of value lrfind writes there, so an old, edited or damaged
    document is refused here, by its field, rather than met later as a traceback."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"result file {path} does not exist. Give the result.json of a run "
            "(e.g. runs/<name>/result.json), written by `lrfind run`."
        ) from None
    except OSError as error:
        raise ConfigError(os_refusal(error, "result file", path)) from None
    if stat.S_ISDIR(mode):
        raise ConfigError(
            f"result file {path} is a folder. Pass the result.json in it, e.g. "
            f"{path / 'result.json'}."
        )
    if not stat.S_ISREG(mode):  # a pipe or a device would be read until it ends, if ever
        raise ConfigError(
            f"result file {path} is not a regular file. Pass the result.json of a run."
        )
    text = read_text(path, "result file")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        if json_ends_early(text, error):
            raise ConfigError(cut_document(path, "result file", "JSON")) from None
        raise ConfigError(f"result file {path} is not readable JSON ({error}).") from None
    if not (
        isinstance(loaded, dict)
        and "recommendation" in loaded  # null when there is none; absent when edited away
        and isinstance(loaded["recommendation"], dict | None)
    ):
        raise ConfigError(
            f"{path} is not an lrfind result: it has no `recommendation` block. Pass the "
            "result.json written by `lrfind run` or `lrfind analyze`."
        )
    version = loaded.get("format_version", 1)
    known = isinstance(version, int) and not isinstance(version, bool)
    if not known or not 1 <= version <= RESULT_FORMAT_VERSION:
        newer = known and version > RESULT_FORMAT_VERSION
        raise ConfigError(
            f"{path} has format_version {version!r}; this lrfind reads versions 1 to "
            f"{RESULT_FORMAT_VERSION}. "
            + (
                "Upgrade lrfind, or rerun the sweep with this one."
                if newer
                else "The result was edited or is damaged; rerun `lrfind run` to write it again."
            )
        )
    _check_fields(loaded, path, _BLOCK_FIELDS)
    upgraded = _from_version_1(loaded) if version == 1 else loaded
    _check_fields(upgraded, path, _DOCUMENT_FIELDS)
    return upgraded


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# The fields lrfind reads from a result, each with what it must hold when present (a field
# that is absent is read as its default). The block's own lists are checked before a
# version-1 document is upgraded, since the upgrade moves them.
_FieldCheck = tuple[tuple[str, ...], str, Callable[[Any], bool]]
_BLOCK_FIELDS: list[_FieldCheck] = [
    (("recommendation", "confidence_reasons"), "a list of texts", _is_text_list),
    (("recommendation", "diagnostics"), "a list of texts", _is_text_list),
]
_DOCUMENT_FIELDS: list[_FieldCheck] = [
    *_BLOCK_FIELDS,
    (("recommendation", "confidence"), "a text", lambda value: isinstance(value, str)),
    (("diagnostics",), "a list of texts", _is_text_list),
    (("no_recommendation",), "a list of texts", _is_text_list),
    (("interrupted",), "true or false", lambda value: isinstance(value, bool)),
    (("config",), "a mapping", lambda value: isinstance(value, dict)),
    (("data",), "a mapping", lambda value: isinstance(value, dict)),
    (("sweep",), "a mapping", lambda value: isinstance(value, dict)),
    (("repeats",), "a list", lambda value: isinstance(value, list)),
]


def _check_fields(loaded: dict[str, Any], path: Path, checks: list[_FieldCheck]) -> None:
    for keys, kind, holds in checks:
        node: Any = loaded
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and not holds(node):
            raise ConfigError(
                f"{path}: `{'.'.join(keys)}` is {node!r}, not {kind}, so the result was edited "
                "or is damaged. Rerun `lrfind run` (or `lrfind analyze`) to write it again, or "
                "remove the field."
            )


def _from_version_1(loaded: dict[str, Any]) -> dict[str, Any]:
    """A version-1 result in today's shape: a block without rates (or none) is no
    recommendation."""
    block = dict(loaded["recommendation"] or {})
    diagnostics = block.pop("diagnostics", None) or loaded.get("diagnostics") or []
    empty = block.get("max_lr") is None
    reasons = [*block.get("confidence_reasons", []), *diagnostics]
    return {
        **loaded,
        "diagnostics": diagnostics,
        "no_recommendation": reasons if empty else [],
        "recommendation": None if empty else block,
    }
