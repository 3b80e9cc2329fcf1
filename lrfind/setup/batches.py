"""How lrfind reads a batch and a model's output: one rule for the sweep, the fit check before
it and `lrfind train` (docs/rules.md).

    rule = BatchRule(model)
    batch = rule.split(next(iter(loader)))
    loss, outputs = batch_loss(model, batch, torch.nn.functional.cross_entropy)

Batches:
- `(inputs, targets)`: a tuple or list of two.
- `(inputs, targets, *extra)`: the extra items go to the loss after the outputs and the targets
  (sample weights, masks: `loss(outputs, targets, weights)`). A loss that takes only two
  arguments refuses such batches before the sweep instead of dropping the rest.
- a mapping: passed to the model as keyword arguments. Its targets are the value of the first
  of TARGET_KEYS it has; that key goes to the model too when the model's `forward` names it or
  takes `**kwargs` (a Hugging Face model then computes its loss itself).
- inputs that are a tuple or list are passed to the model as positional arguments, a mapping as
  keyword arguments, anything else as the one argument.
- `unpack=` (the Python API) turns any other batch into `(inputs, targets)` first.

Outputs:
- a tensor: the outputs the loss sees.
- a tuple or list: its first item, the main logits (Inception and GoogLeNet add auxiliary
  logits in train mode). When that item is a 0-d tensor it is a loss the model computed, as
  Hugging Face models return with `return_dict=False`, and the second item is the logits.
- a mapping or an object with `loss` / `logits` (a Hugging Face `ModelOutput`): its `loss`
  when the model computed one, else its `logits`.
A loss that returns one value per sample (`reduction="none"`) is averaged over them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lrfind.errors import SweepError

TARGET_KEYS = ("labels", "label", "targets", "target", "y")
LossFunction = Callable[..., torch.Tensor]
Unpack = Callable[[Any], Any]


@dataclass(frozen=True)
class Batch:
    """One batch as the model and the loss take it."""

    args: tuple[Any, ...]  # the model's positional inputs
    kwargs: dict[str, Any]  # the model's keyword inputs
    targets: Any  # None when a mapping batch has no target key (the model's own loss)
    extra: tuple[Any, ...] = field(default=())  # further items, passed to the loss

    def map(self, change: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """The same batch with `change` applied to every tensor in it."""
        return Batch(
            map_tensors(change, self.args),
            map_tensors(change, self.kwargs),
            map_tensors(change, self.targets),
            map_tensors(change, self.extra),
        )

    @property
    def inputs(self) -> Any:
        """The model's inputs as one value: the tensor, the tuple or the mapping."""
        if self.kwargs:
            return self.kwargs
        return self.args[0] if len(self.args) == 1 else self.args


def map_tensors(change: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    """`value` with `change` applied to each tensor inside tuples, lists and mappings."""
    if isinstance(value, torch.Tensor):
        return change(value)
    if isinstance(value, Mapping):
        return {key: map_tensors(change, item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        items = [map_tensors(change, item) for item in value]
        if hasattr(value, "_fields"):  # a named tuple takes its fields one by one
            return type(value)(*items)
        return type(value)(items)
    return value


class BatchRule:
    """The batch rule for one model: where its inputs and targets are, and which keys of a
    mapping batch its forward takes (read once from its signature)."""

    def __init__(self, model: Any, unpack: Unpack | None = None) -> None:
        self.unpack = unpack
        self.names, self.takes_any = _forward_parameters(model)

    def split(self, raw: Any) -> Batch:
        if self.unpack is not None:
            raw = self.unpack(raw)
        if isinstance(raw, Mapping):
            return self._split_mapping(raw)
        if not isinstance(raw, (tuple, list)) or len(raw) < 2:
            kind = type(raw).__name__ + (
                f" of {len(raw)}" if isinstance(raw, (tuple, list)) else ""
            )
            raise SweepError(
                f"each batch must be (inputs, targets), (inputs, targets, *extra) or a mapping "
                f"of the model's keyword inputs; the loader gave a {kind}. Make the dataset "
                "return such items, or pass unpack= to turn a batch into (inputs, targets)."
            )
        inputs, targets, *extra = raw
        if isinstance(inputs, Mapping):
            return Batch((), dict(inputs), targets, tuple(extra))
        if isinstance(inputs, (tuple, list)):
            return Batch(tuple(inputs), {}, targets, tuple(extra))
        return Batch((inputs,), {}, targets, tuple(extra))

    def _split_mapping(self, raw: Mapping[str, Any]) -> Batch:
        key = next((key for key in TARGET_KEYS if key in raw), None)
        kwargs = {str(name): value for name, value in raw.items()}
        if key is not None and not (self.takes_any or key in self.names):
            del kwargs[key]
        return Batch((), kwargs, None if key is None else raw[key])


def _forward_parameters(model: Any) -> tuple[frozenset[str], bool]:
    """The names `model`'s forward takes, and whether it takes any keyword (`**kwargs`).
    Wrappers (DistributedDataParallel, DataParallel, torch.compile) are looked through; a
    model's own submodule that happens to be called `module` is not a wrapper."""
    inner = model
    while True:
        if isinstance(inner, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            inner = inner.module
        elif isinstance(getattr(inner, "_orig_mod", None), nn.Module):
            inner = inner._orig_mod  # torch.compile's OptimizedModule
        else:
            break
    forward = getattr(inner, "forward", inner)
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: pass every key
        return frozenset(), True
    names = frozenset(parameter.name for parameter in parameters)
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)
    return names, takes_any


def call_model(model: Any, batch: Batch) -> Any:
    return model(*batch.args, **batch.kwargs)


def read_outputs(outputs: Any) -> tuple[Any, torch.Tensor | None]:
    """(the outputs the loss sees, the loss the model computed or None): the output rule."""
    if isinstance(outputs, torch.Tensor):
        return outputs, None
    if isinstance(outputs, (tuple, list)):
        if not outputs:
            raise SweepError(_unreadable(outputs))
        first = outputs[0]
        if isinstance(first, torch.Tensor) and first.dim() == 0:
            return (outputs[1] if len(outputs) > 1 else None), first
        return first, None
    if isinstance(outputs, Mapping):
        loss, logits = outputs.get("loss"), outputs.get("logits")
    else:
        loss, logits = getattr(outputs, "loss", None), getattr(outputs, "logits", None)
    if loss is None and logits is None:
        raise SweepError(_unreadable(outputs))
    return logits, loss


def _unreadable(outputs: Any) -> str:
    keys = f" with keys {', '.join(map(str, outputs))}" if isinstance(outputs, Mapping) else ""
    return (
        f"the model returned a {type(outputs).__name__}{keys}, which lrfind cannot read as "
        "outputs. It reads a tensor, a tuple or list (its first item), or a mapping or object "
        "with `loss` or `logits`. Return one of these from forward (docs/rules.md)."
    )


def batch_loss(
    model: Any, batch: Batch, loss_fn: LossFunction | None, first: bool = False
) -> tuple[torch.Tensor, Any]:
    """(the batch's mean loss as a 0-d tensor, the outputs the loss saw): the model's own
    loss when it computed one, else `loss_fn(outputs, targets, *extra)`. On the `first` call
    a loss that broadcast outputs and targets of different shapes is refused."""
    outputs, own_loss = read_outputs(call_model(model, batch))
    return outputs_loss(outputs, own_loss, batch, loss_fn, first), outputs


def outputs_loss(
    outputs: Any,
    own_loss: torch.Tensor | None,
    batch: Batch,
    loss_fn: LossFunction | None,
    first: bool = False,
) -> torch.Tensor:
    """The loss of outputs already computed (read by `read_outputs`), as `batch_loss` says."""
    if own_loss is not None:
        return mean_loss(own_loss)
    if loss_fn is None or batch.targets is None:
        missing = "no loss function was given" if loss_fn is None else "the batch has no targets"
        raise SweepError(
            f"the model returned no loss of its own and {missing}. Give a loss function, or "
            "batches with targets (a mapping batch takes them from one of "
            f"{', '.join(TARGET_KEYS)})."
        )
    if batch.extra and not _takes_arguments(loss_fn, 2 + len(batch.extra)):
        raise SweepError(
            f"the batches have {2 + len(batch.extra)} items and lrfind passes those after "
            "(inputs, targets) to the loss, but the loss takes only (outputs, targets). Give a "
            "loss that takes them (e.g. sample weights), return (inputs, targets) pairs from "
            "the dataset, or pass unpack= to choose the items."
        )
    if not first:
        return mean_loss(loss_fn(outputs, batch.targets, *batch.extra))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = loss_fn(outputs, batch.targets, *batch.extra)
    for warning in caught:
        if "broadcasting" in str(warning.message) and "target size" in str(warning.message):
            raise SweepError(_broadcast_message(outputs, batch.targets))
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return mean_loss(value)


def _broadcast_message(outputs: Any, targets: Any) -> str:
    shapes = [tuple(getattr(value, "shape", ())) for value in (outputs, targets)]
    return (
        f"the loss compares outputs of shape {shapes[0]} with targets of shape {shapes[1]}, "
        "which torch broadcasts to one shape, comparing every output with every target (it "
        "warned: 'Using a target size that is different to the input size'). Give targets of "
        "the outputs' shape (`y.unsqueeze(-1)` for a (batch, 1) output), or use lrfind's "
        "--loss mse (lrfind.setup.losses.build_loss in Python), which reshapes them."
    )


def _takes_arguments(function: Callable[..., Any], count: int) -> bool:
    """Whether `function` (a module: its forward) can take `count` positional arguments."""
    target = function.forward if isinstance(function, nn.Module) else function
    try:
        inspect.signature(target).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature to read: let the call decide
        return True
    return True


def mean_loss(value: Any) -> torch.Tensor:
    """A loss as one number: per-sample losses (reduction="none") are averaged."""
    if not isinstance(value, torch.Tensor):
        raise SweepError(
            f"the loss returned a {type(value).__name__}, not a tensor. Return the batch's "
            "loss as a torch tensor (computed from the outputs, so it has gradients)."
        )
    return value if value.dim() == 0 else value.float().mean()
