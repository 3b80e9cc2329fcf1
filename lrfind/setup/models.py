"""Models by spec: built-in names, `torchvision:<name>`, or a user factory.

    lrfind run --model lenet            # built-in (see `lrfind list`)
    lrfind run --model torchvision:resnet18
    lrfind run --model my_models.py:build   # build(num_classes=..., in_channels=...) -> Module

Built-in and torchvision models are sized to the dataset's channels and classes. Factories are
called with the keyword arguments they accept among `num_classes`, `in_channels` and
`input_shape`. `check_model_fits` runs one tiny batch so shape problems surface as a clear
error before the sweep, not as a stack trace in the middle of it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrfind.errors import SpecError, noted
from lrfind.settings.options import CLASS_INDEX_LOSSES, LOSSES, SetupSettings
from lrfind.setup.batches import Batch, LossFunction, call_model, outputs_loss, read_outputs
from lrfind.setup.factories import (
    TORCHVISION_PREFIX,
    call_factory,
    is_factory_spec,
    load_factory,
)
from lrfind.setup.losses import check_targets_fit


def _conv_out(size: int, kernel: int, padding: int = 0) -> int:
    return size + 2 * padding - kernel + 1


def lenet(in_channels: int, height: int, width: int, num_classes: int) -> nn.Module:
    """Modern LeNet-5: ReLU and max-pooling instead of sigmoid and average pooling."""
    out_height = _conv_out(_conv_out(height, 5, 2) // 2, 5) // 2
    out_width = _conv_out(_conv_out(width, 5, 2) // 2, 5) // 2
    if out_height < 1 or out_width < 1:
        raise SpecError(
            f"lenet needs images of at least 12x12 pixels; got {height}x{width}. "
            "Use --model mlp or a factory model for smaller inputs."
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * out_height * out_width, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def mlp(in_channels: int, height: int, width: int, num_classes: int) -> nn.Module:
    """The 300-100 multilayer perceptron of the classic MNIST benchmarks."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * height * width, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )


def cnn(in_channels: int, height: int, width: int, num_classes: int) -> nn.Module:
    """A small modern CNN: two 5x5 convs, spatial dropout, global average pooling."""
    if height < 4 or width < 4:
        raise SpecError(f"cnn needs images of at least 4x4 pixels; got {height}x{width}.")
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout2d(0.25),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@dataclass(frozen=True)
class BuiltinModel:
    build: Callable[[int, int, int, int], nn.Module]
    description: str


BUILTIN_MODELS = {
    "lenet": BuiltinModel(lenet, "LeNet-5, modern: conv6-conv16 5x5, max-pool, dense 120-84"),
    "mlp": BuiltinModel(mlp, "multilayer perceptron, dense 300-100, ReLU"),
    "cnn": BuiltinModel(cnn, "conv16-conv32 5x5, spatial dropout, global avg pool, dense 128"),
}


def seeded_model(
    spec: str, input_shape: tuple[int, ...], num_classes: int | None, seed: int
) -> nn.Module:
    """`build_model` with initial weights drawn from `seed`, leaving the global RNG as it was:
    the same seed gives the same weights for every sweep or schedule compared."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, input_shape, num_classes)


def build_model(spec: str, input_shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    """A freshly initialised model for inputs of `input_shape` (C, H, W) and `num_classes`
    outputs per sample. A factory is offered `num_classes` only when it is known."""
    if num_classes is None and not is_factory_spec(spec):
        raise SpecError(
            f"model {spec!r} is built with one output per class, and the dataset does not say "
            "how many classes it has (no `classes`, `num_classes` or `targets`, and no labels "
            "lrfind could read). Pass --num-classes N, or use a factory model."
        )
    if spec in BUILTIN_MODELS:
        channels, height, width = _image_shape(spec, input_shape)
        return BUILTIN_MODELS[spec].build(channels, height, width, int(num_classes or 0))
    if spec.startswith(TORCHVISION_PREFIX):
        channels, _, _ = _image_shape(spec, input_shape)
        return _torchvision_model(spec[len(TORCHVISION_PREFIX) :], channels, int(num_classes or 0))
    if is_factory_spec(spec):
        factory = load_factory(spec, "model")
        known = {} if num_classes is None else {"num_classes": num_classes}
        model = call_factory(
            factory,
            spec,
            "model",
            **known,
            in_channels=input_shape[0] if input_shape else 1,
            input_shape=tuple(input_shape),
        )
        if not isinstance(model, nn.Module):
            raise SpecError(
                f"model factory {spec!r} returned a {type(model).__name__}, not a "
                "torch.nn.Module. Return the model instance (e.g. `return MyNet()`)."
            )
        return model
    raise _unknown_model(spec)


def check_model_spec(spec: str) -> None:
    """Resolve a spec without building it, so a bad one fails before any data is loaded."""
    if spec in BUILTIN_MODELS:
        return
    if spec.startswith(TORCHVISION_PREFIX):
        _torchvision_name(spec[len(TORCHVISION_PREFIX) :])
    elif is_factory_spec(spec):
        load_factory(spec, "model")
    else:
        raise _unknown_model(spec)


def _unknown_model(spec: str) -> SpecError:
    close = difflib.get_close_matches(spec, list(BUILTIN_MODELS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return SpecError(
        f"unknown model {spec!r}.{hint} Built-in models: {', '.join(BUILTIN_MODELS)}; also "
        "torchvision:<name> (e.g. torchvision:resnet18), path/to/file.py:function or "
        "package.module:function returning an nn.Module."
    )


def _image_shape(spec: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise SpecError(
            f"model {spec!r} expects image inputs (channels, height, width); the dataset "
            f"gives inputs of shape {tuple(input_shape)}. Use a factory model for such data."
        )
    channels, height, width = (int(size) for size in input_shape)
    return channels, height, width


def _torchvision_model(name: str, in_channels: int, num_classes: int) -> nn.Module:
    import torchvision.models

    _torchvision_name(name)
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except Exception as error:
        raise SpecError(
            f"torchvision:{name} cannot be built for {num_classes} classes: {error}."
        ) from None
    _adapt_first_conv(model, name, in_channels)
    return model


def _torchvision_name(name: str) -> None:
    import torchvision.models

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=3)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise SpecError(
            f"torchvision has no classification model {name!r}.{hint} "
            "See torchvision.models.list_models() for all of them."
        )


def _adapt_first_conv(model: nn.Module, name: str, in_channels: int) -> None:
    """Swap the first convolution for one taking `in_channels`, keeping its other settings."""
    first = next(
        ((path, module) for path, module in model.named_modules() if isinstance(module, nn.Conv2d)),
        None,
    )
    if first is None or first[1].groups != 1:
        raise SpecError(
            f"torchvision:{name} cannot be adapted to {in_channels}-channel inputs (no plain "
            "first Conv2d found). Wrap it in a factory that adapts its input yourself."
        )
    path, conv = first
    if conv.in_channels == in_channels:
        return
    replacement = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    parent_path, _, attribute = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attribute, replacement)


def check_model_fits(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFunction | None,
    setup: SetupSettings,
    num_classes: int | None,
) -> None:
    """One forward pass and the loss on a real batch, in train mode as the sweep runs it (so
    auxiliary outputs and batch norm behave as they will), without gradients and with the
    buffers put back. The model must take the inputs, its outputs must fit the loss and the
    targets the loss; raises SpecError with the shapes and the fix if not."""
    spec = setup.model
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise SpecError(
            f"model {spec!r} has no trainable parameters, so there is no learning rate to "
            "find. Unfreeze some layers (requires_grad=True)."
        )
    buffers = [buffer.detach().clone() for buffer in model.buffers()]
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            raw_outputs = _forward(model, batch, spec)
            outputs, own_loss = read_outputs(raw_outputs)
            if own_loss is not None:
                return  # the model computed its loss from the batch's labels
            _check_outputs(outputs, batch, setup, num_classes)
            check_targets_fit(setup.loss, outputs, batch.targets, spec)
            with noted(f"while lrfind ran loss {setup.loss!r} on the first batch"):
                if loss_fn is not None:
                    try:
                        outputs_loss(outputs, None, batch, loss_fn, first=True)
                    except Exception as error:
                        sized = _sized_for_targets(outputs, setup, num_classes, error)
                        if sized is None:
                            raise
                        raise sized from error
    finally:
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        model.train(was_training)


def _sized_for_targets(
    outputs: Any, setup: SetupSettings, num_classes: int | None, error: Exception
) -> SpecError | None:
    """When a loss from a file fails on a built-in model lrfind sized itself: the model got
    one output per target value (lrfind cannot tell what such a loss needs), which a loss that
    reads class scores cannot use. The error then names the output count and --num-classes;
    None where that cannot be the cause (the count was given, the model is not one lrfind
    builds, or its count already matches the classes or is not one where they are unknown)."""
    built_here = setup.model in BUILTIN_MODELS or setup.model.startswith(TORCHVISION_PREFIX)
    if (
        setup.loss in LOSSES
        or setup.num_classes is not None
        or not built_here
        or not isinstance(outputs, torch.Tensor)
    ):
        return None
    count = int(outputs.shape[1]) if outputs.dim() >= 2 else 1
    if count == num_classes or (num_classes is None and count != 1):
        return None
    message = str(error).strip().splitlines()[0] if str(error).strip() else "(no message)"
    classes = f" (the dataset has {num_classes} classes)" if num_classes else ""
    return SpecError(
        f"loss {setup.loss!r} raised on the first batch ({type(error).__name__}: "
        f"{message.rstrip('.')}), and model {setup.model!r} gives {count} output"
        f"{'s' if count != 1 else ''} per sample: for a loss from a file lrfind sizes a built-in "
        "model by the targets (one output per target value), since it cannot tell what the "
        f"loss reads. If the loss reads class scores, pass --num-classes "
        f"{num_classes or 'N'}{classes}; otherwise check the loss on one batch by hand (--debug "
        "shows the traceback)."
    )


def describe_inputs(inputs: Any) -> str:
    """The shapes of a batch's inputs, in words: (256, 1, 28, 28) or input_ids (8, 16), ..."""
    if isinstance(inputs, torch.Tensor):
        return str(tuple(inputs.shape))
    if isinstance(inputs, dict):
        return ", ".join(f"{key} {describe_inputs(value)}" for key, value in inputs.items())
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(describe_inputs(value) for value in inputs) + ")"
    return type(inputs).__name__


def _forward(model: nn.Module, batch: Batch, spec: str) -> Any:
    try:
        return call_model(model, batch)
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise SpecError(
            f"model {spec!r} cannot take inputs of shape {describe_inputs(batch.inputs)} in "
            f"train mode: {type(error).__name__}: {message}. Choose a model made for these "
            "inputs, or a factory model that adapts to them."
        ) from None


def _check_outputs(
    outputs: Any, batch: Batch, setup: SetupSettings, num_classes: int | None
) -> None:
    spec = setup.model
    if not isinstance(outputs, torch.Tensor):
        raise SpecError(
            f"model {spec!r} returns a {type(outputs).__name__} as its outputs; the loss needs "
            "a tensor. Return the logits (or a tuple whose first item they are)."
        )
    if setup.loss not in CLASS_INDEX_LOSSES:
        return
    if outputs.ndim < 2:
        raise SpecError(
            f"model {spec!r} returns {tuple(outputs.shape)} for inputs of shape "
            f"{describe_inputs(batch.inputs)}; --loss {setup.loss} needs (batch, classes) "
            "logits. For a regression task use --loss mse (or l1, huber)."
        )
    if num_classes is not None and outputs.shape[1] != num_classes:
        said = "--num-classes says" if setup.num_classes is not None else "the dataset has"
        raise SpecError(
            f"model {spec!r} returns {outputs.shape[1]} outputs per sample, but {said} "
            f"{num_classes} classes; output shape {tuple(outputs.shape)} does not fit. Build "
            "the model with one output per class, or give --num-classes to match it."
        )


# Checkpoints often nest the weights under one of these keys.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")


def check_weights_path(path: Path) -> None:
    """Refuse a --weights path that is not a file, before any work."""
    if path.is_dir():
        raise SpecError(
            f"--weights {path} is a folder, not a checkpoint file. Give the file inside it "
            "that holds the state dict, e.g. --weights checkpoints/model.pt."
        )
    if not path.is_file():
        raise SpecError(f"--weights {path} does not exist. Check the path to the checkpoint.")


def load_weights(model: nn.Module, path: Path) -> None:
    """Start from a checkpoint (`--weights`): a state dict, loaded with weights_only=True so
    that a file can hold tensors but never code. A mismatch is refused with the keys listed."""
    check_weights_path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused, truncated or not a torch file at all
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch colours its messages
        reason = re.split(r"(?<=\.)\s", text, maxsplit=1)[0][:200]  # its first sentence
        raise SpecError(
            f"--weights {path} cannot be read as a PyTorch state dict with weights_only=True "
            f"({type(error).__name__}: {reason}). Save it with "
            "torch.save(model.state_dict(), path); files that pickle whole objects are "
            "refused because loading them could run code."
        ) from None
    if isinstance(state, dict):
        for key in NESTED_STATE_KEYS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise SpecError(
            f"--weights {path} holds a {type(state).__name__}, not a state dict (a mapping of "
            "parameter names to tensors). Save it with torch.save(model.state_dict(), path)."
        )
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in set(own) & set(state)
        if state[key].shape != own[key].shape
    )
    problems = [
        f"{label}: {', '.join(keys[:5])}" + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        for label, keys in (
            ("missing from the file", missing),
            ("not in the model", unexpected),
            ("shape in file vs model", reshaped),
        )
        if keys
    ]
    if problems:
        raise SpecError(
            f"--weights {path} does not match the model ({'; '.join(problems)}). Use the "
            "checkpoint of this very architecture, with the same classes and input channels."
        )
    model.load_state_dict(state)
