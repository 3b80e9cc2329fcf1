"""Issue 26, class 1: everything the sweep trains is put back, whoever owns it.

A range test trains what the optimizer's groups hold. The model's own tensors come back
through its state dict; a tensor the optimizer trains that the model does not own (a
learnable temperature inside the loss module, an extra tensor in the parameter list) must
come back too, bit for bit, with its gradient, at every place a snapshot can wait, when the
sweep ends however it ends.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import lrfind
from lrfind.engine.snapshot import state_bytes, stray_parameters, take_snapshot
from tests.conftest import tiny_model, tiny_task

PLACES = ("device", "cpu", "disk")


class TemperedLoss(nn.Module):
    """Cross-entropy over logits divided by a learnable temperature: a tensor the optimizer
    trains that lives in the loss, not in the model."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.tensor(1.5))
        self.calls = 0
        self.fail_at = fail_at

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise RuntimeError("the loss broke mid-sweep")
        return nn.functional.cross_entropy(outputs / self.temperature, targets)


class WithExtras(nn.Module):
    """A model whose forward also reads tensors it does not own (handed in from outside)."""

    def __init__(self, extras: list[torch.Tensor]) -> None:
        super().__init__()
        self.net = tiny_model()
        self.extras = extras  # a plain list: not registered, not in the state dict

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs: torch.Tensor = self.net(inputs)
        bias, scale, half = self.extras
        return outputs * (1 + scale.t().sum() + half.float().sum()) + bias


def exact(tensor: torch.Tensor | None) -> tuple[Any, ...] | None:
    """A tensor as bytes and layout: equal only when bit for bit the same."""
    if tensor is None:
        return None
    data = tensor.detach()
    raw = data.contiguous().view(torch.uint8) if data.dim() else data.reshape(1).view(torch.uint8)
    return (data.dtype, tuple(data.shape), tuple(data.stride()), bytes(raw.numpy().tobytes()))


def everything(model: nn.Module, loss: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    tensors = [*model.parameters(), *loss.parameters(), *stray_parameters(model, optimizer)]
    return (
        [exact(tensor) for tensor in tensors],
        [exact(tensor.grad) for tensor in tensors],
        {key: exact(value) for key, value in model.state_dict().items()},
        repr(optimizer.state_dict()),
    )


def hostile_setup() -> tuple[nn.Module, TemperedLoss, torch.optim.Optimizer, list[torch.Tensor]]:
    """A model, a loss with its own parameter, and three tensors only the optimizer holds:
    a bias, a transposed (non-contiguous) scale and a bfloat16 one, in their own groups."""
    bias = torch.zeros(3, requires_grad=True)
    scale = torch.full((3, 2), 0.01).t().requires_grad_()  # strides (1, 2): not contiguous
    half = torch.zeros(2, dtype=torch.bfloat16, requires_grad=True)
    model = WithExtras([bias, scale, half])
    loss = TemperedLoss()
    optimizer = torch.optim.SGD(
        [
            {"params": model.parameters()},
            {"params": [loss.temperature, bias], "lr": 0.05},
            {"params": [scale, half]},
        ],
        lr=0.1,
        momentum=0.9,
    )
    # a gradient already there before the test, and one optimizer step of momentum state
    nn.functional.cross_entropy(model(torch.randn(4, 8)), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    bias.grad = torch.full((3,), 0.25)
    return model, loss, optimizer, [bias, scale, half]


def test_the_strays_are_what_the_model_does_not_own() -> None:
    model, loss, optimizer, extras = hostile_setup()
    found = stray_parameters(model, optimizer)
    assert [id(tensor) for tensor in found] == [id(loss.temperature), *map(id, extras)]
    counted = state_bytes(model, optimizer)
    extra = sum(t.numel() * t.element_size() for t in found) + 3 * 4  # values, bias's grad
    assert counted >= extra


@pytest.mark.parametrize("place", PLACES)
def test_a_sweep_puts_back_every_tensor_the_optimizer_trains(place: str) -> None:
    model, loss, optimizer, _ = hostile_setup()
    before = everything(model, loss, optimizer)
    result = lrfind.range_test(
        model, optimizer, loss, tiny_task(), steps=12, end_lr=100.0, snapshot=place,
        progress=False,
    )  # fmt: skip
    assert result.snapshot is not None and result.snapshot.place == place
    assert len(result.records) >= 2  # it did train them
    assert everything(model, loss, optimizer) == before


@pytest.mark.parametrize("place", PLACES)
def test_a_sweep_that_raises_puts_them_back_too(place: str) -> None:
    model, _, optimizer, _ = hostile_setup()
    loss = TemperedLoss(fail_at=5)
    optimizer.add_param_group({"params": [loss.temperature]})
    before = everything(model, loss, optimizer)
    with pytest.raises(RuntimeError, match="the loss broke mid-sweep"):
        lrfind.range_test(
            model, optimizer, loss, tiny_task(), steps=12, snapshot=place, progress=False
        )
    assert everything(model, loss, optimizer) == before


@pytest.mark.parametrize("place", PLACES)
def test_a_stray_whose_data_the_sweep_replaced_comes_back(place: str) -> None:
    """Code that swaps a stray's `.data` for another shape still gets the original back."""
    model = tiny_model()
    extra = torch.arange(6.0).reshape(2, 3).requires_grad_()
    optimizer = torch.optim.SGD([*model.parameters(), extra], lr=0.1)
    before = exact(extra)
    snapshot = take_snapshot(model, optimizer, place)
    try:
        extra.data = torch.zeros(5)
        extra.grad = torch.ones(5)
        snapshot.restore()
    finally:
        snapshot.close()
    assert exact(extra) == before
    assert extra.grad is None


def test_valid_inputs_sweep_as_before() -> None:
    """The model's own tensors alone: the same records as a sweep of a plain model (the
    snapshot of strays adds nothing when there are none)."""
    runs = []
    for _ in range(2):
        model = tiny_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        assert stray_parameters(model, optimizer) == []
        runs.append(
            lrfind.range_test(
                model, optimizer, nn.functional.cross_entropy, tiny_task(), steps=12,
                progress=False, seed=0,
            ).records
        )  # fmt: skip
    assert runs[0] == runs[1]
