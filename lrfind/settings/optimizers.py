"""What lrfind knows about optimizers without importing torch: the ones it refuses and why,
the ones whose update is element-wise (so stacked repeats are exact), and how
`--optimizer-arg key=value` reads its value.

    lrfind run --optimizer rmsprop --optimizer-arg alpha=0.9 --optimizer-arg centered=true

Names are torch.optim class names in any case (`rmsprop`, `NAdam`); `module:Class` and
`path/to/file.py:Class` name any other. Resolving them needs torch: lrfind.setup.optimizers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lrfind.errors import ConfigError

TORCH_MODULE = "torch.optim"
# torch.optim optimizers a range test cannot use, and why (by lower-case class name).
REFUSED = {
    "lbfgs": (
        "it needs a closure that evaluates the loss several times per step, and a range test "
        "takes one batch per step; sweep with sgd or adam"
    ),
    "sparseadam": (
        "it only takes sparse gradients (nn.Embedding(sparse=True)); use adam for dense ones"
    ),
    "rprop": (
        "it adapts a step size per weight and reads lr only once, as their starting value, so "
        "the sweep's rising rate never reaches it"
    ),
}
# torch.optim optimizers whose update is element-wise: each element moves by a function of its
# own gradient and state, and of scalars that depend only on the step count and the group's
# settings (bias corrections, NAdam's mu product, RAdam's rho, ASGD's eta). One of them over K
# stacked copies is exactly K of them (lrfind.engine.stacked); tests/test_optimizers.py runs
# each both ways. Anything with a norm over a whole tensor is not (see NOT_ELEMENTWISE).
ELEMENTWISE = frozenset(
    {"sgd", "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "asgd"}
)
# torch.optim optimizers whose update mixes the elements of a tensor, and how.
NOT_ELEMENTWISE = {
    "adafactor": "factors its second moment into row and column means and scales its step "
    "by each tensor's norm",
    "muon": "orthogonalizes each matrix's whole update (Newton-Schulz iterations)",
}
# Keys of --optimizer-arg that other options own.
OWNED_ARGUMENTS = {
    "lr": "the sweep sets the rate at every step (--start-lr, --end-lr)",
    "params": "lrfind passes the model's parameters",
    "momentum": "it has its own option: --momentum (or `momentum:` in a config file)",
    "weight_decay": "it has its own option: --weight-decay (or `weight_decay:`)",
}


def torch_name(spec: str) -> str | None:
    """The lower-case torch.optim class name `spec` stands for (`RMSprop`,
    `torch.optim:RMSprop`), or None for another package's or file's optimizer."""
    if ":" not in spec:
        return spec.strip().lower()
    module, _, name = spec.rpartition(":")
    if module == TORCH_MODULE or module.startswith(TORCH_MODULE + "."):
        return name.strip().lower()
    return None


def check_optimizer_name(spec: str) -> None:
    """What can be checked without torch: a name is given, and is not one lrfind refuses."""
    if not spec.strip():
        raise ConfigError(
            "optimizer is empty. Pass --optimizer sgd (or any torch.optim name, e.g. adam, "
            "rmsprop), or module:Class for another package's optimizer."
        )
    name = torch_name(spec)
    if name in REFUSED:
        raise ConfigError(f"optimizer {spec!r} cannot run a range test: {REFUSED[name]}.")


def check_optimizer_args(arguments: Mapping[str, Any]) -> None:
    """Keys are argument names, and none belongs to another option."""
    for key in arguments:
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(
                f"optimizer_args key {key!r} is not an argument name; write "
                "--optimizer-arg name=value (e.g. --optimizer-arg alpha=0.9)."
            )
        if key in OWNED_ARGUMENTS:
            raise ConfigError(
                f"optimizer_args may not set {key!r}: {OWNED_ARGUMENTS[key]}. Remove "
                f"--optimizer-arg {key}=..."
            )


def stacking_problem(spec: str) -> str | None:
    """Why the repeats cannot be stacked with this optimizer (a phrase), or None."""
    name = torch_name(spec)
    if name in ELEMENTWISE:
        return None
    if name in NOT_ELEMENTWISE:
        return (
            f"--optimizer {spec}, whose update is not element-wise (it "
            f"{NOT_ELEMENTWISE[name]}): one optimizer over stacked copies would mix them"
        )
    return (
        f"--optimizer {spec}: lrfind stacks only the torch.optim optimizers whose update it "
        f"knows to be element-wise ({', '.join(sorted(ELEMENTWISE))})"
    )


# ---------------------------------------------------------------------------------------------
# --optimizer-arg key=value

_INTEGER = re.compile(r"[+-]?\d+")
_WORDS: dict[str, Any] = {"true": True, "false": False, "none": None, "null": None}


def parse_optimizer_args(items: list[str]) -> dict[str, Any]:
    """`--optimizer-arg` values, in order (a key given twice keeps its last value)."""
    arguments: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ConfigError(
                f"--optimizer-arg {item!r} is not name=value; write e.g. --optimizer-arg "
                "alpha=0.9, --optimizer-arg betas=0.9,0.99 or --optimizer-arg nesterov=true."
            )
        arguments[key] = parse_value(text.strip())
    return arguments


def parse_value(text: str) -> Any:
    """One --optimizer-arg value: quoted text stays text; commas make a tuple of values
    (`0.9,0.99`); then true/false, none/null, an integer, a number, else text."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if "," in text:
        return tuple(_scalar(part.strip()) for part in text.split(",") if part.strip())
    return _scalar(text)


def _scalar(text: str) -> Any:
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def describe(optimizer: str, momentum: float, weight_decay: float, args: Mapping[str, Any]) -> str:
    """The optimizer in words, for plot titles: `sgd (momentum 0.9, nesterov true)`."""
    shown = {
        **({"momentum": momentum} if momentum else {}),
        **({"weight decay": weight_decay} if weight_decay else {}),
        **args,
    }
    details = ", ".join(f"{key} {_shown(value)}" for key, value in shown.items())
    return f"{optimizer} ({details})" if details else optimizer


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(item) for item in value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# Families whose rate means something other than a step size to sweep, by lower-case class
# name (any module): what lr means to them and what to tune instead (docs/optimizers.md).

LR_FREE = {
    "prodigy": (
        "Prodigy estimates its own step size as it trains; its lr multiplies that estimate and "
        "its authors keep it at 1.0. Tune d_coef instead (0.5 or 2.0 scale the estimate; "
        "--optimizer-arg d_coef=0.5), and growth_rate=1.02 for a warm-up"
    ),
    **dict.fromkeys(
        ("dadaptadam", "dadaptsgd", "dadaptadagrad", "dadaptlion", "dadaptadan"),
        "D-Adaptation estimates its own step size (d) as it trains; its lr multiplies that "
        "estimate and its authors keep it at 1.0. Leave lr at 1.0 and, if training is "
        "unstable early, limit growth_rate (e.g. 1.02) or set a schedule on top of it",
    ),
    **dict.fromkeys(
        ("dog", "ldog"),
        "DoG sets its step size from the distance travelled from the start and the gradients "
        "seen; its lr multiplies that and is kept at 1.0. Tune reps_rel (the size of the "
        "first step relative to the weights) instead",
    ),
    "mechanic": (
        "Mechanic learns a scale for its base optimizer's updates as it trains, so the base "
        "optimizer's rate is absorbed into that scale. Keep the base optimizer's usual rate "
        "and tune its other settings instead"
    ),
}
SCHEDULE_FREE_MODULE = "schedulefree"


def lr_free_statement(class_name: str) -> str | None:
    """What the rate of an LR-free optimizer class means and what to tune instead, or None."""
    return LR_FREE.get(class_name.lower())


def is_schedule_free(module: str, class_name: str) -> bool:
    """The schedule-free family (Defazio et al.'s package, or a class named after it): it
    needs .train() before its steps and .eval() before any evaluation."""
    return module.split(".")[0] == SCHEDULE_FREE_MODULE or "schedulefree" in class_name.lower()
