"""The range-test engine on a seeded tiny model: schedule, stops, state restore, determinism."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lrfind import range_test
from lrfind.core.ramp import sweep_lrs
from lrfind.core.records import STOP_COMPLETED, STOP_DIVERGED, STOP_NON_FINITE, StepRecord
from lrfind.errors import ConfigError, SweepError
from tests.conftest import assert_same_state, snapshot, tiny_model, tiny_task


class SpyLoss:
    """Cross-entropy that counts its calls and first runs `hook(call_number, loss)`, which
    may observe the optimizer, replace the loss, or raise."""

    def __init__(
        self, hook: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None
    ) -> None:
        self.calls = 0
        self.hook = hook

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = nn.functional.cross_entropy(outputs, targets)
        replaced = self.hook(self.calls, loss) if self.hook is not None else None
        return loss if replaced is None else replaced


def test_every_step_follows_the_exponential_schedule_exactly() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = range_test(
        model, optimizer, nn.functional.cross_entropy, tiny_task(),
        start_lr=1e-6, end_lr=1e-3, steps=40, seed=0,
    )  # fmt: skip
    assert result.stop_reason == STOP_COMPLETED
    assert [record.lr for record in result.records] == sweep_lrs(1e-6, 1e-3, 40, "exp")
    assert [record.step for record in result.records] == list(range(40))


def test_linear_mode_follows_the_linear_schedule_exactly() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = range_test(
        model, optimizer, nn.functional.cross_entropy, tiny_task(),
        start_lr=1e-4, end_lr=1e-2, steps=25, mode="linear", seed=0,
    )  # fmt: skip
    assert result.lrs.tolist() == sweep_lrs(1e-4, 1e-2, 25, "linear")


def test_optimizer_sees_the_recorded_lr_at_each_step() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen: list[float] = []
    loss_fn = SpyLoss(lambda call, loss: seen.append(optimizer.param_groups[0]["lr"]))

    result = range_test(model, optimizer, loss_fn, tiny_task(), start_lr=1e-5, end_lr=1e-2,
                        steps=20)  # fmt: skip
    assert seen == result.lrs.tolist()


def test_parameter_groups_keep_their_lr_ratios() -> None:
    model = tiny_model()
    first, second = model[0], model[3]
    optimizer = torch.optim.SGD(
        [{"params": first.parameters(), "lr": 1.0}, {"params": second.parameters(), "lr": 0.1}]
    )
    groups = optimizer.param_groups
    ratios: list[float] = []
    loss_fn = SpyLoss(lambda call, loss: ratios.append(groups[1]["lr"] / groups[0]["lr"]))

    result = range_test(
        model, optimizer, loss_fn, tiny_task(), start_lr=1e-5, end_lr=1e-2, steps=15
    )
    assert ratios == pytest.approx([0.1] * 15)
    assert result.group_ratios == pytest.approx((1.0, 0.1))  # reported beside the rates
    assert [group["lr"] for group in optimizer.param_groups] == [1.0, 0.1]


def test_model_and_optimizer_state_are_restored_after_the_sweep() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    inputs, targets = tiny_task()[0]
    nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()  # creates momentum buffers worth restoring
    model.eval()
    model_before = snapshot(model)
    optimizer_before = optimizer.state_dict()
    buffers_before = [
        optimizer.state[parameter]["momentum_buffer"].clone() for parameter in model.parameters()
    ]

    range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(), steps=30)

    assert_same_state(model_before, snapshot(model))
    assert not model.training
    assert optimizer.param_groups[0]["lr"] == optimizer_before["param_groups"][0]["lr"]
    for parameter, before in zip(model.parameters(), buffers_before, strict=True):
        assert torch.equal(optimizer.state[parameter]["momentum_buffer"], before)


def test_each_submodule_gets_its_own_mode_back() -> None:
    """A model in train mode with a frozen batch norm in eval, as when fine-tuning."""
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model.train()
    model[1].eval()
    batches = [(torch.randn(16, 4), torch.randint(0, 2, (16,))) for _ in range(4)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    range_test(model, optimizer, nn.functional.cross_entropy, batches, steps=12)
    assert [module.training for module in model] == [True, False, True, True]
    assert model.training


def test_state_is_restored_when_the_loss_function_fails_mid_sweep() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = snapshot(model)

    def explode_at_eight(call: int, loss: torch.Tensor) -> None:
        if call == 8:
            raise RuntimeError("boom")

    failing_loss = SpyLoss(explode_at_eight)

    with pytest.raises(RuntimeError, match="boom"):
        range_test(model, optimizer, failing_loss, tiny_task(), start_lr=1e-2, end_lr=1.0, steps=20)
    assert_same_state(before, snapshot(model))
    assert optimizer.param_groups[0]["lr"] == 0.05


def test_same_seed_gives_the_same_curve_and_another_seed_another() -> None:
    def losses(seed: int) -> list[float]:
        model = tiny_model(dropout=0.5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        result = range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(),
                            start_lr=1e-4, end_lr=1.0, steps=30, seed=seed)  # fmt: skip
        return result.losses.tolist()

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)


def test_seeding_leaves_the_callers_random_state_untouched() -> None:
    model = tiny_model(dropout=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(), steps=12, seed=7)
    assert torch.equal(before, torch.random.get_rng_state())


def test_sweep_stops_when_the_loss_diverges() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(),
                        start_lr=1e-4, end_lr=1e4, steps=100, seed=0)  # fmt: skip
    assert result.stop_reason in (STOP_DIVERGED, STOP_NON_FINITE)
    assert len(result.records) < 100
    assert result.analysis.divergence_index == len(result.records) - 1
    assert result.recommendation is not None
    assert result.recommendation.max_lr < result.records[-1].lr


def test_non_finite_loss_mid_sweep_is_a_stop_reason_not_a_crash() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    nan_after_twenty = SpyLoss(lambda call, loss: loss * math.nan if call > 20 else None)

    result = range_test(model, optimizer, nan_after_twenty, tiny_task(), start_lr=1e-5,
                        end_lr=1e-2, steps=50)  # fmt: skip
    assert result.stop_reason == STOP_NON_FINITE
    assert len(result.records) == 21


def test_nan_at_the_first_step_is_a_clear_error_and_state_is_restored() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = snapshot(model)
    batches = [(torch.full((4, 8), float("nan")), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(SweepError, match="first step"):
        range_test(model, optimizer, nn.functional.cross_entropy, batches, steps=10)
    assert_same_state(before, snapshot(model))


def test_callback_receives_every_record_in_order() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    received: list[StepRecord] = []
    result = range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(),
                        steps=25, callback=received.append)  # fmt: skip
    assert received == result.records


def test_a_short_loader_is_iterated_again() -> None:
    class CountingLoader:
        def __init__(self) -> None:
            self.passes = 0
            self.batches = tiny_task(size=96)  # three batches

        def __iter__(self) -> Iterator[tuple[Any, Any]]:
            self.passes += 1
            return iter(self.batches)

    loader = CountingLoader()
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = range_test(model, optimizer, nn.functional.cross_entropy, loader,
                        start_lr=1e-6, end_lr=1e-4, steps=10)  # fmt: skip
    assert len(result.records) == 10
    assert loader.passes == 4


def test_an_empty_loader_is_a_clear_error() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SweepError, match="no batches"):
        range_test(model, optimizer, nn.functional.cross_entropy, [], steps=10)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr must be below end_lr; got 1 >= 0.1"),
        ({"start_lr": -1.0}, "start_lr must be a positive"),
        ({"steps": 5}, "steps must be between 10"),
        ({"mode": "cosine"}, "unknown mode 'cosine'"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
        (
            {"method": "magic"},
            "unknown method 'magic'; choose one of: knee, bottom, steepest, valley, minimum",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_work(arguments: dict[str, Any], message: str) -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    counting_loss = SpyLoss()

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        range_test(model, optimizer, counting_loss, tiny_task(), **arguments)
    assert counting_loss.calls == 0


def test_held_out_batches_are_recorded_without_changing_the_training_curve() -> None:
    def sweep(val_batches: list[tuple[Any, Any]] | None) -> Any:
        model = tiny_model(dropout=0.3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return range_test(model, optimizer, nn.functional.cross_entropy, tiny_task(),
                          start_lr=1e-3, end_lr=1.0, steps=20, seed=3,
                          val_batches=val_batches)  # fmt: skip

    held_out = tiny_task(seed=9, size=64)
    plain, with_validation = sweep(None), sweep(held_out)
    assert plain.val_losses is None
    assert plain.losses.tolist() == with_validation.losses.tolist()
    values = with_validation.val_losses
    assert values is not None and len(values) == 20 and np.isfinite(values).all()
    assert values[-1] < values[0]  # the model learns, and the held-out loss shows it


def test_accumulated_half_batches_trace_the_curve_of_full_batches() -> None:
    """2 micro-batches of 16 per optimizer step equal one batch of 32: same gradient (the loss
    is a mean), and the recorded loss is the micro-batches' mean."""
    halves = tiny_task(batch_size=16)
    options = {"start_lr": 1e-3, "end_lr": 1.0, "steps": 30, "seed": 0}
    model = tiny_model()
    whole = range_test(model, sgd(model), nn.CrossEntropyLoss(), tiny_task(), **options)
    model = tiny_model()
    split = range_test(model, sgd(model), nn.CrossEntropyLoss(), halves, accumulate=2, **options)
    assert whole.stop_reason == split.stop_reason == STOP_COMPLETED
    assert split.lrs.tolist() == whole.lrs.tolist()
    assert whole.losses[-1] < whole.losses[0] - 0.3  # it trained: the comparison means something
    assert split.losses == pytest.approx(whole.losses, rel=1e-5)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-3)


def test_fp16_steps_the_scaler_skips_do_not_advance_the_lr() -> None:
    """The first 3 losses are blown up so that their scaled gradients overflow: the scaler
    skips those steps, and the sweep then runs every planned LR exactly once, in order."""
    model = tiny_model()
    spy = SpyLoss(lambda call, loss: loss * 1e38 if call <= 3 else None)
    result = range_test(model, sgd(model), spy, tiny_task(), start_lr=1e-3, end_lr=1.0,
                        steps=20, precision="fp16", seed=0)  # fmt: skip
    assert result.skipped_steps == 3 and spy.calls == 23
    assert result.lrs.tolist() == sweep_lrs(1e-3, 1.0, 20, "exp")
    assert all(math.isfinite(loss) and loss < 10 for loss in result.losses)


def test_fp16_that_always_overflows_at_the_start_is_a_clear_error() -> None:
    model = tiny_model()
    spy = SpyLoss(lambda call, loss: loss * math.inf)
    with pytest.raises(SweepError, match="Use --precision bf16 or fp32"):
        range_test(model, sgd(model), spy, tiny_task(), steps=20, precision="fp16")


def test_bf16_autocast_follows_the_fp32_curve_closely() -> None:
    options = {"start_lr": 1e-3, "end_lr": 0.1, "steps": 20, "seed": 0}
    model = tiny_model()
    exact = range_test(model, sgd(model), nn.CrossEntropyLoss(), tiny_task(), **options)
    model = tiny_model()
    half = range_test(model, sgd(model), nn.CrossEntropyLoss(), tiny_task(), precision="bf16",
                      **options)  # fmt: skip
    assert half.losses == pytest.approx(exact.losses, rel=0.02)
    assert half.losses.tolist() != exact.losses.tolist()  # it did run in bfloat16


def test_channels_last_gives_the_same_curve_for_a_conv_net() -> None:
    def conv_net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 1, 8, 8, generator=generator)
    batches = [(images[start : start + 16], torch.arange(16) % 3) for start in range(0, 64, 16)]
    options = {"start_lr": 1e-3, "end_lr": 1.0, "steps": 15, "seed": 0}
    model = conv_net()
    plain = range_test(model, sgd(model), nn.CrossEntropyLoss(), batches, **options)
    model = conv_net().to(memory_format=torch.channels_last)
    last = range_test(model, sgd(model), nn.CrossEntropyLoss(), batches, channels_last=True,
                      **options)  # fmt: skip
    assert last.losses == pytest.approx(plain.losses, rel=1e-4)
    assert plain.losses[-1] != plain.losses[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"accumulate": 0}, "accumulate must be a positive integer; got 0"),
        ({"accumulate": True}, "accumulate must be a positive integer; got True"),
        ({"method": "magic"}, "unknown method 'magic'"),
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr must be below end_lr"),
    ],
)
def test_bad_arguments_are_config_errors(options: dict, message: str) -> None:
    """Every argument check of the API raises the same kind of error, before any step."""
    model = tiny_model()
    with pytest.raises(ConfigError, match=message):
        range_test(model, sgd(model), nn.CrossEntropyLoss(), tiny_task(), **options)


def test_run_config_checks_precision_and_accumulate() -> None:
    from lrfind.settings.options import RunConfig

    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        RunConfig(precision="fp8")
    with pytest.raises(ConfigError, match="accumulate must be between 1 and 1024; got 0"):
        RunConfig(accumulate=0)


class Counting(nn.Module):
    """A linear layer that counts its forward passes in a non-persistent buffer and keeps
    extra state (not a tensor) in its state dict."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(8, 16)
        self.second = nn.Linear(16, 3)
        self.register_buffer("calls", torch.zeros(()), persistent=False)
        self.note = {"tag": "kept"}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.second(torch.relu(self.first(inputs)))

    def get_extra_state(self) -> dict[str, str]:
        return dict(self.note)

    def set_extra_state(self, state: dict[str, str]) -> None:
        self.note = dict(state)


def test_range_test_puts_back_grads_buffers_and_extra_state() -> None:
    model = Counting()
    model.first.weight.grad = torch.full_like(model.first.weight, 0.5)  # set before the sweep
    optimizer = sgd(model)
    before = snapshot(model)
    range_test(model, optimizer, nn.CrossEntropyLoss(), tiny_task(), steps=20, seed=0)
    assert_same_state(snapshot(model), before)
    assert model.calls.item() == 0
    assert model.note == {"tag": "kept"}
    assert torch.equal(model.first.weight.grad, torch.full_like(model.first.weight, 0.5))
    assert model.first.bias.grad is None and model.second.weight.grad is None


def test_a_group_frozen_at_rate_zero_stays_frozen() -> None:
    model = Counting()
    optimizer = torch.optim.SGD(
        [
            {"params": model.first.parameters(), "lr": 0.0},
            {"params": model.second.parameters(), "lr": 0.1},
        ]
    )
    rates: list[list[float]] = []

    def watch(record: StepRecord) -> None:
        rates.append([group["lr"] for group in optimizer.param_groups])

    result = range_test(
        model, optimizer, nn.CrossEntropyLoss(), tiny_task(), steps=20, seed=0, callback=watch
    )
    assert result.group_ratios == (0.0, 1.0)
    assert rates and all(first == 0.0 and second > 0 for first, second in rates)
    assert [second for _, second in rates] == [record.lr for record in result.records]
