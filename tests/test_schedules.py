"""Exact values: the sweep ramp, and schedule parameters checked against torch's schedulers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lrfind.schedules import CYCLE_HALF_EPOCHS, schedule_parameters, sweep_lrs


def test_exponential_ramp_follows_the_closed_form() -> None:
    lrs = sweep_lrs(1e-7, 10.0, 100, "exp")
    assert len(lrs) == 100
    assert lrs[0] == 1e-7 and lrs[-1] == 10.0
    for step, lr in enumerate(lrs):
        assert lr == pytest.approx(1e-7 * (1e8) ** (step / 99), rel=1e-12)


def test_exponential_ramp_spends_equal_steps_on_every_decade() -> None:
    lrs = sweep_lrs(1e-6, 1.0, 61, "exp")
    # the last value is set exactly to end_lr, so compare the ratios before it
    ratios = {round(later / earlier, 12) for earlier, later in itertools.pairwise(lrs[:-1])}
    assert ratios == {round(10 ** (6 / 60), 12)}


def test_linear_ramp_follows_the_closed_form() -> None:
    lrs = sweep_lrs(0.01, 1.0, 11, "linear")
    assert lrs == pytest.approx([0.01 + 0.099 * step for step in range(11)], rel=1e-12)
    assert lrs[-1] == 1.0


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        sweep_lrs(1e-3, 1.0, 10, "cosine")


def one_parameter_optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def lr_trace(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int
) -> list[float]:
    """The LR torch's scheduler sets: the initial one, then after each of `steps` steps."""
    seen = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        seen.append(optimizer.param_groups[0]["lr"])
    return seen


def test_onecycle_parameters_reproduce_base_and_max_in_torch_onecycle() -> None:
    parameters = schedule_parameters(base_lr=0.01, max_lr=0.3, lr=0.1, steps_per_epoch=100)
    onecycle = parameters["onecycle"]
    optimizer = one_parameter_optimizer()
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=onecycle["max_lr"],
        div_factor=onecycle["div_factor"],
        final_div_factor=onecycle["final_div_factor"],
        pct_start=onecycle["pct_start"],
        total_steps=1000,
    )
    seen = lr_trace(optimizer, scheduler, 999)
    assert seen[0] == pytest.approx(0.01)
    assert max(seen) == pytest.approx(0.3)
    assert seen[-1] == pytest.approx(0.01 / onecycle["final_div_factor"], rel=1e-6)


def test_triangular_parameters_match_torch_cyclic_lr() -> None:
    parameters = schedule_parameters(base_lr=0.01, max_lr=0.3, lr=0.1, steps_per_epoch=50)
    triangular = parameters["cyclic"]["triangular"]
    assert triangular["step_size_up"] == CYCLE_HALF_EPOCHS * 50
    optimizer = one_parameter_optimizer()
    scheduler = torch.optim.lr_scheduler.CyclicLR(
        optimizer,
        base_lr=triangular["base_lr"],
        max_lr=triangular["max_lr"],
        step_size_up=triangular["step_size_up"],
        mode=triangular["mode"],
    )
    seen = lr_trace(optimizer, scheduler, 2 * triangular["step_size_up"])
    assert seen[0] == pytest.approx(0.01)
    assert seen[triangular["step_size_up"]] == pytest.approx(0.3)
    assert seen[-1] == pytest.approx(0.01)


def test_without_steps_per_epoch_lengths_are_given_in_epochs_only() -> None:
    parameters = schedule_parameters(base_lr=0.01, max_lr=0.3, lr=0.1, steps_per_epoch=None)
    triangular = parameters["cyclic"]["triangular"]
    assert "step_size_up" not in triangular
    assert triangular["step_size_up_epochs"] == CYCLE_HALF_EPOCHS
    assert "warmup_iters" not in parameters["warmup"]


def test_warmup_starts_at_base_lr_and_reaches_lr() -> None:
    warmup = schedule_parameters(base_lr=0.01, max_lr=0.3, lr=0.1, steps_per_epoch=10)["warmup"]
    assert warmup["lr"] * warmup["start_factor"] == pytest.approx(0.01)
    assert warmup["warmup_iters"] == 10
    assert math.isclose(warmup["cosine"]["eta_min"], 0.001)
