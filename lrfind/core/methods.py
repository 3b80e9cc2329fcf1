"""The suggestion methods by name: what each reads off a curve. lrfind.core.analysis
implements them; this list, with no numpy, is what `--help` and the settings check against.
"""

from __future__ import annotations

METHODS = {
    "knee": "where the steep descent ends, kept well below the divergence",
    "bottom": "the rate at the smoothed loss's minimum over a fixed divisor",
    "steepest": "the rate where the smoothed loss falls fastest per decade",
    "valley": "two thirds of the way along the descent, from its onset to the minimum",
    "minimum": "a tenth of the rate at the smoothed loss's minimum",
}
DEFAULT_METHOD = "knee"  # chosen on the tuning configs of scripts/bench_quality.py
