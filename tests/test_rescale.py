"""lrfind.engine.rescale: a recommended rate put into an optimizer whose schedulers already
exist. Checked against torch's own schedulers: the rescaled run gives, step by step, the rates
of the same schedule built from the start with the recommended rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler

from lrfind.engine.rescale import configured_rate, rescale_rates
from lrfind.errors import SweepError

Build = Callable[[torch.optim.Optimizer], Any]


def optimizer(rate: float, frozen: bool = False) -> torch.optim.Optimizer:
    """Two groups, the second at a tenth of the first's rate (or frozen at 0)."""
    first, second = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD(
        [{"params": [first]}, {"params": [second], "lr": 0.0 if frozen else rate / 10}], lr=rate
    )


def rates(opt: torch.optim.Optimizer, scheduler: Any, steps: int) -> list[list[float]]:
    seen = []
    for _ in range(steps):
        seen.append([group["lr"] for group in opt.param_groups])
        opt.step()
        scheduler.step()
    return seen


SCHEDULES: dict[str, Build] = {
    "step": lambda opt: lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "linear-warmup": lambda opt: lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 4)),
    "cosine": lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=10),
    "onecycle": lambda opt: lr_scheduler.OneCycleLR(
        opt, max_lr=[group["lr"] for group in opt.param_groups], total_steps=12
    ),
    "warmup-then-cosine": lambda opt: lr_scheduler.SequentialLR(
        opt,
        [
            lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=3),
            lr_scheduler.CosineAnnealingLR(opt, T_max=8),
        ],
        milestones=[3],
    ),
}


@pytest.mark.parametrize("kind", SCHEDULES)
def test_a_rescaled_schedule_gives_the_rates_of_one_built_at_the_recommended_rate(
    kind: str,
) -> None:
    build = SCHEDULES[kind]
    configured = optimizer(0.01)
    scheduler = build(configured)
    factor = rescale_rates(configured, [scheduler], 0.3)
    reference = optimizer(0.3)
    assert factor == pytest.approx(30.0)
    expected = rates(reference, build(reference), 12)
    assert rates(configured, scheduler, 12) == [
        [pytest.approx(rate) for rate in step] for step in expected
    ]


def test_without_a_scheduler_the_groups_keep_their_ratios_and_a_frozen_one_stays_frozen() -> None:
    opt = optimizer(0.01, frozen=True)
    rescale_rates(opt, [], 0.2)
    assert [group["lr"] for group in opt.param_groups] == [pytest.approx(0.2), 0.0]
    ratio = optimizer(0.01)
    rescale_rates(ratio, [], 0.2)
    assert [group["lr"] for group in ratio.param_groups] == [
        pytest.approx(0.2),
        pytest.approx(0.02),
    ]


def test_the_configured_rate_is_the_one_a_scheduler_started_from() -> None:
    opt = optimizer(0.01)
    lr_scheduler.LambdaLR(opt, lambda step: 0.0)  # a warmup from 0: the group's lr is 0 now
    assert opt.param_groups[0]["lr"] == 0.0
    assert configured_rate(opt) == pytest.approx(0.01)


def test_an_optimizer_with_every_group_at_zero_is_refused() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(SweepError, match="every parameter group"):
        rescale_rates(torch.optim.SGD([parameter], lr=0.0), [], 0.1)
