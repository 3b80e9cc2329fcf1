"""The structure the layers promise: the core stays free of heavy imports, and every error a
user can cause belongs to lrfind's one exception family."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lrfind
import lrfind.core

PACKAGE = Path(lrfind.__file__).parent


CORE_MODULES = [f"lrfind.core.{info.name}" for info in pkgutil.iter_modules(lrfind.core.__path__)]
WATCHED = ("torch", "matplotlib", "rich", "pandas", "lightning", "transformers", "torchmetrics")
START_UP = f"""
import importlib, json, sys

def loaded():
    return [name for name in {WATCHED!r} if name in sys.modules]

seen = {{}}
for module in {CORE_MODULES!r}:
    importlib.import_module(module)
seen["core"] = loaded()
import lrfind.cli
seen["cli"] = loaded()
import lrfind, lrfind.api
seen["api"] = loaded()
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def imported_at_start() -> dict[str, list[str]]:
    """What a fresh interpreter holds after importing, in turn, every core module, then the
    CLI (what `lrfind --help` loads), then the package and its API: the watched heavy
    packages in sys.modules after each. A process, since this one imported them all."""
    completed = subprocess.run([sys.executable, "-c", START_UP], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    seen: dict[str, list[str]] = json.loads(completed.stdout.strip().splitlines()[-1])
    return seen


def test_the_core_imports_neither_torch_nor_matplotlib_nor_rich(
    imported_at_start: dict[str, list[str]],
) -> None:
    assert {"lrfind.core.analysis", "lrfind.core.plan", "lrfind.core.schedules"} <= set(
        CORE_MODULES
    )
    assert imported_at_start["core"] == []


def test_lrfind_help_imports_no_torch(imported_at_start: dict[str, list[str]]) -> None:
    bad = {"torch", "matplotlib", "pandas"} & set(imported_at_start["cli"])
    assert bad == set(), f"imported {sorted(bad)}"


def test_lrfind_and_its_cli_import_no_training_stack(
    imported_at_start: dict[str, list[str]],
) -> None:
    bad = {"lightning", "transformers", "torchmetrics"} & set(imported_at_start["api"])
    assert bad == set(), f"imported {sorted(bad)}"


# Exceptions a user's input must never surface as: they escape the CLI's one handler as a
# traceback. lrfind raises LrfindError subclasses instead, and never checks input by assert.
FOREIGN = {"ValueError", "TypeError", "KeyError", "IndexError", "RuntimeError", "Exception"}


def foreign_raises(source: str, filename: str) -> list[str]:
    """`raise X(...)` of a foreign class and `assert` statements, as file:line entries."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Assert):
            found.append(f"{filename}:{node.lineno}: assert")
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(raised, ast.Name) and raised.id in FOREIGN:
                found.append(f"{filename}:{node.lineno}: raise {raised.id}")
    return sorted(found, key=lambda entry: int(entry.split(":")[1]))


def test_the_package_raises_only_its_own_errors() -> None:
    found = [
        entry
        for path in sorted(PACKAGE.rglob("*.py"))
        for entry in foreign_raises(path.read_text(), str(path.relative_to(PACKAGE)))
    ]
    assert found == []


def test_the_scan_finds_what_it_looks_for() -> None:
    source = (
        "def f(x):\n"
        "    assert x > 0\n"
        "    if x == 1:\n"
        "        raise ValueError('one')\n"
        "    raise TypeError\n"
        "    raise LrfindError('fine')\n"
    )
    assert foreign_raises(source, "m.py") == [
        "m.py:2: assert",
        "m.py:4: raise ValueError",
        "m.py:5: raise TypeError",
    ]


def test_every_method_a_user_may_choose_answers_on_a_clean_curve() -> None:
    from lrfind.core.analysis import analyze
    from lrfind.core.methods import DEFAULT_METHOD, METHODS

    lrs = np.logspace(-5, 0, 100)
    losses = 2.3 - 2.0 / (1 + np.exp(-4 * (np.log10(lrs) + 3))) + np.where(lrs > 0.1, 50 * lrs, 0)
    assert DEFAULT_METHOD in METHODS
    for method in METHODS:
        recommendation = analyze(lrs, losses, method=method).recommendation
        assert recommendation is not None, method
        assert 1e-5 < recommendation.max_lr < 0.3, method
