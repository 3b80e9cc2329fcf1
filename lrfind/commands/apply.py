"""A result's bounds as one schedule: written into a training config (`lrfind apply`) or
printed to paste (`lrfind run --emit`).

    planned = plan_apply(Path("runs/lenet/result.json"), Path("train.yaml"), schedule="onecycle")
    print(planned.change.diff()); planned.change.write()

Nothing is written until the caller writes the returned change (the CLI shows its diff first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrfind.core.horizon import stored_horizon
from lrfind.core.schedules import (
    DEFAULT_KIND,
    Bounds,
    check_kind,
    python_snippet,
    schedule_section,
)
from lrfind.errors import ConfigError
from lrfind.outputs.configedit import (
    DEFAULT_KEY,
    ConfigChange,
    lookup,
    plan_change,
    read_config,
    render_snippet,
    split_key,
)
from lrfind.outputs.documents import read_result
from lrfind.settings.layouts import rate_place, read_setup
from lrfind.settings.options import check_choice, check_result_matches

EMIT_FORMATS = ("yaml", "toml", "json", "python")  # what `lrfind run --emit` prints


@dataclass(frozen=True)
class PlannedApply:
    kind: str  # the schedule kind written
    key: str  # where in the config
    change: ConfigChange
    warnings: list[str]  # what the user should know about the result before it is written
    rate_key: str | None = None  # where the section's lr went instead: the optimizer's `lr`


def plan_apply(
    result_file: Path,
    train_config: Path,
    *,
    schedule: str | None = None,
    key: str = DEFAULT_KEY,
    epochs: int | None = None,
    force: bool = False,
) -> PlannedApply:
    """The edit that writes the result's `schedule` (default: the kind the config already
    has, else DEFAULT_KIND) under `key`. The training length comes from `epochs` or the
    config's own `epochs`; a result measured on another setup is refused unless `force`."""
    if epochs is not None and epochs < 1:
        raise ConfigError(
            f"--epochs must be a positive number of training epochs; got {epochs}. Pass the "
            "length you train for, e.g. --epochs 5, or leave it to the config's `epochs`."
        )
    result = read_result(result_file)
    bounds = Bounds.of(result)
    keys = split_key(key)
    config = read_config(train_config)
    current = config.document
    existing = lookup(current, keys)
    kind = schedule or (existing.get("kind") if isinstance(existing, dict) else None)
    kind = kind or DEFAULT_KIND
    check_kind(kind)
    beside = keys[:-1]  # the setup is read beside the schedule first, then at the top
    setup = read_setup(current, beside)
    configured_epochs = setup.get("epochs")
    if epochs is None and isinstance(configured_epochs, int) and configured_epochs > 0:
        epochs = configured_epochs
    if not force and isinstance(result.get("config"), dict):
        check_result_matches(result["config"], current, result_file, str(train_config), beside)
    steps_per_epoch = _steps_per_epoch(result, result_file)
    section = schedule_section(kind, bounds, steps_per_epoch, epochs)
    rate_keys = rate_place(current, beside)
    also: list[tuple[list[str], dict[str, Any]]] = []
    if "lr" in section and rate_keys is not None:  # the config keeps its rate there
        also = [(rate_keys, {"lr": section.pop("lr")})]
    change = plan_change(config, key, section, also)
    return PlannedApply(
        kind=kind,
        key=key,
        change=change,
        warnings=result_warnings(result) + _length_warnings(result, steps_per_epoch, epochs),
        rate_key=".".join(rate_keys) + ".lr" if also and rate_keys else None,
    )


def result_warnings(result: dict[str, Any]) -> list[str]:
    """What weakens a result that does hold rates: an interrupted run, a low confidence."""
    warnings = []
    if result.get("interrupted"):
        warnings.append(
            "This result comes from an interrupted run: its rates were read from the steps "
            "recorded before the stop. Rerun `lrfind run` to completion for a full answer."
        )
    block = result.get("recommendation") or {}
    if block.get("confidence") == "low":
        reasons = "; ".join(str(reason) for reason in block.get("confidence_reasons", []))
        warnings.append(f"The recommendation's confidence is low ({reasons}).")
    return warnings


def _steps_per_epoch(result: dict[str, Any], where: object) -> int | None:
    """The result's `data.steps_per_epoch`: a positive whole number, or absent (the lengths
    are then written in epochs). Anything else was edited or damaged, and is refused."""
    data = result.get("data")
    value = data.get("steps_per_epoch") if isinstance(data, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{where} has data.steps_per_epoch {value!r}; it must be a positive whole number "
            "(the batches in one epoch), since the schedule's lengths are counted from it. "
            "The result was edited or is damaged; rerun `lrfind run`, or remove the field to "
            "write lengths in epochs."
        )
    return value


def snippet(result: dict[str, Any], kind: str, fmt: str) -> str:
    """The `kind` schedule of a result as text to paste: a config block in `fmt`, or the
    Python lines that build the scheduler (`python`)."""
    check_choice("--emit format", fmt, EMIT_FORMATS)
    steps_per_epoch = _steps_per_epoch(result, "the result")
    section = schedule_section(kind, Bounds.of(result), steps_per_epoch)
    if fmt == "python":
        return python_snippet(section, steps_per_epoch or 1)
    return render_snippet(section, fmt)


def _length_warnings(
    result: dict[str, Any], steps_per_epoch: int | None, epochs: int | None
) -> list[str]:
    """A result scaled for one training length, written into a config that trains another:
    the optimizer's factor depends on the length (docs/recommendation.md)."""
    block = result.get("recommendation") or {}
    horizon = stored_horizon(block.get("horizon"))
    if horizon is None or not steps_per_epoch or not epochs:
        return []
    factor = float(horizon["optimizer_factor"])  # type: ignore[arg-type]
    measured = horizon["training_steps"]
    planned = steps_per_epoch * epochs
    if abs(math.log10(factor)) < 0.05 or not isinstance(measured, int) or measured == planned:
        return []
    source = horizon.get("source")
    known = f" ({source})" if isinstance(source, str) and source else ""
    return [
        f"The rates were scaled by {factor:.3g} for a run of {measured:,} steps{known}, and "
        f"this config trains {planned:,} ({epochs} epochs of "
        f"{steps_per_epoch:,}); for this optimizer the factor depends on the length. Rerun "
        f"`lrfind run --epochs {epochs}` for rates scaled for it."
    ]
