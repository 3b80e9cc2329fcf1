"""lrfind: a learning-rate range test for PyTorch.

    from lrfind import find_lr, range_test
    outcome = find_lr(model, optimizer, loss_fn, train_loader)  # the default plan: 6 sweeps
    print(outcome.recommendation)
    result = range_test(model, optimizer, loss_fn, train_loader, start_lr=1e-7, end_lr=10)

Names are imported lazily so that `lrfind --help` does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "range_test": "lrfind.sweep",
    "find_lr": "lrfind.sweep",
    "RangeTestResult": "lrfind.sweep",
    "StepRecord": "lrfind.sweep",
    "analyze": "lrfind.analysis",
    "Analysis": "lrfind.analysis",
    "Recommendation": "lrfind.analysis",
    "RunConfig": "lrfind.config",
    "LrfindError": "lrfind.errors",
    "build_scheduler": "lrfind.schedules",
}

__all__ = [
    "Analysis",
    "LrfindError",
    "RangeTestResult",
    "Recommendation",
    "RunConfig",
    "StepRecord",
    "__version__",
    "analyze",
    "build_scheduler",
    "find_lr",
    "range_test",
]

if TYPE_CHECKING:
    from lrfind.analysis import Analysis, Recommendation, analyze
    from lrfind.config import RunConfig
    from lrfind.errors import LrfindError
    from lrfind.schedules import build_scheduler
    from lrfind.sweep import RangeTestResult, StepRecord, find_lr, range_test


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lrfind' has no attribute {name!r}")
