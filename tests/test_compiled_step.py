"""A rate held in a tensor (PyTorch's recipe for a compiled optimizer step) is filled in place.

A compiled step guards on the Python float it was traced with; a tensor rate is read at run
time, so the sweep writes each rate into the caller's tensor instead of replacing it, and the
same tensor, with its value, is in the group afterwards (scripts/bench_compile.py counts the
recompiles this saves: docs/speed.md).
"""

from __future__ import annotations

import pytest
import torch

import lrfind
from lrfind.core.records import StepRecord


def test_a_tensor_rate_is_filled_in_place_and_comes_back() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    rate = torch.tensor(1e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=rate)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(4)]
    seen: list[tuple[bool, float, float]] = []

    def during(record: StepRecord) -> None:
        group_rate = optimizer.param_groups[0]["lr"]
        seen.append((group_rate is rate, float(rate), record.lr))

    result = lrfind.range_test(
        model, optimizer, torch.nn.CrossEntropyLoss(), batches, steps=20, end_lr=1,
        callback=during,
    )  # fmt: skip
    assert len(result.records) == 20
    assert all(same for same, _, _ in seen)  # never replaced by a float
    for _, written, recorded in seen:
        assert written == pytest.approx(recorded, rel=1e-6)
    assert optimizer.param_groups[0]["lr"] is rate
    assert float(rate) == pytest.approx(1e-3, rel=1e-7)
    assert rate.item() == torch.tensor(1e-3).item()  # bit for bit
