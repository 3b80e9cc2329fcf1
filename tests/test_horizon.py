"""The training run an answer is for: the optimizer's step-size probe, the scaling of the
answer, --epochs and the API's epochs / training_steps, and the knee rule."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lrfind
from lrfind.core import analysis
from lrfind.core.analysis import Recommendation
from lrfind.core.horizon import (
    DEFAULT_TRAINING_STEPS,
    PEAK_FRACTION,
    Horizon,
    scaled,
    stored_horizon,
    training_length,
)
from lrfind.engine.probe import measured_horizon, step_multipliers
from lrfind.errors import ConfigError
from tests.conftest import lrfind as run_lrfind
from tests.conftest import said, tiny_run_arguments


def parameter() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(
    ("kind", "options", "early_over_late"),
    [
        (torch.optim.SGD, {}, (0.95, 1.05)),  # the step is the gradient's: no transient
        (torch.optim.Adam, {}, (0.9, 1.2)),  # bias-corrected: settled after a few steps
        (torch.optim.RMSprop, {}, (2.0, 4.0)),  # squared average starts at zero: big first steps
        (torch.optim.Adagrad, {}, (3.0, 10.0)),  # accumulated squares: steps shrink for ever
        (torch.optim.RAdam, {}, (0.05, 0.5)),  # rectification warms up over thousands of steps
        (torch.optim.AdamW, {"weight_decay": 0.1}, (0.9, 1.2)),  # decay is left out of the probe
        (torch.optim.Adam, {"foreach": False}, (0.9, 1.2)),  # implementation choices carry over
        (torch.optim.Adafactor, {}, (0.8, 1.25)),  # a step that follows the parameters' size
    ],
)
def test_the_probe_measures_how_each_family_s_step_size_changes(
    kind: type[torch.optim.Optimizer],
    options: dict[str, float],
    early_over_late: tuple[float, float],
) -> None:
    optimizer = kind(parameter(), lr=0.3, **options)
    before = copy.deepcopy(optimizer.state_dict())
    sizes = step_multipliers(optimizer, 1000)
    assert sizes is not None and len(sizes) == 1000
    low, high = early_over_late
    assert low <= sizes[9] / sizes[299] <= high
    assert str(optimizer.state_dict()) == str(before)  # the caller's optimizer is untouched


class NeedsAClosure(torch.optim.SGD):
    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        if closure is None:
            raise RuntimeError("this optimizer needs a closure")
        return super().step(closure)


class OtherArguments(torch.optim.SGD):
    def __init__(self, params, scale: float):  # type: ignore[no-untyped-def]
        super().__init__(params, lr=scale)


@pytest.mark.parametrize(
    "optimizer",
    [
        NeedsAClosure(parameter(), lr=0.1),
        OtherArguments(parameter(), 0.1),
        torch.optim.LBFGS(parameter(), lr=0.1),
    ],
)
def test_an_optimizer_the_probe_cannot_step_leaves_the_answer_as_read(
    optimizer: torch.optim.Optimizer,
) -> None:
    horizon = measured_horizon(optimizer, 5000, "epochs=2")
    assert horizon.multipliers is None
    assert horizon.factor(20) == 1.0


def recommendation(max_lr: float = 0.3) -> Recommendation:
    return Recommendation(
        base_lr=max_lr / 10, max_lr=max_lr, lr=max_lr / 3, method="knee", confidence="high",
        suggestions=[max_lr / 2, max_lr, max_lr * 2], interval=(max_lr / 2, max_lr * 2),
    )  # fmt: skip


def test_the_answer_is_scaled_by_the_step_size_at_the_reading_over_that_at_the_peak() -> None:
    sizes = np.linspace(4.0, 1.0, 400)  # a step size that shrinks as the state fills
    horizon = Horizon(training_steps=1000, source="--epochs 2", multipliers=sizes)
    assert horizon.peak_step == round(PEAK_FRACTION * 1000)
    described = horizon.described([18, 20, 22])
    factor = sizes[19] / sizes[299]
    assert described["optimizer_factor"] == pytest.approx(factor)
    assert described["reading_step"] == 20 and described["training_steps"] == 1000
    answer = scaled(recommendation(), described)
    assert answer.max_lr == pytest.approx(0.3 * factor)
    assert answer.base_lr == pytest.approx(0.03 * factor)
    assert answer.lr == pytest.approx(0.1 * factor)
    assert answer.interval == pytest.approx((0.15 * factor, 0.6 * factor))
    assert answer.to_dict()["horizon"] == described
    # A run longer than what was measured reads the last size measured.
    assert Horizon(10**6, "x", sizes).factor(20) == pytest.approx(sizes[19] / sizes[-1])


@pytest.mark.parametrize(
    "value",
    [None, "x", {"optimizer_factor": -1}, {"optimizer_factor": True},
     {"optimizer_factor": math.nan}, {"training_steps": 5}],
)  # fmt: skip
def test_a_stored_horizon_without_a_usable_factor_is_ignored(value: object) -> None:
    assert stored_horizon(value) is None


def loader(count: int = 512, batch_size: int = 32) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(count, 8, generator=generator)
    targets = (inputs[:, 0] > 0).long()
    data = torch.utils.data.TensorDataset(inputs, targets)
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=generator
    )


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_find_lr_answers_for_the_run_it_is_told_of() -> None:
    net = model()
    batches = loader()
    for options, steps, source in (
        ({}, DEFAULT_TRAINING_STEPS, "default"),
        ({"epochs": 3}, 3 * len(batches), f"3 epochs of {len(batches)} steps"),
        (
            {"epochs": 3, "accumulate": 2},
            3 * (len(batches) // 2),
            f"3 epochs of {len(batches) // 2} steps",
        ),
        ({"training_steps": np.int64(777)}, 777, "777 training steps"),
    ):
        optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-3)
        outcome = lrfind.find_lr(
            net, optimizer, nn.CrossEntropyLoss(), batches, progress=False, **options
        )
        assert outcome.recommendation is not None
        horizon = outcome.recommendation.horizon
        assert horizon is not None
        assert (horizon["training_steps"], horizon["source"]) == (steps, source)
        assert type(horizon["training_steps"]) is int
        # RMSprop's early steps are larger: a long run's peak takes a larger rate than the
        # sweeps read, a run of a few dozen steps peaks before the state has filled
        factor = float(horizon["optimizer_factor"])
        assert factor > 1.2 if steps >= 500 else factor < 1.2


def test_find_lr_refuses_a_length_it_cannot_count() -> None:
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    endless = (batch for batch in loader())  # a generator: no length
    with pytest.raises(ConfigError, match="training_steps"):
        lrfind.find_lr(net, optimizer, nn.CrossEntropyLoss(), endless, epochs=2, progress=False)
    for bad in (0, -5, 2.5, "10"):
        with pytest.raises(ConfigError, match="training_steps"):
            lrfind.find_lr(
                net, optimizer, nn.CrossEntropyLoss(), loader(), training_steps=bad, progress=False
            )
    for options, words in (
        ({"epochs": 2, "training_steps": 100}, "once"),
        ({"epochs": 1e-9}, "less than one optimizer step"),
    ):
        with pytest.raises(ConfigError, match=words):
            lrfind.find_lr(
                net, optimizer, nn.CrossEntropyLoss(), loader(), progress=False, **options
            )


def test_run_epochs_sets_the_run_the_answer_is_for(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ran = run_lrfind(*tiny_run_arguments(mnist_dir, out), "--epochs", "2.5")
    assert ran.returncode == 0, said(ran)
    result = json.loads((out / "result.json").read_text())
    steps_per_epoch = result["data"]["steps_per_epoch"]
    assert result["config"]["epochs"] == 2.5
    horizon = result["recommendation"]["horizon"]
    assert horizon["training_steps"] == round(2.5 * steps_per_epoch)
    assert horizon["source"] == f"2.5 epochs of {steps_per_epoch} steps"
    assert "for a run of" in said(ran)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf"])
def test_run_refuses_a_training_length_that_is_not_one(
    value: str, mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    ran = run_lrfind(*tiny_run_arguments(mnist_dir, out), "--epochs", value)
    assert ran.returncode == 2, said(ran)
    assert "epochs" in said(ran) and "Traceback" not in said(ran)
    assert not out.exists()


def test_the_knee_is_where_the_descent_ends_and_keeps_clear_of_divergence() -> None:
    lrs = np.logspace(-4, 0, 81)
    fall = 1.0 / (1.0 + np.exp(-(np.log10(lrs) + 2.0) * 4))  # descends around 1e-2
    smoothed = 2.0 - fall
    curve = analysis.Curve(lrs, smoothed, smoothed)
    suggestion = analysis.METHODS["knee"](curve)
    assert suggestion is not None
    start, low = float(np.median(smoothed[:3])), float(smoothed.min())
    expected = int(np.flatnonzero(smoothed <= low + analysis.KNEE_SHARE * (start - low))[0])
    assert suggestion.index == expected
    assert suggestion.lr == pytest.approx(min(lrs[expected], lrs[-1] / analysis.DIVERGENCE_MARGIN))
    # A descent that ends right at the last usable rate answers a margin below it.
    cliff = analysis.Curve(lrs[:60], smoothed[:60], smoothed[:60])
    late = analysis.METHODS["knee"](cliff)
    assert late is not None
    assert late.lr == pytest.approx(lrs[59] / analysis.DIVERGENCE_MARGIN)


def test_a_large_optimizer_correction_costs_a_level_of_confidence() -> None:
    sizes = np.concatenate([np.full(50, 5.0), np.ones(950)])  # 5x larger steps at first
    described = Horizon(1000, "default", sizes).described([20])
    answer = scaled(recommendation(), described)
    assert answer.max_lr == pytest.approx(0.3 * 5)
    assert answer.confidence == "medium"
    assert any("5x" in reason for reason in answer.confidence_reasons)
    settled = scaled(recommendation(), Horizon(1000, "default", np.ones(1000)).described([20]))
    assert (settled.confidence, settled.max_lr) == ("high", pytest.approx(0.3))


def test_an_answer_set_by_the_margin_or_read_off_a_flat_bottom_is_not_high() -> None:
    lrs = np.logspace(-4, 0, 81)
    # A descent that ends right at the last usable rate: the margin sets the answer.
    falling = 2.0 - 1.0 / (1.0 + np.exp(-(np.log10(lrs) + 0.9) * 6))
    cliff = np.concatenate([falling[:70], falling[69] + 10.0 ** np.arange(1, 12)])
    sharp = analysis.analyze(lrs, cliff).recommendation
    assert sharp is not None and sharp.confidence != "high"
    assert analysis.AT_THE_MARGIN in sharp.confidence_reasons
    # A descent done by 1e-3, then flat for three decades before the loss blows up.
    logs = np.log10(lrs)
    flat = 2.0 - 1.0 / (1.0 + np.exp(-(logs + 3.5) * 6)) + 0.02 * np.clip(logs + 3.0, 0, None) ** 2
    blown = np.concatenate([flat[:75], flat[74] + 10.0 ** np.arange(1, 7)])
    wide = analysis.analyze(lrs, blown).recommendation
    assert wide is not None and wide.confidence != "high"
    assert analysis.FLAT_BOTTOM in wide.confidence_reasons


def test_a_gpu_only_implementation_is_probed_with_the_plain_one() -> None:
    optimizer = torch.optim.RMSprop(parameter(), lr=0.1)
    optimizer.param_groups[0].update(capturable=True)  # as a CUDA user's optimizer holds it
    sizes = step_multipliers(optimizer, 100)
    assert sizes is not None and sizes[9] / sizes[99] > 1.5
    assert optimizer.param_groups[0]["capturable"] is True  # the caller's settings unchanged


def test_the_training_length_is_counted_in_optimizer_steps_or_refused() -> None:
    assert training_length() == (None, "default")
    assert training_length(epochs=2, batches_per_epoch=100, accumulate=4) == (
        50,
        "2 epochs of 25 steps",
    )
    assert training_length(training_steps=9) == (9, "9 training steps")
    with pytest.raises(ConfigError, match="--epochs 3 needs data with a length"):
        training_length(epochs=3, batches_per_epoch=None, epochs_name="--epochs")
    with pytest.raises(ConfigError, match="less than one optimizer step"):
        training_length(epochs=0.001, batches_per_epoch=100, epochs_name="--epochs")


def test_a_factor_beyond_what_lrfind_scales_by_leaves_the_answer_as_read() -> None:
    sizes = np.concatenate([np.full(50, 100.0), np.ones(950)])  # 100x: no state fills like that
    described = Horizon(1000, "default", sizes).described([20])
    assert described["optimizer_factor"] == 1.0 and "unscaled" in described
    answer = scaled(recommendation(), described)
    assert answer.max_lr == pytest.approx(0.3)
    assert answer.confidence == "medium"
    assert any("beyond the 20x" in reason for reason in answer.confidence_reasons)
    assert Horizon(1000, "default", None).described([20])["measured"] is False


def test_analyze_says_when_the_stored_factor_is_unusable(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_lrfind(*tiny_run_arguments(mnist_dir, out)).returncode == 0
    result_file = out / "result.json"
    document = json.loads(result_file.read_text())
    for bad in ({"optimizer_factor": 1e300, "training_steps": 1000}, [1, 2], {"training_steps": 5}):
        document["recommendation"]["horizon"] = bad
        result_file.write_text(json.dumps(document))
        ran = run_lrfind("analyze", out / "sweep.csv", "--out", tmp_path / "again", "--overwrite")
        assert ran.returncode == 0, said(ran)
        assert "could not have written" in said(ran) and "not scaled" in said(ran)


def test_several_optimizers_are_measured_and_schedule_free_ones_left_as_read() -> None:
    schedulefree = pytest.importorskip("schedulefree")
    from lrfind.setup.several import OptimizerSet

    first, second = parameter(), parameter()
    adam = torch.optim.Adam(first, lr=0.1)
    rmsprop = torch.optim.RMSprop(second, lr=0.1)
    both = step_multipliers(OptimizerSet({"adam": adam, "rmsprop": rmsprop}), 300)
    alone = [step_multipliers(item, 300) for item in (adam, rmsprop)]
    assert both is not None and all(size is not None for size in alone)
    ratios = [size[9] / size[299] for size in alone if size is not None]
    assert both[9] / both[299] == pytest.approx(math.sqrt(ratios[0] * ratios[1]))
    free = schedulefree.AdamWScheduleFree(parameter(), lr=0.01)
    assert step_multipliers(free, 100) is None  # left as read (docs/recommendation.md)
