"""Every option of lrfind, its default and why, and how options are loaded and checked.

    lrfind run --config configs/sweep-lenet-sgd.yaml --steps 200

Each option is one field, declared once with `option()`: its default, the reason beside it,
its help, its `--help` panel and its choices; the CLI's flags, config files and validation all
follow from it. Precedence is defaults < config file < command-line flags. Config files are
YAML, TOML or JSON mappings whose keys are the option names (`start_lr` or `start-lr`). Every
value is checked before any work starts, and a bad one raises `ConfigError` naming the value
and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lrfind.core.methods import DEFAULT_METHOD, METHODS
from lrfind.core.settings import (
    SearchSettings,
    SweepSettings,
    check_choice,
    check_positive,
    option,
)
from lrfind.errors import ConfigError
from lrfind.settings.formats import parse_document, read_text
from lrfind.settings.layouts import optimizer_fields, read_setup
from lrfind.settings.optimizers import (
    check_optimizer_args,
    check_optimizer_name,
    parse_optimizer_args,
    stacking_problem,
)

Config = TypeVar("Config")

# The losses by name, each with the torch.nn class lrfind.setup.losses builds for it; any other
# loss is a file.py:fn or module:fn spec.
LOSSES = {
    "cross-entropy": "CrossEntropyLoss",
    "nll": "NLLLoss",
    "bce": "BCEWithLogitsLoss",
    "mse": "MSELoss",
    "l1": "L1Loss",
    "huber": "HuberLoss",
    "smooth-l1": "SmoothL1Loss",
}
# Losses whose targets are class indices: the model's outputs are one logit per class.
CLASS_INDEX_LOSSES = ("cross-entropy", "nll")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
# Train the repeats' model copies stacked, as one (lrfind.engine.stacked). auto: on CUDA, which
# it is built for; on a CPU one copy after another is faster.
STACK_REPEATS = ("auto", "on", "off")
# Where range_test keeps the model's state while it sweeps (lrfind.engine.snapshot). auto: host
# memory for a model on an accelerator, a file for a CPU model over 16 MiB, by the free memory.
SNAPSHOT_PLACES = ("auto", "device", "cpu", "disk")
# How a torchrun run spreads the model (lrfind.engine.distributed). ddp: a whole copy per rank;
# fsdp: FSDP2's fully_shard, each rank holding a shard of the parameters and optimizer state.
PARALLEL_MODES = ("ddp", "fsdp")
MAX_SEED = 2**64 - 1 - 100  # torch takes 64-bit seeds; repeats use seed + 1 .. seed + 100


@dataclass(frozen=True)
class SetupSettings:
    """What a sweep and a training run share: the model, the data and the optimizer.

    Declared once; `RunConfig` and `TrainConfig` add their own fields after these."""

    # the network of the Fashion-MNIST chapter this tool grew from
    model: str = option(
        "lenet",
        "lenet, mlp, cnn, torchvision:<name>, file.py:fn or module:fn.",
        panel="Model and data",
        metavar="NAME",
    )
    # real, small, and packaged offline by Debian
    dataset: str = option(
        "fashion-mnist",
        "fashion-mnist, mnist, torchvision:<Class>, folder:PATH, file.py:fn or module:fn.",
        panel="Model and data",
        metavar="NAME",
    )
    data_dir: Path | None = option(
        None,
        "Folder searched first for dataset files.",
        panel="Model and data",
        unset="none: $LRFIND_DATA_DIR, the cache, system folders",
    )
    # fetch through torchvision only when no local copy is found
    download: bool = option(
        True,
        "Allow torchvision to download a missing built-in or torchvision: dataset.",
        panel="Model and data",
        flag="--download/--no-download",
    )
    # plain SGD, as in the chapter; its LR range is the most sensitive
    optimizer: str = option(
        "sgd",
        "Any torch.optim name, any case (sgd, adam, adamw, rmsprop, nadam, radam, adagrad, "
        "...), or module:Class / file.py:Class.",
        panel="Optimizer",
        metavar="NAME",
    )
    # plain SGD by default; 0.9 is the usual choice with momentum
    momentum: float = option(0.0, "SGD momentum.", panel="Optimizer")
    # no regularisation: the sweep is about optimisation speed
    weight_decay: float = option(0.0, "Weight decay.", panel="Optimizer")
    optimizer_args: dict[str, Any] | None = option(
        None,
        "A keyword argument of the optimizer; repeat for more (alpha=0.9, betas=0.9,0.99, "
        "nesterov=true).",
        panel="Optimizer",
        metavar="KEY=VALUE",
        flag="--optimizer-arg",
        unset="the optimizer's own",
    )
    # what the chapter used; large enough for a low-noise curve
    batch_size: int = option(256, "Mini-batch size.", panel="Model and data")
    # the loss of classification, the task of the built-in data
    loss: str = option(
        "cross-entropy",
        "Loss by name (bce is with logits), or file.py:fn / module:fn.",
        panel="Model and data",
        metavar="NAME",
        choices=tuple(LOSSES),
    )
    # cross-entropy only; 0.1 is the usual choice when used
    label_smoothing: float = option(0.0, "Cross-entropy label smoothing.", panel="Model and data")
    num_classes: int | None = option(
        None,
        "Outputs per sample of a built-in model (classes).",
        panel="Model and data",
        unset="read from the dataset",
    )
    # model init and data order; the same seed gives the same run
    seed: int = option(0, "Seed for model init and data order.", panel="Sweep")
    # cuda, then mps, then cpu
    device: str = option(
        "auto", "Where to train.", panel="Performance", metavar="NAME", choices=DEVICES
    )
    out: Path | None = option(None, "Run folder.", panel="Output", unset="a new folder under runs/")
    # never replace an existing run folder unless asked
    overwrite: bool = option(
        False, "Replace an existing run folder.", panel="Output", flag="--overwrite"
    )
    quiet: bool = option(
        False, "No live progress, only the summary.", panel="Output", flag="--quiet -q"
    )

    def __post_init__(self) -> None:
        check_optimizer_name(self.optimizer)  # resolved, arguments checked: lrfind.setup
        check_optimizer_args(self.optimizer_args or {})
        check_choice("device", self.device, DEVICES)
        if self.batch_size < 1:
            raise ConfigError(
                f"batch_size must be a positive integer; got {self.batch_size}. "
                "Try --batch-size 256."
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(
                f"momentum must be in [0, 1); got {self.momentum:g}. Use 0 for plain SGD "
                "or 0.9 for the usual momentum SGD."
            )
        if not self.weight_decay >= 0.0 or not math.isfinite(self.weight_decay):
            raise ConfigError(
                f"weight_decay must be zero or positive; got {self.weight_decay:g}. "
                "Try --weight-decay 0 or 5e-4."
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(
                f"seed must be between 0 and {MAX_SEED} (torch seeds are 64-bit, and each "
                f"repeat adds one); got {self.seed}. Try --seed 0."
            )
        if ":" not in self.loss:  # names in any case, with - or _ (Huber, cross_entropy)
            object.__setattr__(self, "loss", self.loss.strip().lower().replace("_", "-"))
        if self.loss not in LOSSES and ":" not in self.loss:
            close = difflib.get_close_matches(self.loss, LOSSES, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown loss {self.loss!r}.{hint} Choose one of: {', '.join(LOSSES)}, or "
                "give your own as path/to/file.py:function or package.module:function taking "
                "(outputs, targets, *extra) and returning the loss (per sample or its mean)."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(
                f"label_smoothing must be in [0, 1); got {self.label_smoothing:g}. "
                "Use 0 for none or e.g. --label-smoothing 0.1."
            )
        if self.label_smoothing and self.loss != "cross-entropy":
            raise ConfigError(
                f"label_smoothing applies to --loss cross-entropy only; got label smoothing "
                f"{self.label_smoothing:g} with {self.loss}. Drop --label-smoothing."
            )
        if self.num_classes is not None and not 1 <= self.num_classes <= 10_000_000:
            raise ConfigError(
                f"num_classes must be a positive integer; got {self.num_classes}. It is the "
                "number of outputs per sample (e.g. --num-classes 10)."
            )
        if not self.model.strip():
            raise ConfigError("model is empty. Pass --model lenet, or see `lrfind list`.")
        if not self.dataset.strip():
            raise ConfigError("dataset is empty. Pass --dataset fashion-mnist.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, paths as strings, in field order."""
        return {
            field.name: (str(value) if isinstance(value, Path) else value)
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }


@dataclass(frozen=True)
class RunConfig(SearchSettings, SweepSettings, SetupSettings):
    """Everything `lrfind run` needs: the setup, the sweep's and the plan's knobs (their
    fields in that order), then these. Construction validates every field."""

    # how a curve becomes a suggestion
    method: str = option(
        DEFAULT_METHOD,
        "Suggestion method.",
        panel="Recommendation",
        metavar="NAME",
        choices=tuple(METHODS),
    )
    val_batches: int = option(
        0, "Held-out batches whose loss is recorded every step.", panel="Sweep"
    )
    # an LR-free optimizer's lr multiplies its own estimate: no rate to read (docs/optimizers.md)
    force_sweep: bool = option(
        False,
        "Sweep an LR-free optimizer's lr multiplier anyway (Prodigy, D-Adaptation, DoG).",
        panel="Sweep",
        flag="--force-sweep",
    )
    weights: Path | None = option(
        None,
        "Start from this state dict (torch.save(model.state_dict(), path)).",
        panel="Model and data",
        unset="fresh initial weights",
    )
    # bf16/fp16 autocast pays on GPUs; fp32 is exact everywhere
    precision: str = option(
        "fp32",
        "Autocast precision (fp16 with a GradScaler).",
        panel="Performance",
        metavar="NAME",
        choices=PRECISIONS,
    )
    # batches per optimizer step, for a larger batch than memory allows
    accumulate: int = option(1, "Batches per optimizer step (one LR).", panel="Performance")
    # NHWC memory for conv nets; a small, noisy win on a CPU (docs/speed.md)
    channels_last: bool = option(
        False, "Channels-last memory for conv models.", panel="Performance", flag="--channels-last"
    )
    # torch.compile: its start-up outweighs a short sweep on a small model (docs/speed.md)
    compile: bool = option(
        False,
        "torch.compile the model (pays on long sweeps).",
        panel="Performance",
        flag="--compile",
    )
    stack_repeats: str = option(
        "auto",
        "Train the repeats' model copies stacked, as one run (auto: on CUDA).",
        panel="Performance",
        metavar="NAME",
        choices=STACK_REPEATS,
    )
    # a copy beside the model doubles its state
    snapshot: str = option(
        "auto",
        "Where the model's state waits during a sweep (auto: host memory off a GPU, a file "
        "for a CPU model over 16 MiB).",
        panel="Performance",
        metavar="NAME",
        choices=SNAPSHOT_PLACES,
    )
    # under torchrun only; ddp keeps a whole copy per rank, fsdp shards it
    parallel: str = option(
        "ddp",
        "Under torchrun: ddp (a model copy per rank) or fsdp (FSDP2, each rank one shard).",
        panel="Performance",
        metavar="NAME",
        choices=PARALLEL_MODES,
    )

    def __post_init__(self) -> None:
        SetupSettings.__post_init__(self)
        SweepSettings.__post_init__(self)
        SearchSettings.__post_init__(self)
        check_choice("parallel", self.parallel, PARALLEL_MODES)
        check_choice("method", self.method, tuple(METHODS))
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("stack_repeats", self.stack_repeats, STACK_REPEATS)
        check_choice("snapshot", self.snapshot, SNAPSHOT_PLACES)
        if self.stack_repeats == "on" and (conflict := self.stacking_conflict()):
            raise ConfigError(
                f"--stack-repeats on cannot be combined with {conflict}. Drop one of them; "
                "--stack-repeats auto stacks only where the setup allows."
            )
        if not 1 <= self.accumulate <= 1024:
            raise ConfigError(
                f"accumulate must be between 1 and 1024; got {self.accumulate}. It is the "
                "number of batches per optimizer step (e.g. --accumulate 4)."
            )
        if not 0 <= self.val_batches <= 1000:
            raise ConfigError(
                f"val_batches must be between 0 and 1000; got {self.val_batches}. A few "
                "batches (e.g. --val-batches 4) give a smooth validation curve cheaply."
            )

    def stacking_conflict(self) -> str | None:
        """The option that keeps the repeats from being stacked, or None."""
        if self.precision == "fp16":
            return "--precision fp16 (one GradScaler would skip a step for every copy)"
        if self.channels_last:
            return "--channels-last (stacked inputs have five dimensions)"
        if self.compile:
            return "--compile"
        return stacking_problem(self.optimizer)


@dataclass(frozen=True)
class TrainConfig(SetupSettings):
    """Everything `lrfind train` needs. The schedule's kind is checked against
    lrfind.core.schedules.KINDS when training starts."""

    # enough to tell schedules apart on Fashion-MNIST (docs/train.md)
    epochs: int = option(5, "Epochs per schedule.", panel="Sweep")
    lr: float | None = option(
        None,
        "The constant schedule's rate and the baseline's.",
        panel="Recommendation",
        unset="the recommended lr",
    )
    scheduler: dict[str, Any] | None = option(
        None, "A schedule, as `lrfind apply` writes it.", panel="Recommendation", unset="none"
    )
    result: Path | None = option(
        None,
        "Take the bounds from this result.json.",
        panel="Recommendation",
        unset="sweep first",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.epochs <= 100_000:
            raise ConfigError(f"epochs must be a positive integer; got {self.epochs}. Try 5.")
        if self.lr is not None:
            check_positive("lr", self.lr)
        if self.scheduler is not None and not isinstance(self.scheduler.get("kind"), str):
            raise ConfigError(
                "scheduler in the training config has no `kind`; add e.g. "
                "`kind: onecycle`, or pass --schedule."
            )

    def sweep_config(self, out: Path) -> RunConfig:
        """The `lrfind run` that measures this training setup's bounds, for its length."""
        shared = {field.name for field in dataclasses.fields(SetupSettings)} - {"out", "overwrite"}
        return RunConfig(
            **{name: getattr(self, name) for name in shared}, out=out, epochs=float(self.epochs)
        )


# What an LR range depends on: a result measured on another setup does not transfer.
MATCHED_FIELDS = ("model", "dataset", "optimizer", "batch_size", "momentum", "loss")


def check_result_matches(
    result_config: Mapping[str, Any],
    setup: Mapping[str, Any],
    result_path: Path,
    target: str,
    beside: Sequence[str] = (),
) -> None:
    """Refuse bounds measured on another model, dataset, optimizer, batch size or momentum,
    or with other values of the optimizer's arguments.

    `setup` is read in any layout `read_setup` knows (`beside`: the dotted path of the mapping
    that holds the schedule). Only fields present on both sides are compared, and only the
    arguments both name; spec forms are compared by name (`torchvision:resnet18` matches
    `resnet18`, `Fashion-MNIST` matches `fashion-mnist`, `torch.optim.SGD` matches `sgd`).
    """

    def name(value: Any, field_name: str) -> str:
        text = str(value).rpartition(":")[2]
        plain = "".join(character for character in Path(text).stem.lower() if character.isalnum())
        if field_name == "loss":  # torch.nn's class names: CrossEntropyLoss is cross-entropy
            plain = plain.removesuffix("loss").replace("withlogits", "")
        return plain

    measured_setup, wanted_setup = read_setup(result_config), read_setup(setup, beside)
    pairs = [
        (field_name, measured_setup.get(field_name), wanted_setup.get(field_name))
        for field_name in MATCHED_FIELDS
    ]
    measured_args, wanted_args = (_arguments_of(measured_setup), _arguments_of(wanted_setup))
    shared_args = [key for key in measured_args if key in wanted_args]
    pairs += [
        (f"optimizer argument {key}", measured_args[key], wanted_args[key]) for key in shared_args
    ]
    mismatches = []
    for field_name, measured, wanted in pairs:
        if measured is None or wanted is None:
            continue
        if field_name in ("model", "dataset", "optimizer", "loss"):
            same = name(measured, field_name) == name(wanted, field_name)
        else:
            same = _same_value(measured, wanted)
        if not same:
            mismatches.append(f"{field_name} {measured} (sweep) vs {wanted} ({target})")
    if mismatches:
        raise ConfigError(
            f"{result_path} was measured on another setup: {'; '.join(mismatches)}. An LR "
            f"range depends on the model, data, optimizer and its arguments, momentum and "
            f"batch size; sweep this setup with `lrfind run`, or pass --force to use these "
            f"bounds anyway."
        )


def _arguments_of(setup: Mapping[str, Any]) -> Mapping[str, Any]:
    arguments = setup.get("optimizer_args")
    return arguments if isinstance(arguments, Mapping) else {}


def _same_value(measured: Any, wanted: Any) -> bool:
    """Numbers within rounding, sequences item by item, anything else equal."""
    if isinstance(measured, (list, tuple)) and isinstance(wanted, (list, tuple)):
        return len(measured) == len(wanted) and all(map(_same_value, measured, wanted))
    if isinstance(measured, bool) or isinstance(wanted, bool):
        return bool(measured == wanted)
    try:
        return math.isclose(float(measured), float(wanted))
    except (TypeError, ValueError):
        return bool(measured == wanted)


def describe_default(config_class: type, name: str) -> str:
    """The default of `config_class.name` as --help shows it: the value, on/off for a
    switch, or what leaving it unset means."""
    field = next(field for field in dataclasses.fields(config_class) if field.name == name)
    value = field.default
    if value is None:
        return str(field.metadata["unset"])
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Loading and merging


def field_names(config_class: type = RunConfig) -> list[str]:
    return [field.name for field in dataclasses.fields(config_class)]


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON mapping of options; values are checked by `resolve_config`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist. Check the path given to --config.")
    document = parse_document(read_text(path, "config file"), path, "config file")
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of option names to values "
            f"(e.g. `steps: 100`); it holds a {type(document).__name__}."
        )
    return document


def resolve_config(
    file_values: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    source: str = "config file",
) -> RunConfig:
    """Merge defaults < file values < overrides into a validated `RunConfig`."""
    return merge_options(RunConfig, file_values, overrides, source)


def merge_options(
    config_class: type[Config],
    file_values: dict[str, Any] | None,
    overrides: dict[str, Any] | None,
    source: str,
) -> Config:
    """Merge defaults < file values < overrides into a validated `config_class`."""
    hints = typing.get_type_hints(config_class)
    merged: dict[str, Any] = {}
    for origin, values in ((source, file_values or {}), ("flags", overrides or {})):
        spelled: dict[str, str] = {}
        for raw_key, value in _optimizer_expanded(values, origin, hints).items():
            key = str(raw_key).replace("-", "_")
            if key not in hints:
                raise ConfigError(_unknown_key_message(str(raw_key), origin, config_class))
            if key in spelled:
                raise ConfigError(
                    f"{key} is given twice in {origin}, as {spelled[key]!r} and {raw_key!r}. "
                    "Keep one of them."
                )
            spelled[key] = str(raw_key)
            coerced = _coerce(key, value, hints[key], origin)
            if key == "optimizer_args" and coerced is not None and merged.get(key):
                coerced = {**merged[key], **coerced}  # flags add to the file's, key by key
            merged[key] = coerced
    return config_class(**merged)


def _optimizer_expanded(
    values: Mapping[Any, Any], origin: str, hints: Mapping[str, Any]
) -> dict[Any, Any]:
    """`values` with an `optimizer` mapping (`{name: sgd, lr: 0.1, momentum: 0.9}`, Hydra's
    `_target_`, ...; lrfind.settings.layouts) spread into the options it sets."""
    optimizer = values.get("optimizer")
    if not isinstance(optimizer, Mapping):
        return dict(values)
    fields = optimizer_fields(optimizer, origin)
    if "lr" in fields and "lr" not in hints:
        raise ConfigError(
            f"optimizer.lr in {origin}: a sweep sets the rate at every step, from --start-lr "
            "to --end-lr, so a rate here would not be used. Remove it from the sweep's config."
        )
    rest = {key: value for key, value in values.items() if key != "optimizer"}
    for key in fields:
        if key != "optimizer" and key in {str(name).replace("-", "_") for name in rest}:
            raise ConfigError(
                f"{key} in {origin} is given twice: in the optimizer mapping and at the top "
                "level. Keep one of them."
            )
    return {**rest, **fields}


def _unknown_key_message(key: str, origin: str, config_class: type) -> str:
    names = field_names(config_class)
    close = difflib.get_close_matches(key.replace("-", "_"), names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown option {key!r} in {origin}.{hint} Valid options: {', '.join(names)}."


def _coerce(key: str, value: Any, hint: Any, origin: str) -> Any:
    """Turn a file value into the field's type, or say which key has which bad value."""
    optional = type(None) in typing.get_args(hint)
    base = next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} in {origin} is empty; give it a value or remove the line.")
    expected = {bool: "true or false", int: "an integer", float: "a number"}.get(base, "text")
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    bad = ConfigError(f"{key} in {origin} must be {expected}; got {shown}.")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if base is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if base is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads `1e-7` (no dot) as a string; accept it as the number it means.
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if typing.get_origin(base) is dict:
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return parse_optimizer_args(value)  # KEY=VALUE items, as the CLI's flag repeats
        raise ConfigError(f"{key} in {origin} must be a mapping of keys to values; got {shown}.")
    if base is Path:
        if not isinstance(value, (str, Path)):
            raise bad
        try:
            return Path(value).expanduser()
        except RuntimeError:  # ~name of a user that does not exist
            raise ConfigError(
                f"{key} in {origin} is {shown}, whose ~user is not a user of this machine. "
                "Write the path out, or use ~/ for your own home."
            ) from None
    if isinstance(value, str):
        return value
    raise bad
