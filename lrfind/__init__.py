"""lrfind: a learning-rate range test for PyTorch.

    from lrfind import find_lr, range_test
    outcome = find_lr(model, optimizer, loss_fn, train_loader)  # the default plan: 6 sweeps
    print(outcome.recommendation)
    outcome.plot()  # a matplotlib Figure: the curve, the repeats, the recommended rates
    result = range_test(model, optimizer, loss_fn, train_loader, start_lr=1e-7, end_lr=10)

Names are imported lazily so that `lrfind --help` does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "range_test": "lrfind.api",
    "find_lr": "lrfind.api",
    "RangeTestResult": "lrfind.core.records",
    "StepRecord": "lrfind.core.records",
    "analyze": "lrfind.core.analysis",
    "Analysis": "lrfind.core.analysis",
    "Recommendation": "lrfind.core.analysis",
    "RunConfig": "lrfind.settings.options",
    "LrfindError": "lrfind.errors",
    "build_scheduler": "lrfind.engine.schedulers",
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
    from lrfind.api import find_lr, range_test
    from lrfind.core.analysis import Analysis, Recommendation, analyze
    from lrfind.core.records import RangeTestResult, StepRecord
    from lrfind.engine.schedulers import build_scheduler
    from lrfind.errors import LrfindError
    from lrfind.settings.options import RunConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lrfind' has no attribute {name!r}")
