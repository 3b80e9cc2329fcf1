"""The one check of what a caller hands lrfind's public functions, before any work: each
argument's type, and the names of keyword options. The CLI's values arrive coerced by the
settings (lrfind.settings.options), so they pass; a Python caller's are checked here, by the
same dataclasses (`SweepSettings`, `SearchSettings` call `typed_fields`) and by the engine's
entry points, with messages that name the value and the fix.

    typed_fields(settings)                       # each field as its annotation says
    check_keywords("range_test", options, names) # a misspelt option: the close name
    lrs, losses = checked_curve(lrs, losses)     # rates positive, finite, increasing
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import numbers
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from lrfind.errors import ConfigError

if TYPE_CHECKING:  # numpy is imported where a curve is checked: `--help` never loads it
    import numpy as np

# What each annotation of a settings field means, in words.
_EXPECTED = {"float": "a number", "int": "an integer", "bool": "True or False", "str": "text"}


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut to 60 characters, and its type."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} (a {type(value).__name__})"


def number(name: str, value: Any, example: str) -> float:
    """`value` as a float: any real number but a bool (Python, numpy); else a ConfigError
    naming `name` and `example`, the value to pass instead."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # text that reads as a number: suggest that number
        with contextlib.suppress(ValueError):
            example = repr(float(value))
    raise ConfigError(f"{name} must be a number; got {shown(value)}. Pass e.g. {name}={example}.")


def integer(name: str, value: Any, example: str) -> int:
    """`value` as an int: any integer but a bool (Python, numpy); a float, even 100.0, is
    refused, since a count given as a float is usually a rate in the wrong place."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    hint = example
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        hint = str(int(value))
    raise ConfigError(f"{name} must be an integer; got {shown(value)}. Pass e.g. {name}={hint}.")


def optional_positive_integer(name: str, value: Any) -> int | None:
    """None, or `value` as a Python int of at least 1 (numpy's too); anything else refused."""
    if value is None:
        return None
    number = integer(name, value, "1000")
    if number < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1; got {shown(value)}.")
    return number


def flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(
        f"{name} must be True or False; got {shown(value)}. Pass {name}=True or {name}=False."
    )


def text(name: str, value: Any, example: str) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{name} must be text; got {shown(value)}. Pass e.g. {name}={example!r}.")


def optional_callable(name: str, value: Any, what: str) -> None:
    """`value` is None or can be called (a function, a bound method, an object with
    `__call__`); `what` says what it is called with."""
    if value is not None and (isinstance(value, type) or not callable(value)):
        raise ConfigError(
            f"{name} must be a function {what}, or None; got {shown(value)}. Pass a function "
            "(not a class, nor what a call of it returned)."
        )


def typed_fields(settings: Any, fields_of: type) -> None:
    """Check and normalise each field `fields_of` declares on the frozen dataclass `settings`
    by its annotation (float, int, bool, str, optionally `| None`): numpy numbers become
    Python's, anything else is refused with the field's name, the value and what to pass."""
    for field in dataclasses.fields(fields_of):
        annotation = str(field.type).replace(" ", "")
        optional = annotation.endswith("|None")
        kind = annotation.removesuffix("|None")
        value = getattr(settings, field.name)
        if (optional and value is None) or kind not in _EXPECTED:
            continue
        example = repr(field.default) if field.default is not None else "..."
        if kind == "float":
            value = number(field.name, value, example)
        elif kind == "int":
            value = integer(field.name, value, example)
        elif kind == "bool":
            value = flag(field.name, value)
        else:
            value = text(field.name, value, str(field.default))
        object.__setattr__(settings, field.name, value)


def check_keywords(function: str, options: Mapping[str, Any], names: Collection[str]) -> None:
    """Refuse keyword options `function` does not take, naming the closest it does."""
    for key in options:
        if key not in names:
            close = difflib.get_close_matches(str(key), list(names), n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{function} takes no option {key!r}. {hint}Its options: "
                f"{', '.join(sorted(names))}."
            )


def checked_curve(lrs: Any, losses: Any) -> tuple[np.ndarray, np.ndarray]:
    """A sweep's two columns as float arrays, as `lrfind analyze` accepts a curve file: as
    many losses as rates, the rates positive, finite and never falling (a rate may be held
    for several steps), every loss
    between the first and the last finite (a sweep ends on a NaN/inf loss)."""
    import numpy as np

    rates = _column("lrs", lrs)
    values = _column("losses", losses)
    if len(rates) != len(values) or not len(rates):
        raise ConfigError(
            f"analyze needs as many learning rates as losses, at least one of each; got "
            f"{len(rates)} rates and {len(values)} losses. Pass the two columns of one sweep."
        )
    bad = np.flatnonzero(~(np.isfinite(rates) & (rates > 0)))
    if len(bad):
        raise ConfigError(
            f"lrs[{bad[0]}] is {rates[bad[0]]:g}; every learning rate must be a positive, "
            "finite number. Pass the rates the sweep recorded (StepRecord.lr), in order."
        )
    falls = np.flatnonzero(np.diff(rates) < 0)
    if len(falls):
        index = int(falls[0]) + 1
        raise ConfigError(
            f"lrs[{index}] = {rates[index]:g} is below the rate before it "
            f"({rates[index - 1]:g}); a sweep's learning rates only grow. Pass the points in "
            "the order swept (sorted by rate)."
        )
    if len(rates) > 1 and rates[-1] == rates[0]:
        raise ConfigError(
            f"every learning rate is {rates[0]:g}: a range test reads the loss across a range "
            "of rates, and these never grow. Pass the rates the sweep recorded (StepRecord.lr)."
        )
    # a first loss that is not finite has its own error (lrfind.core.analysis.analyze)
    bad = np.flatnonzero(~np.isfinite(values[1:-1])) + 1
    if len(bad):
        raise ConfigError(
            f"losses[{bad[0]}] is {values[bad[0]]:g} (at lr {rates[bad[0]]:g}); only the last "
            "loss may be NaN or infinite, where a sweep ended on it. Cut the curve before "
            "that point."
        )
    return rates, values


def _column(name: str, values: Any) -> np.ndarray:
    """A sequence of real numbers (a list, a tuple, a 1-D numpy array or tensor) as floats."""
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor, wherever it lives
        values = values.detach().cpu().numpy()
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
        raise ConfigError(
            f"{name} must be a sequence of numbers (a list or a 1-D array); got "
            f"{shown(values)}. Pass one sweep's column."
        )
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nesting
        array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ConfigError(
            f"{name} must be one-dimensional; got shape {array.shape}. Pass one sweep's column."
        )
    if array.dtype.kind not in "iuf":
        first = next((v for v in array if not _real(v)), array[0] if len(array) else None)
        if first is not None and hasattr(first, "item"):
            first = first.item()  # numpy's scalar: its value
        raise ConfigError(
            f"{name} must hold numbers; it holds {shown(first)}. Pass one sweep's column of floats."
        )
    return array.astype(float)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
