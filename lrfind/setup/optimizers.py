"""The optimizer a setup names: resolved and checked before any data loads, then built over
any parameters (a model's, or stacked copies').

    check_optimizer(RunConfig(optimizer="rmsprop", optimizer_args={"alpha": 0.9}))
    optimizer = build_optimizer(config, model.parameters(), lr=1e-7)

A name is a torch.optim class in any case (`rmsprop`, `NAdam`); `package.module:Class` and
`path/to/file.py:Class` name any other callable that takes the parameters and `lr=` and returns
a torch optimizer. Its keyword arguments are `optimizer_args`, `momentum` (when set) and
`weight_decay` (wherever the optimizer takes one: lrfind's default is none, where AdamW's own
is 0.01), each checked against the optimizer's signature. What lrfind refuses and what it
stacks is plain data in lrfind.settings.optimizers.

`muon` is a pair (docs/optimizers.md): torch's Muon on the hidden matrices (`muon_parameters`)
and AdamW on every other parameter, one rate for both (Muon's `adjust_lr_fn` defaults to
`match_rms_adamw`, which scales its update to AdamW's size), built as one OptimizerSet.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lrfind.errors import ConfigError, SpecError
from lrfind.settings.optimizers import OWNED_ARGUMENTS, REFUSED, torch_name
from lrfind.settings.options import SetupSettings
from lrfind.setup import families
from lrfind.setup.factories import load_factory
from lrfind.setup.several import OptimizerSet

# The rate the optimizer is checked at before the sweep sets its own.
PROBE_LR = 1e-3
# Muon's rate scaled so that one rate serves Muon and AdamW alike (torch.optim.Muon's docs).
MUON_ADJUST_LR = "match_rms_adamw"
MUON_RULE = (
    "Muon trains every 2-D weight except the model's first parameter when it is 2-D (an input "
    "layer or embedding) and the last 2-D weight (the output head); AdamW trains the rest "
    "(biases, norms, convolution kernels, the input layer and the head)"
)


def torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """torch.optim's optimizers by lower-case class name, those a range test refuses left out."""
    return {
        name.lower(): value
        for name, value in vars(torch.optim).items()
        if isinstance(value, type)
        and issubclass(value, torch.optim.Optimizer)
        and value is not torch.optim.Optimizer
        and name.lower() not in REFUSED
    }


@dataclass(frozen=True)
class ResolvedOptimizer:
    spec: str  # as the setup names it
    target: Callable[..., Any]  # the class (or factory) that builds it
    qualified: str  # torch.optim.RMSprop, my_opt.Lion: for messages
    arguments: dict[str, Any]  # every keyword argument besides lr

    @property
    def muon_pair(self) -> bool:
        return self.target is torch.optim.Muon

    @property
    def from_torch(self) -> bool:
        return self.qualified.startswith("torch.optim.")

    def build(self, parameters: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        if not self.muon_pair:
            return self._build(parameters, lr)
        hidden, rest = muon_parameters(list(parameters))
        if not hidden:
            raise ConfigError(
                f"--optimizer {self.spec} found no hidden 2-D weight in the model for Muon "
                f"({MUON_RULE}). Use --optimizer adamw for this model."
            )
        muon = self._build(hidden, lr)
        if not rest:
            return muon
        weight_decay = self.arguments.get("weight_decay", 0.0)
        return OptimizerSet(
            {"muon": muon, "adamw": torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay)}
        )

    def _build(self, parameters: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.arguments.items())
        try:
            optimizer = self.target(parameters, lr=lr, **self.arguments)
        except Exception as error:
            if self.from_torch:
                raise ConfigError(
                    f"optimizer {self.spec!r} ({self.qualified}) refused its arguments "
                    f"({shown or 'none besides lr'}): {error}. Change the argument it names, "
                    "or choose another optimizer."
                ) from None
            raise SpecError(
                f"optimizer spec {self.spec!r} raised {type(error).__name__}: {error}. It is "
                f"called with the parameters, lr={lr:g} and {shown or 'no other arguments'}."
            ) from error
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise SpecError(
                f"optimizer spec {self.spec!r} returned a {type(optimizer).__name__}, not a "
                "torch.optim.Optimizer. Point it at an optimizer class, or at a function that "
                "builds one from (params, lr=..., **arguments)."
            )
        return optimizer


def resolve_optimizer(setup: SetupSettings) -> ResolvedOptimizer:
    """The optimizer the setup names and its keyword arguments, checked against its
    signature: an unknown name or argument fails here, with what is accepted."""
    target, qualified = _target(setup.optimizer)
    accepted, takes_any, defaults = _keyword_arguments(target)
    if "lr" not in accepted and not takes_any:
        raise SpecError(
            f"optimizer {setup.optimizer!r} ({qualified}) takes no `lr` argument, so a range "
            "test cannot set its rate. Give an optimizer whose constructor takes lr=."
        )
    arguments = {
        key: tuple(value) if isinstance(value, list) else value  # YAML and JSON lists
        for key, value in (setup.optimizer_args or {}).items()
    }
    if setup.momentum:
        if "momentum" not in accepted and not takes_any:
            raise ConfigError(
                f"momentum applies to optimizers with a momentum argument (sgd, rmsprop, ...); "
                f"{setup.optimizer} ({qualified}) has none (Adam-like optimizers keep theirs "
                f"in betas: --optimizer-arg betas=0.9,0.999). Drop --momentum."
            )
        arguments["momentum"] = setup.momentum
    if "weight_decay" in accepted:
        arguments["weight_decay"] = setup.weight_decay
    elif setup.weight_decay:
        if not takes_any:
            raise ConfigError(
                f"{setup.optimizer} ({qualified}) takes no weight_decay; got --weight-decay "
                f"{setup.weight_decay:g}. Drop --weight-decay."
            )
        arguments["weight_decay"] = setup.weight_decay
    unknown = [key for key in arguments if key not in accepted]
    if unknown and not takes_any:
        own = [name for name in accepted if name not in OWNED_ARGUMENTS]
        raise ConfigError(
            f"optimizer {setup.optimizer!r} ({qualified}) takes no argument "
            f"{unknown[0]!r}.{_closest(unknown[0], own)} Its arguments: "
            f"{', '.join(own) or 'none'} (lr is set by the sweep; momentum and weight_decay "
            "by --momentum and --weight-decay)."
        )
    for key, value in arguments.items():
        _check_kind(setup.optimizer, qualified, key, value, defaults.get(key))
    if target is torch.optim.Muon:
        arguments.setdefault("adjust_lr_fn", MUON_ADJUST_LR)
    return ResolvedOptimizer(setup.optimizer, target, qualified, arguments)


def _check_kind(spec: str, qualified: str, key: str, value: Any, default: Any) -> None:
    """A value of the kind the argument's default has: a tuple for a tuple, a number for a
    number, true/false for a switch (torch's own checks fail on them obscurely)."""
    if isinstance(default, tuple):  # of the default's length: torch ignores extra items
        wanted = f"a tuple of {len(default)}"
        fits = isinstance(value, tuple) and len(value) == len(default)
        example = ",".join(str(item) for item in default)
    elif isinstance(default, bool):
        wanted, fits, example = "true or false", isinstance(value, bool), str(default).lower()
    elif isinstance(default, (int, float)):
        wanted = "a number"
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        example = f"{default:g}"
    else:
        return
    if not fits:
        raise ConfigError(
            f"optimizer {spec!r} ({qualified}) argument {key} takes {wanted} (its default is "
            f"{default!r}); got {value!r}. Write e.g. --optimizer-arg {key}={example}."
        )


def check_optimizer(setup: SetupSettings) -> torch.optim.Optimizer:
    """Resolve the optimizer and build it over probe tensors, so that a bad name, argument
    or value fails before any data is loaded; the probe optimizer, for its family's checks."""
    resolved = resolve_optimizer(setup)
    # an input layer, a hidden matrix and a head, so that a Muon pair has one of each
    probes = [torch.zeros(2, 2, requires_grad=True) for _ in range(3 if resolved.muon_pair else 1)]
    return resolved.build(probes, PROBE_LR)


def build_optimizer(
    setup: SetupSettings, parameters: Iterable[torch.Tensor], lr: float
) -> torch.optim.Optimizer:
    """The optimizer the setup names, at `lr` (the sweep or the schedule then sets it)."""
    return resolve_optimizer(setup).build(parameters, lr)


def muon_parameters(
    parameters: list[torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters, in order, split by MUON_RULE: (Muon's, AdamW's)."""
    matrices = [index for index, parameter in enumerate(parameters) if parameter.dim() == 2]
    excluded = set(matrices[-1:]) | ({0} if matrices[:1] == [0] else set())
    hidden = {index for index in matrices if index not in excluded}
    return (
        [parameter for index, parameter in enumerate(parameters) if index in hidden],
        [parameter for index, parameter in enumerate(parameters) if index not in hidden],
    )


def _target(spec: str) -> tuple[Callable[..., Any], str]:
    name = torch_name(spec)
    if name is None:
        target = load_factory(spec, "optimizer", noun="class")
        return target, f"{target.__module__}.{getattr(target, '__qualname__', spec)}"
    known = torch_optimizers()
    if name not in known:
        raise SpecError(
            f"unknown optimizer {spec!r}.{_closest(name, list(known))} torch.optim has: "
            f"{', '.join(sorted(known))} (any case); for another package's, give "
            "package.module:Class or path/to/file.py:Class."
        )
    return known[name], f"torch.optim.{known[name].__name__}"


def _closest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _keyword_arguments(target: Callable[..., Any]) -> tuple[list[str], bool, dict[str, Any]]:
    """The keyword arguments `target` takes after the parameters, whether it takes any
    (**kwargs, or a signature that cannot be read), and the defaults it declares."""
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return [], True, {}
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)
    named = [
        parameter
        for parameter in parameters[1:]  # the first takes the parameters
        if parameter.kind
        in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    defaults = {
        parameter.name: parameter.default
        for parameter in named
        if parameter.default is not inspect.Parameter.empty
    }
    return [parameter.name for parameter in named], takes_any, defaults


def optimizer_block(
    setup: SetupSettings,
    optimizer: torch.optim.Optimizer | None = None,
    answer: Mapping[str, float] | None = None,
    training_steps: int | None = None,
) -> dict[str, Any]:
    """The `optimizer` block of result.json: the class that was built and every keyword
    argument it was given besides the sweep's lr. For a set (`muon`), its rule and each
    member with its rates at the answer's `base_lr`, `max_lr` and `lr`. For a family
    (lrfind.setup.families), its name and what its answer is."""
    resolved = resolve_optimizer(setup)
    block: dict[str, Any] = {
        "spec": setup.optimizer,
        "class": resolved.qualified,
        "arguments": resolved.arguments,
    }
    if resolved.muon_pair:
        block["rule"] = MUON_RULE
    if isinstance(optimizer, OptimizerSet):
        block["optimizers"] = [
            {
                **member,
                "rates": {
                    key: optimizer.rates(rate)[member["name"]] for key, rate in answer.items()
                }
                if answer
                else None,
            }
            for member in optimizer.describe()
        ]
    kind = None if optimizer is None else families.family(optimizer)
    if kind is not None:
        block["family"] = kind
    if kind == families.LR_FREE and optimizer is not None:
        block["lr_free"] = families.lr_free_note(optimizer)
    if kind == families.SCHEDULE_FREE and answer:
        block["schedule_free"] = families.schedule_free_answer(answer["max_lr"], training_steps)
    return block
