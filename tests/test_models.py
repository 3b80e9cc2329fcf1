"""Model specs: built-ins, torchvision adaptation, user factories and the fit check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lrfind.errors import SpecError
from lrfind.settings.options import RunConfig
from lrfind.setup import models
from lrfind.setup.batches import BatchRule
from lrfind.setup.losses import build_loss
from tests.conftest import write_python

MNIST_SHAPE = (1, 28, 28)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_lenet_has_the_textbook_parameter_count() -> None:
    # conv 6x(1x5x5+1) + conv 16x(6x5x5+1) + 400x120+120 + 120x84+84 + 84x10+10
    assert count_parameters(models.build_model("lenet", MNIST_SHAPE, 10)) == 61_706


def test_mlp_has_the_300_100_parameter_count() -> None:
    expected = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert count_parameters(models.build_model("mlp", MNIST_SHAPE, 10)) == expected


@pytest.mark.parametrize("name", ["lenet", "mlp", "cnn"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_builtin_models_give_logits_for_any_image_shape(
    name: str, shape: tuple[int, int, int]
) -> None:
    model = models.build_model(name, shape, 7)
    assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_cnn_uses_spatial_dropout_and_global_average_pooling() -> None:
    layers = list(models.build_model("cnn", MNIST_SHAPE, 10))
    assert any(isinstance(layer, nn.Dropout2d) for layer in layers)
    assert any(isinstance(layer, nn.AdaptiveAvgPool2d) for layer in layers)


def test_torchvision_model_is_adapted_to_one_channel_and_ten_classes() -> None:
    model = models.build_model("torchvision:resnet18", MNIST_SHAPE, 10)
    assert model.conv1.in_channels == 1
    assert model.conv1.out_channels == 64 and model.conv1.kernel_size == (7, 7)
    fits(model, torch.zeros(2, *MNIST_SHAPE), 10, "torchvision:resnet18")


def test_unknown_torchvision_model_suggests_close_names() -> None:
    with pytest.raises(SpecError, match="resnet18"):
        models.build_model("torchvision:resnet181", MNIST_SHAPE, 10)


def test_unknown_model_lists_the_builtins() -> None:
    with pytest.raises(SpecError, match=r"Did you mean 'lenet'.*lenet, mlp, cnn"):
        models.build_model("lenett", MNIST_SHAPE, 10)


def test_file_factory_receives_the_arguments_it_accepts(tmp_path: Path) -> None:
    path = write_python(
        tmp_path / "user_models.py",
        "def build(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))\n",
    )
    model = models.build_model(f"{path}:build", MNIST_SHAPE, 10)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_module_factory_is_imported_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_python(tmp_path / "zoo_for_lrfind.py", "def tiny():\n    return nn.Linear(4, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = models.build_model("zoo_for_lrfind:tiny", MNIST_SHAPE, 10)
    finally:
        sys.modules.pop("zoo_for_lrfind", None)
    assert isinstance(model, nn.Linear)


@pytest.mark.parametrize(
    ("body", "spec_suffix", "message"),
    [
        (
            "def build():\n    return nn.Linear(2, 2)\n",
            ":missing",
            "has no function 'missing'.*build",
        ),
        ("def build():\n    return 42\n", ":build", "returned a int, not a torch.nn.Module"),
        (
            "def build():\n    raise ValueError('bad width')\n",
            ":build",
            "raised ValueError: bad width",
        ),
        ("def build(:\n", ":build", "running .* failed with SyntaxError"),
    ],
)
def test_bad_factories_are_explained(
    tmp_path: Path, body: str, spec_suffix: str, message: str
) -> None:
    path = write_python(tmp_path / "broken_models.py", body)
    with pytest.raises(SpecError, match=message):
        models.build_model(f"{path}{spec_suffix}", MNIST_SHAPE, 10)


def test_missing_factory_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        models.build_model(f"{tmp_path}/nope.py:build", MNIST_SHAPE, 10)


def test_missing_factory_module_is_named() -> None:
    with pytest.raises(SpecError, match=r"module 'no_such_package_xyz\.models' cannot be imported"):
        models.build_model("no_such_package_xyz.models:build", MNIST_SHAPE, 10)


def test_fit_check_names_the_shapes_when_classes_do_not_match() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))
    with pytest.raises(SpecError, match=r"5 outputs .* 10 classes.*\(2, 5\)"):
        fits(model, torch.zeros(2, 1, 28, 28), 10)


def test_fit_check_names_the_input_shape_the_model_cannot_take() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(SpecError, match=r"cannot take inputs of shape \(2, 1, 28, 28\)"):
        fits(model, torch.zeros(2, 1, 28, 28), 10)


def test_fit_check_refuses_a_model_without_trainable_parameters() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(SpecError, match="no trainable parameters"):
        fits(model, torch.zeros(2, 1, 28, 28), 10)


def fits(
    model: nn.Module, inputs: torch.Tensor, num_classes: int | None, spec: str = "m", **setup: Any
) -> None:
    """The fit check on a batch of `inputs` with class-0 targets, as `lrfind run` calls it."""
    config = RunConfig(model=spec, **setup)
    batch = BatchRule(model).split((inputs, torch.zeros(len(inputs), dtype=torch.long)))
    models.check_model_fits(model, batch, build_loss(config), config, num_classes)


def lenet_for_mnist(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.build_model("lenet", (1, 28, 28), 10)


def test_weights_from_a_state_dict_or_a_checkpoint_dict_are_loaded(tmp_path: Path) -> None:
    source, target = lenet_for_mnist(1), lenet_for_mnist(2)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    torch.save({"epoch": 3, "model_state_dict": source.state_dict()}, tmp_path / "nested.pt")
    for name in ("plain.pt", "nested.pt"):
        models.load_weights(target, tmp_path / name)
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), key


class Pickled(nn.Module):
    pass


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: Pickled(), "cannot be read as a PyTorch state dict with weights_only=True"),
        (lambda: [torch.zeros(2)], "holds a list, not a state dict"),
        (lambda: {"0.weight": torch.zeros(6, 1, 5, 5)},
         "missing from the file: 0.bias, 11.bias, 11.weight, 3.bias, 3.weight and 4 more"),
        (lambda: {**lenet_for_mnist(0).state_dict(), "extra.weight": torch.zeros(1)},
         "not in the model: extra.weight"),
        (lambda: {**lenet_for_mnist(0).state_dict(), "11.weight": torch.zeros(3, 84)},
         "shape in file vs model: 11.weight (3, 84) vs (10, 84)"),
    ],
)  # fmt: skip
def test_bad_weights_files_are_refused_naming_the_mismatch(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = tmp_path / "weights.pt"
    torch.save(content(), path)
    with pytest.raises(SpecError) as caught:
        models.load_weights(lenet_for_mnist(0), path)
    assert message in str(caught.value)


def test_a_file_that_is_not_a_torch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match="cannot be read as a PyTorch state dict"):
        models.load_weights(lenet_for_mnist(0), path)
