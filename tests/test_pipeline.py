"""Pipeline helpers that the command-line tests do not reach directly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lrfind.commands import run as pipeline
from tests.conftest import write_python


def test_a_background_import_is_complete_when_the_block_ends_and_failures_stay_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_python(tmp_path / "slow_module.py", "import time\ntime.sleep(0.3)\nLOADED = True\n", "")
    write_python(tmp_path / "broken_module.py", "raise ImportError('broken on purpose')\n", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("slow_module", "broken_module"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pipeline._importing_meanwhile("slow_module"):
        pass  # the block is over long before the module's 0.3 s import
    assert sys.modules["slow_module"].LOADED is True
    with pipeline._importing_meanwhile("broken_module"):
        pass
    assert "broken_module" not in sys.modules
