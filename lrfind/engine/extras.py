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

from lrfind.errors import ConfigError


def missing_extra(error: ImportError, extra: str) -> ConfigError:
    """The error for an integration whose package cannot be imported: the extra to install."""
    package = (error.name or "the package").split(".")[0]
    return ConfigError(
        f"this part of lrfind needs `{package}`, which cannot be imported ({error}). Install "
        f"it with lrfind's extra: pip install 'lrfind[{extra}]'."
    )
