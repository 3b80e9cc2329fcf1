"""The setup a training config describes, in the layouts training code keeps it in.

    read_setup({"optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9},
                "data": {"batch_size": 128}, "model": {"name": "resnet18"}})
    # {'model': 'resnet18', 'optimizer': 'sgd', 'lr': 0.1, 'momentum': 0.9, 'batch_size': 128}

`lrfind apply` and `lrfind train` compare a result with a config through it
(`check_result_matches`), `apply` finds where the config keeps its rate with it, and config
files may give lrfind's own `optimizer` as such a mapping. The layouts (docs/apply.md):

- lrfind's flat keys: `optimizer: sgd`, `momentum: 0.9`, `batch_size: 256`, `model: lenet`.
- An optimizer mapping under `optimizer`, `optim` or `optim_wrapper.optimizer` (mmengine),
  named by `name` or `type` (`{name: sgd, lr: 0.1, momentum: 0.9}`, `{type: SGD}`), Hydra's
  `_target_: torch.optim.SGD`, or Lightning CLI's `class_path` with its `init_args`.
- The batch size at the top or under `data`, `dataloader`, `train_dataloader`, `loader`,
  `train`, `training` or `datamodule`; Hugging Face's `per_device_train_batch_size`.
- The model, dataset and loss (or `criterion`) as a name or a mapping with a name
  (`model: {_target_: ...}`).

Each is looked for in the mapping that holds the schedule first, then at the top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lrfind.errors import ConfigError
from lrfind.settings.optimizers import TORCH_MODULE

# Keys that name the class or function of a mapping, in the order they are read.
NAME_KEYS = ("name", "type", "_target_", "class_path", "class", "arch")
IMPORT_PATH_KEYS = frozenset({"_target_", "class_path", "class"})  # dotted: package.module.Name
# Hydra's own keys: they configure instantiation, not the optimizer.
HYDRA_KEYS = frozenset({"_partial_", "_recursive_", "_convert_", "_args_"})
OPTIMIZER_PLACES = ("optimizer", "optim", "optim_wrapper.optimizer")
BATCH_SIZE_PLACES = (
    "batch_size",
    "data.batch_size",
    "dataloader.batch_size",
    "train_dataloader.batch_size",
    "loader.batch_size",
    "train.batch_size",
    "training.batch_size",
    "datamodule.batch_size",
    "per_device_train_batch_size",
)
EPOCHS_PLACES = (
    "epochs",
    "max_epochs",
    "num_epochs",
    "num_train_epochs",
    "train.epochs",
    "training.epochs",
    "trainer.max_epochs",
    "train_cfg.max_epochs",
)
NAMED_PLACES = {
    "model": ("model",),
    "dataset": ("dataset", "data.dataset"),
    "loss": ("loss", "criterion"),
}


def spec_of(value: Any) -> str | None:
    """A model, dataset, loss or optimizer as lrfind spells it: a name as it is, a mapping's
    name key, and an import path (`_target_`, `class_path`) as `module:Name`, torch.optim's
    by name (`torch.optim.SGD` is `sgd`)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        return None
    key = next((key for key in NAME_KEYS if isinstance(value.get(key), str)), None)
    if key is None:
        return None
    module, _, name = str(value[key]).rpartition(".")
    if key not in IMPORT_PATH_KEYS or not module or ":" in value[key]:
        return str(value[key])
    if module == TORCH_MODULE or module.startswith(TORCH_MODULE + "."):
        return name.lower()
    return f"{module}:{name}"


def optimizer_fields(mapping: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An optimizer mapping as lrfind's options: `optimizer` (its spec), and those of `lr`,
    `momentum`, `weight_decay` and `optimizer_args` (the other arguments) it holds."""
    spec = spec_of(mapping)
    if spec is None:
        raise ConfigError(
            f"optimizer in {where} is a mapping without a name; add `name: sgd` (or `type:`, "
            "Hydra's `_target_: torch.optim.SGD`, Lightning's `class_path:`)."
        )
    init_args = mapping.get("init_args")  # Lightning CLI: the arguments apart
    given = {**mapping, **(init_args if isinstance(init_args, Mapping) else {})}
    arguments = {
        str(key): value
        for key, value in given.items()
        if key not in NAME_KEYS and key not in HYDRA_KEYS and key != "init_args"
    }
    fields: dict[str, Any] = {"optimizer": spec}
    for option in ("lr", "momentum", "weight_decay"):
        if option in arguments:
            fields[option] = arguments.pop(option)
    if arguments:
        fields["optimizer_args"] = arguments
    return fields


def read_setup(document: Mapping[str, Any], beside: Sequence[str] = ()) -> dict[str, Any]:
    """What an LR range depends on, as far as `document` says it: `model`, `dataset`,
    `loss`, `optimizer`, `lr`, `momentum`, `weight_decay`, `optimizer_args`, `batch_size`,
    `epochs`. Fields the document does not hold are left out. `beside` is the dotted path
    of the mapping that holds the schedule, searched before the top level."""
    setup: dict[str, Any] = {}
    for field, places in NAMED_PLACES.items():
        found = _first(document, beside, places)
        if spec_of(found) is not None:
            setup[field] = spec_of(found)
    optimizer = _first(document, beside, OPTIMIZER_PLACES)
    flat = {
        key: value
        for key in ("momentum", "weight_decay", "optimizer_args")
        if (value := _first(document, beside, (key,))) is not None
    }
    if isinstance(optimizer, Mapping) and spec_of(optimizer) is not None:
        setup.update(flat)
        setup.update(optimizer_fields(optimizer, "the training config"))
    elif spec_of(optimizer) is not None:
        setup.update({"optimizer": spec_of(optimizer), **flat})
    for field, places in (("batch_size", BATCH_SIZE_PLACES), ("epochs", EPOCHS_PLACES)):
        if (value := _first(document, beside, places)) is not None:
            setup[field] = value
    return setup


def rate_place(document: Mapping[str, Any], beside: Sequence[str] = ()) -> list[str] | None:
    """The keys of the optimizer mapping that keeps the training rate as its `lr` (beside
    the schedule first, then at the top; Lightning's `init_args` inside it), or None when
    the config keeps no rate in an optimizer mapping."""
    for base in (list(beside), []) if beside else ([],):
        for place in OPTIMIZER_PLACES:
            keys = [*base, *place.split(".")]
            mapping = lookup(document, keys)
            if not isinstance(mapping, Mapping) or spec_of(mapping) is None:
                continue
            for inner in ([], ["init_args"]):
                holder = lookup(mapping, inner)
                if isinstance(holder, Mapping) and _is_number(holder.get("lr")):
                    return [*keys, *inner]
    return None


def _first(document: Mapping[str, Any], beside: Sequence[str], places: Sequence[str]) -> Any:
    """The first value found at one of `places`, beside the schedule, then at the top."""
    for base in (list(beside), []) if beside else ([],):
        for place in places:
            value = lookup(document, [*base, *place.split(".")])
            if value is not None:
                return value
    return None


def lookup(document: Any, keys: Sequence[str]) -> Any:
    """The value at `keys` (a path of mapping keys), or None where the path ends early."""
    node = document
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
