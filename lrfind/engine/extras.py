"""The optional packages behind lrfind's training-stack integrations: the error when one is
missing.

    try:
        import lightning.pytorch as pl
    except ImportError as error:
        raise missing_extra(error, "lightning") from error

`lrfind.lightning` and `lrfind.huggingface` need Lightning and transformers; nothing else in
lrfind imports them, so `import lrfind` and the CLI work without either.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from lrfind.errors import ConfigError


def missing_extra(error: ImportError, extra: str) -> ConfigError:
    """The error for an integration whose package cannot be imported: the extra to install."""
    package = (error.name or "the package").split(".")[0]
    return ConfigError(
        f"this part of lrfind needs `{package}`, which cannot be imported ({error}). Install "
        f"it with lrfind's extra: pip install 'lrfind[{extra}]'."
    )


def warn_no_recommendation(reasons: Sequence[str] | None, configured: str) -> None:
    """A training-stack callback's one warning when the range test found no rate: training
    goes on at the `configured` rate (named as the stack names it)."""
    warnings.warn(
        "lrfind found no learning rate to recommend ("
        + "; ".join(reasons or ["no clear descent"])
        + f"); training goes on at the configured {configured}. "
        "LrfindCallback.outcome.plot() shows the curve.",
        stacklevel=3,
    )
