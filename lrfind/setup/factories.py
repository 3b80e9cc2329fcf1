"""Resolve user factory specs: `path/to/file.py:function` or `package.module:function`.

    lrfind run --model my_models.py:build_resnet --dataset my_data.py:train_set

Used for both models and datasets; `kind` only shapes the messages.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lrfind.errors import SpecError


def is_factory_spec(spec: str) -> bool:
    """A factory spec names a function after a colon; `torchvision:resnet18` is not one."""
    if ":" not in spec:
        return False
    target, _, function = spec.rpartition(":")
    return bool(target) and bool(function) and target != TORCHVISION_PREFIX.rstrip(":")


TORCHVISION_PREFIX = "torchvision:"  # a model or dataset of torchvision, by name


def load_factory(spec: str, kind: str, noun: str = "function") -> Callable[..., Any]:
    """The callable a spec names. `noun` is what it usually is ("function", or "class" for
    optimizers): a missing one gets a list of the module's public ones of that sort."""
    target, _, name = spec.rpartition(":")
    example = f"path/to/file.py:make_{kind} or package.module:make_{kind}"
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _load_file(Path(target), spec, kind)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            raise SpecError(
                f"{kind} spec {spec!r}: module {target!r} cannot be imported ({error}). "
                f"Install it, or give a file path instead: {example}."
            ) from None
        except (Exception, SystemExit) as error:
            raise SpecError(
                f"{kind} spec {spec!r}: importing {target!r} {_what_happened(error)}. Fix the "
                "module and run again."
            ) from None
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        listed = inspect.isclass if noun == "class" else inspect.isfunction
        available = sorted(
            attribute
            for attribute, value in vars(module).items()
            if listed(value) and not attribute.startswith("_")
        )
        listing = ", ".join(available) if available else "none"
        plural = "Classes" if noun == "class" else "Functions"
        raise SpecError(
            f"{kind} spec {spec!r}: {target!r} has no {noun} {name!r}. "
            f"{plural} it defines: {listing}."
        )
    return factory


def _load_file(path: Path, spec: str, kind: str) -> Any:
    if not path.is_file():
        raise SpecError(
            f"{kind} spec {spec!r}: file {path} does not exist. Give an existing .py file "
            f"(relative to the current directory) before the colon."
        )
    module_name = f"lrfind_user_{kind}_{path.stem}"
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded  # resolved once already (specs are checked before they are built)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"{kind} spec {spec!r}: {path} cannot be loaded as a Python module.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        sys.modules.pop(module_name, None)
        raise SpecError(
            f"{kind} spec {spec!r}: running {path} {_what_happened(error)}. Fix the file and "
            "run again."
        ) from error
    return module


def call_factory(factory: Callable[..., Any], spec: str, kind: str, **offered: Any) -> Any:
    """Call a factory, passing only the keyword arguments its signature accepts."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    arguments = {key: value for key, value in offered.items() if takes_any or key in parameters}
    try:
        return factory(**arguments)
    except SystemExit as error:
        raise SpecError(
            f"{kind} factory {spec!r} called sys.exit({error.code!r}): it must return the "
            f"{kind} instead of ending the program. Replace the exit with a return, or with an "
            "exception that says what is wrong."
        ) from error
    except Exception as error:
        raise SpecError(
            f"{kind} factory {spec!r} raised {type(error).__name__}: {error}. It is called "
            f"with the keyword arguments it accepts among: {', '.join(offered) or 'none'}."
        ) from error


def _what_happened(error: BaseException) -> str:
    """How loading user code failed, for a message: sys.exit() is not an error's text."""
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r}), which a module that is imported must not do"
    return f"failed with {type(error).__name__}: {error}"
