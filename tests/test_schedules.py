"""Exact values: the sweep ramp, and every schedule kind against a closed form or torch."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from lrfind.core.analysis import Recommendation
from lrfind.core.ramp import sweep_lrs
from lrfind.core.schedules import (
    CYCLE_HALF_EPOCHS,
    SCHEDULE_KINDS,
    Bounds,
    check_section,
    python_snippet,
    schedule_parameters,
    schedule_section,
)
from lrfind.engine.schedulers import build_scheduler, scheduler_from_section
from lrfind.errors import ConfigError
from lrfind.outputs.documents import read_result

BOUNDS = Bounds(base_lr=0.01, max_lr=0.3, lr=0.1)


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
    with pytest.raises(ConfigError, match="unknown mode 'cosine'"):
        sweep_lrs(1e-3, 1.0, 10, "cosine")


def optimizer_with(*rates: float) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": rate} for rate in rates]
    return torch.optim.SGD(groups, lr=rates[0])


def lr_trace(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    steps: int,
) -> list[float]:
    """The LR each of `steps` optimizer steps used, stepping the scheduler after each."""
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return seen


def cyclic_closed_form(step: int, base: float, peak: float, half: int, mode: str) -> float:
    """Smith (2017), eq. for the triangular policy and its two variants."""
    cycle = math.floor(1 + step / (2 * half))
    position = abs(step / half - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": 0.99994**step}
    return base + (peak - base) * max(0.0, 1 - position) * scale[mode]


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_kinds_follow_the_closed_form(mode: str) -> None:
    steps_per_epoch, epochs = 25, 24  # 24 epochs at 4-epoch half-cycles: exactly 3 cycles
    optimizer = optimizer_with(1.0)
    scheduler = build_scheduler(optimizer, BOUNDS, mode, steps_per_epoch, epochs)
    half = CYCLE_HALF_EPOCHS * steps_per_epoch
    seen = lr_trace(optimizer, scheduler, steps_per_epoch * epochs + 1)
    expected = [cyclic_closed_form(step, 0.01, 0.3, half, mode) for step in range(len(seen))]
    assert seen == pytest.approx(expected, rel=1e-9, abs=1e-12)
    amplitude = 0.99994**half if mode == "exp_range" else 1.0
    assert seen[half] == pytest.approx(0.01 + 0.29 * amplitude)  # the first peak
    assert seen[-1] == pytest.approx(0.01)  # training ends where a cycle ends


def test_short_training_gets_one_whole_cycle() -> None:
    optimizer = optimizer_with(1.0)
    scheduler = build_scheduler(optimizer, BOUNDS, "triangular", 10, 5)  # 50 steps
    seen = lr_trace(optimizer, scheduler, 51)
    assert seen[25] == pytest.approx(0.3)
    assert seen[0] == pytest.approx(0.01) and seen[50] == pytest.approx(0.01)


def test_onecycle_matches_torch_onecycle_built_by_hand() -> None:
    steps_per_epoch, epochs = 40, 5
    ours = optimizer_with(1.0)
    scheduler = build_scheduler(ours, BOUNDS, "onecycle", steps_per_epoch, epochs)
    reference = optimizer_with(1.0)
    by_hand = torch.optim.lr_scheduler.OneCycleLR(
        reference,
        max_lr=0.3,
        total_steps=200,
        div_factor=30.0,
        final_div_factor=1e4,
        pct_start=0.3,
        cycle_momentum=False,
    )
    seen = lr_trace(ours, scheduler, 200)
    assert seen == pytest.approx(lr_trace(reference, by_hand, 200), rel=1e-12)
    assert seen[0] == pytest.approx(0.01) and max(seen) == pytest.approx(0.3)


def warmup_closed_form(step: int, section: dict, total: int) -> float:
    peak, warmup = section["lr"], section["warmup_iters"]
    if step < warmup:
        if section["warmup"] == "constant":
            return peak * section["start_factor"]
        return peak * (section["start_factor"] + (1 - section["start_factor"]) * step / warmup)
    after = step - warmup
    if section["kind"] == "warmup-cosine":
        floor = section["eta_min"]
        return floor + (peak - floor) * (1 + math.cos(math.pi * after / (total - warmup))) / 2
    passed = sum(step >= round(fraction * total) for fraction in section["milestone_fractions"])
    return peak * section["gamma"] ** passed


@pytest.mark.parametrize("kind", ["warmup-cosine", "warmup-multistep"])
@pytest.mark.parametrize("shape", ["linear", "constant"])
def test_warmup_kinds_follow_their_formula(kind: str, shape: str) -> None:
    steps_per_epoch, epochs = 20, 6
    section = {**schedule_section(kind, BOUNDS, steps_per_epoch, epochs), "warmup": shape}
    assert section["warmup_iters"] == 20  # one epoch
    optimizer = optimizer_with(1.0)
    scheduler = scheduler_from_section(optimizer, section, steps_per_epoch, epochs)
    total = steps_per_epoch * epochs
    seen = lr_trace(optimizer, scheduler, total)
    expected = [warmup_closed_form(step, section, total) for step in range(total)]
    assert seen == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert seen[0] == pytest.approx(0.01, rel=1e-3)  # warm-up starts at base_lr (4 digits)


def test_warmup_peaks_differ_by_decay() -> None:
    assert schedule_section("warmup-cosine", BOUNDS)["lr"] == 0.3
    assert schedule_section("warmup-multistep", BOUNDS)["lr"] == 0.1


def test_constant_holds_the_recommended_rate() -> None:
    optimizer = optimizer_with(1.0)
    scheduler = build_scheduler(optimizer, BOUNDS, "constant", 10, 2)
    assert set(lr_trace(optimizer, scheduler, 20)) == {0.1}


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_parameter_groups_keep_their_ratio(kind: str) -> None:
    optimizer = optimizer_with(1.0, 0.1)  # a head trained at a tenth of the body's rate
    scheduler = build_scheduler(optimizer, BOUNDS, kind, 10, 6)
    rates = []
    for _ in range(60):
        rates.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
        optimizer.step()
        scheduler.step()
    assert all(body > 0 for body, _ in rates)
    assert all(head == pytest.approx(body / 10, rel=1e-9) for body, head in rates)


def test_a_second_scheduler_on_the_same_optimizer_starts_afresh() -> None:
    optimizer = optimizer_with(1.0)
    first = build_scheduler(optimizer, BOUNDS, "onecycle", 10, 2)
    lr_trace(optimizer, first, 20)
    second = build_scheduler(optimizer, BOUNDS, "warmup-cosine", 10, 2)
    assert lr_trace(optimizer, second, 1)[0] == pytest.approx(0.01, rel=1e-3)


def test_recommendation_comes_from_an_object_a_mapping_or_a_result_file(tmp_path: Path) -> None:
    recommendation = Recommendation(
        base_lr=0.01, max_lr=0.3, lr=0.1, method="bottom", confidence="high"
    )
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"recommendation": recommendation.to_dict()}))
    for source in (recommendation, recommendation.to_dict(), read_result(path)):
        assert Bounds.of(source) == BOUNDS
    optimizer = optimizer_with(1.0)
    for source in (path, str(path)):  # build_scheduler also takes the result file itself
        build_scheduler(optimizer, source, "constant", 10, 2)
        assert optimizer.param_groups[0]["lr"] == BOUNDS.lr


def test_a_result_without_a_recommendation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no usable max_lr"):
        Bounds.of({"recommendation": {"base_lr": 0.1, "max_lr": None, "lr": 0.1}})
    with pytest.raises(ConfigError, match="does not exist"):
        build_scheduler(optimizer_with(1.0), tmp_path / "missing.json", "onecycle", 10, 2)


def test_unknown_kind_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'onecycle'"):
        build_scheduler(optimizer_with(1.0), BOUNDS, "one-cycle", 10, 2)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"max_lr": 0.3}, "no schedule kind"),
        ({"kind": "triangular", "max_lr": 0.3}, "without base_lr"),
        ({"kind": "onecycle", "max_lr": -1.0}, "max_lr must be a positive number"),
        ({"kind": "onecycle", "max_lr": "high"}, "must be a positive number; got 'high'"),
        ({"kind": "onecycle", "max_lr": 0.3, "maxlr": 1}, "unknown schedule key(s) maxlr"),
        ({"kind": "triangular", "base_lr": 0.3, "max_lr": 0.1}, "base_lr must be below"),
        ({"kind": "warmup-cosine", "lr": 0.1, "warmup": "cubic"}, "linear or constant"),
        ({"kind": "warmup-multistep", "lr": 0.1, "milestone_fractions": [2]}, "fractions"),
        ({"kind": "onecycle", "max_lr": 0.3, "pct_start": 1.5}, "pct_start must be at most 1"),
    ],
)
def test_bad_sections_name_the_key_and_the_fix(section: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_section(section, "train.yaml: scheduler")
    assert message in str(raised.value)


def test_warmup_longer_than_training_is_refused() -> None:
    section = {"kind": "warmup-cosine", "lr": 0.1, "warmup_iters": 50}
    with pytest.raises(ConfigError, match="as long as training"):
        scheduler_from_section(optimizer_with(1.0), section, 10, 5)


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_python_snippet_builds_the_same_schedule(kind: str) -> None:
    section = schedule_section(kind, BOUNDS, steps_per_epoch=7)
    pasted = optimizer_with(1.0)
    namespace: dict = {"optimizer": pasted}
    exec(python_snippet(section, steps_per_epoch=7), namespace)  # what a user would paste
    epochs = namespace["epochs"]
    ours = optimizer_with(1.0)
    scheduler = scheduler_from_section(ours, section, 7, epochs)
    expected = lr_trace(ours, scheduler, 7 * epochs)
    assert lr_trace(pasted, namespace.get("scheduler"), 7 * epochs) == pytest.approx(expected)


def test_result_json_lists_every_kind_with_iterations() -> None:
    parameters = schedule_parameters(Bounds(base_lr=0.01, max_lr=0.3, lr=0.1), steps_per_epoch=50)
    assert list(parameters) == list(SCHEDULE_KINDS)
    assert parameters["triangular"]["step_size_up"] == CYCLE_HALF_EPOCHS * 50
    assert parameters["warmup-cosine"]["warmup_iters"] == 50
    for kind, section in parameters.items():
        assert check_section(section, kind)["kind"] == kind


def test_without_steps_per_epoch_lengths_are_given_in_epochs() -> None:
    parameters = schedule_parameters(Bounds(base_lr=0.01, max_lr=0.3, lr=0.1), steps_per_epoch=None)
    assert "step_size_up" not in parameters["triangular"]
    assert parameters["triangular"]["step_size_up_epochs"] == CYCLE_HALF_EPOCHS
    assert parameters["warmup-multistep"]["warmup_epochs"] == 1


def test_rates_are_rounded_to_four_significant_digits() -> None:
    section = schedule_section("onecycle", Bounds(0.045312371, 0.256138702, 0.0853))
    assert section["max_lr"] == 0.2561
    assert section["div_factor"] == 5.652  # of the rounded rates: max_lr / div_factor = base_lr
