"""Every option of lrfind, its default and why, and how options are loaded and checked.

    lrfind run --config configs/sweep-lenet-sgd.yaml --steps 200

Precedence is defaults < config file < command-line flags. Config files are YAML, TOML or
JSON mappings whose keys are the option names (`start_lr` or `start-lr`). Every value is
checked before any work starts, and a bad one raises `ConfigError` naming the value and the fix.
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

from lrfind.errors import ConfigError
from lrfind.settings.formats import parse_document, read_text
from lrfind.settings.layouts import optimizer_fields, read_setup
from lrfind.settings.optimizers import (
    check_optimizer_args,
    check_optimizer_name,
    stacking_problem,
)

Config = TypeVar("Config")

# The losses by name (built in lrfind.setup.losses); any other is a file.py:fn or module:fn spec.
LOSSES = ("cross-entropy", "nll", "bce", "mse", "l1", "huber", "smooth-l1")
# Losses whose targets are class indices: the model's outputs are one logit per class.
CLASS_INDEX_LOSSES = ("cross-entropy", "nll")
MODES = ("exp", "linear")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
# Train the repeats' model copies stacked, as one (lrfind.engine.stacked). auto: on CUDA, which it
# is built for; on this project's CPU it measured slower than one copy after another.
STACK_REPEATS = ("auto", "on", "off")
# Where range_test keeps the model's state while it sweeps (lrfind.engine.snapshot). auto: host
# memory for a model on an accelerator, a file for a CPU model over 16 MiB, by the free memory.
SNAPSHOT_PLACES = ("auto", "device", "cpu", "disk")
# The most focused repeats of the default plan; they stop as soon as their median is pinned
# (lrfind.core.plan), usually after four to six. Eleven let a repeat in two find no answer
# and still give one (LeNet/Adam needed ten on one seed in scripts/bench_repeats.py).
REPEATS = 11
MAX_STEPS = 1_000_000  # steps of one sweep at most
# Fewer usable points than this and a curve is too coarse to analyse: the shortest sweep,
# the shortest curve `lrfind analyze` reads, and the least a sweep must keep to be focused on.
MIN_USABLE_POINTS = 10
# The suggestion methods a user can choose (implemented in lrfind.core.analysis.METHODS).
METHOD_NAMES = ("bottom", "steepest", "valley", "minimum")
MAX_SEED = 2**64 - 1 - 100  # torch takes 64-bit seeds; repeats use seed + 1 .. seed + 100
DEFAULT_METHOD = "bottom"  # chosen by scripts/bench_quality.py; see lrfind.core.analysis


@dataclass(frozen=True)
class SweepSettings:
    """The knobs of one LR range test, shared by the CLI and `lrfind.range_test`."""

    start_lr: float = 1e-7  # below any useful rate for common models, so the flat start is seen
    end_lr: float = 10.0  # above where SGD and Adam diverge on common models
    steps: int = 100  # enough points for a readable curve; seconds on a small CPU model
    mode: str = "exp"  # an exponential ramp spends equal steps on every decade
    smoothing: float = 0.9  # EMA beta: about 10 steps of memory, a tenth of the default sweep
    divergence_factor: float = 4.0  # a rise of 4 batch-noise deviations is no longer noise

    def __post_init__(self) -> None:
        _check_positive("start_lr", self.start_lr)
        _check_positive("end_lr", self.end_lr)
        if self.start_lr >= self.end_lr:
            raise ConfigError(
                f"start_lr must be below end_lr; got {self.start_lr:g} >= {self.end_lr:g}. "
                "Swap them or widen the range (e.g. --start-lr 1e-7 --end-lr 10)."
            )
        if not math.isfinite(self.end_lr / self.start_lr):
            raise ConfigError(
                f"the range from start_lr {self.start_lr:g} to end_lr {self.end_lr:g} spans "
                "more decades than a float can hold, so the sweep's rates would overflow. "
                "Narrow it to the rates a model can train at, e.g. --start-lr 1e-7 --end-lr 10."
            )
        if not MIN_USABLE_POINTS <= self.steps <= MAX_STEPS:
            raise ConfigError(
                f"steps must be between {MIN_USABLE_POINTS} and {MAX_STEPS}; got {self.steps}. A "
                f"curve needs at least {MIN_USABLE_POINTS} points to analyse; 100 is a good "
                "default (--steps 100)."
            )
        check_choice("mode", self.mode, MODES)
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(
                f"smoothing is an EMA factor in [0, 1); got {self.smoothing:g}. "
                "Use 0 for no smoothing or e.g. --smoothing 0.9."
            )
        if not self.divergence_factor > 1.0 or not math.isfinite(self.divergence_factor):
            raise ConfigError(
                f"divergence_factor must be a finite number above 1; got "
                f"{self.divergence_factor:g}. It is the smallest rise of the smoothed loss, "
                "in batch-noise deviations, that counts as divergence; 4 is typical "
                "(--divergence-factor 4)."
            )


@dataclass(frozen=True)
class SearchSettings:
    """How many sweeps one recommendation takes (lrfind.core.plan)."""

    repeats: int = REPEATS  # see REPEATS
    refine: bool = True  # repeats sweep just below the divergence point; False: full range
    auto_range: bool = False  # widen or narrow the range and retry when it was wrong

    def __post_init__(self) -> None:
        if not 0 <= self.repeats <= 100:
            raise ConfigError(
                f"repeats must be between 0 and 100; got {self.repeats}. Use --repeats 0 for a "
                "single sweep; repeats stop once their median is pinned (default: at most "
                f"{REPEATS})."
            )


@dataclass(frozen=True)
class SetupSettings:
    """What a sweep and a training run share: the model, the data and the optimizer.

    Declared once; `RunConfig` and `TrainConfig` add their own fields after these."""

    model: str = "lenet"  # the network of the Fashion-MNIST chapter this tool grew from
    dataset: str = "fashion-mnist"  # real, small, and packaged offline by Debian
    data_dir: Path | None = None  # searched first; then $LRFIND_DATA_DIR, cache, system dirs
    download: bool = True  # fetch through torchvision only when no local copy is found
    optimizer: str = "sgd"  # plain SGD, as in the chapter; its LR range is the most sensitive
    momentum: float = 0.0  # plain SGD by default; 0.9 is the usual choice with momentum
    weight_decay: float = 0.0  # no regularisation: the sweep is about optimisation speed
    optimizer_args: dict[str, Any] | None = None  # other keyword arguments (betas, alpha, ...)
    batch_size: int = 256  # what the chapter used; large enough for a low-noise curve
    loss: str = "cross-entropy"  # the loss of classification, the task of the built-in data
    label_smoothing: float = 0.0  # cross-entropy only; 0.1 is the usual choice when used
    num_classes: int | None = None  # outputs of a built-in model; default: read from the data
    seed: int = 0  # model init and data order; the same seed gives the same run
    device: str = "auto"  # cuda, then mps, then cpu
    out: Path | None = None  # run folder; default runs/<model>-<dataset>-<timestamp>
    overwrite: bool = False  # never replace an existing run folder unless asked
    quiet: bool = False  # no live progress, only the summary

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
class RunConfig(SetupSettings):
    """Everything `lrfind run` needs. Construction validates every field."""

    start_lr: float = SweepSettings.start_lr
    end_lr: float = SweepSettings.end_lr
    steps: int = SweepSettings.steps
    mode: str = SweepSettings.mode
    smoothing: float = SweepSettings.smoothing
    divergence_factor: float = SweepSettings.divergence_factor
    method: str = DEFAULT_METHOD  # how a curve becomes a suggestion
    repeats: int = SearchSettings.repeats
    refine: bool = SearchSettings.refine
    auto_range: bool = SearchSettings.auto_range
    val_batches: int = 0  # held-out batches whose loss is recorded at every step
    weights: Path | None = None  # start from this state dict (fine-tuning); default: fresh init
    precision: str = "fp32"  # bf16/fp16 autocast pays on GPUs; fp32 is exact everywhere
    accumulate: int = 1  # batches per optimizer step, for a larger batch than memory allows
    channels_last: bool = False  # NHWC memory for conv nets; a small, noisy win here (docs)
    compile: bool = False  # torch.compile: a LeNet sweep took 22.9 s with it, 1.2 s without
    stack_repeats: str = "auto"  # see STACK_REPEATS
    snapshot: str = "auto"  # see SNAPSHOT_PLACES: a copy beside the model doubles its state

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sweep_settings()  # validates the sweep fields
        self.search_settings()  # validates repeats
        check_choice("method", self.method, METHOD_NAMES)
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

    def sweep_settings(self) -> SweepSettings:
        return SweepSettings(
            **{field.name: getattr(self, field.name) for field in dataclasses.fields(SweepSettings)}
        )

    def search_settings(self) -> SearchSettings:
        return SearchSettings(
            **{
                field.name: getattr(self, field.name)
                for field in dataclasses.fields(SearchSettings)
            }
        )


@dataclass(frozen=True)
class TrainConfig(SetupSettings):
    """Everything `lrfind train` needs. The schedule's kind is checked against
    lrfind.core.schedules.KINDS when training starts."""

    epochs: int = 5  # enough to tell schedules apart on Fashion-MNIST (docs/train.md)
    lr: float | None = None  # the constant schedule and baseline; default: the recommended lr
    scheduler: dict[str, Any] | None = None  # a schedule, as `lrfind apply` writes it
    result: Path | None = None  # result.json to take the bounds from; default: sweep first

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.epochs <= 100_000:
            raise ConfigError(f"epochs must be a positive integer; got {self.epochs}. Try 5.")
        if self.lr is not None:
            _check_positive("lr", self.lr)
        if self.scheduler is not None and not isinstance(self.scheduler.get("kind"), str):
            raise ConfigError(
                "scheduler in the training config has no `kind`; add e.g. "
                "`kind: onecycle`, or pass --schedule."
            )

    def sweep_config(self, out: Path) -> RunConfig:
        """The `lrfind run` that measures this training setup's bounds."""
        shared = {field.name for field in dataclasses.fields(SetupSettings)} - {"out", "overwrite"}
        return RunConfig(**{name: getattr(self, name) for name in shared}, out=out)


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


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        flag = "--" + name.replace("_", "-")
        raise ConfigError(
            f"{name} must be a positive, finite number; got {value:g}. Pass e.g. {flag} 1e-3."
        )


def check_choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}.")


# What an option left unset means, where its default is no value: shown in --help.
UNSET_MEANS = {
    "data_dir": "none: $LRFIND_DATA_DIR, the cache, system folders",
    "out": "runs/<model>-<dataset>-<time>",
    "weights": "fresh initial weights",
    "lr": "the recommended lr",
    "scheduler": "none",
    "result": "sweep first",
    "num_classes": "read from the dataset",
    "optimizer_args": "the optimizer's own defaults",
}


def describe_default(config_class: type, name: str) -> str:
    """The default of `config_class.name` as --help shows it: the value, on/off for a
    switch, or what leaving it unset means."""
    value = next(field.default for field in dataclasses.fields(config_class) if field.name == name)
    if value is None:
        return UNSET_MEANS[name]
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
        for raw_key, value in _optimizer_expanded(values, origin, hints).items():
            key = str(raw_key).replace("-", "_")
            if key not in hints:
                raise ConfigError(_unknown_key_message(str(raw_key), origin, config_class))
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
