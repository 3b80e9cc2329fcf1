"""The one exception family of lrfind.

The CLI catches `LrfindError` in one place and prints its message without a traceback, so
every message must stand alone: name the bad value and say how to fix it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class LrfindError(Exception):
    """Base of every error lrfind reports to a user. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(LrfindError, ValueError):
    """An option, flag or config file has a bad value. A usage error, so exit code 2; a
    `ValueError` too, so library users catch it as any bad argument."""

    exit_code = 2


class SpecError(LrfindError, ValueError):
    """A model or dataset spec cannot be resolved (unknown name, missing file or function)."""

    exit_code = 2


class DataError(LrfindError):
    """Dataset files are missing, unreadable or corrupt."""


class SweepError(LrfindError):
    """The range test itself cannot proceed (e.g. the loss is NaN before any training)."""


class UserCodeError(LrfindError):
    """The user's own code (a model, dataset, loss or optimizer) raised while lrfind ran it.
    The message says where; `--debug` (or LRFIND_DEBUG=1) shows the original traceback."""


class OutputError(LrfindError):
    """Results cannot be written (folder exists, not writable, disk full)."""


class CurveFileError(LrfindError, ValueError):
    """The CSV given to `lrfind analyze` is not a usable loss-vs-LR curve. A usage error."""

    exit_code = 2


@contextlib.contextmanager
def noted(where: str | Callable[[], str]) -> Iterator[None]:
    """Let an error of the user's code through unchanged, with a note saying where lrfind was
    when it was raised (`lrfind.engine.loop.user_code_errors` turns it into one paragraph).
    lrfind's own errors already say where, and pass without one. A callable `where` is only
    called on an error, so a loop pays nothing to describe each step."""
    try:
        yield
    except LrfindError:
        raise
    except Exception as error:
        error.add_note(f"lrfind: raised {where() if callable(where) else where}")
        raise
