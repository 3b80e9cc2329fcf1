"""Several optimizers trained as one: a Muon + AdamW pair, a GAN's generator and discriminator.

    both = OptimizerSet({"muon": muon, "adamw": adamw})
    both.param_groups        # every optimizer's groups, the same dicts: setting one sets it
    both.rates(3e-3)         # {"muon": [3e-3], "adamw": [3e-3]} at the first group's rate 3e-3

The set is a torch optimizer whose parameter groups are its members' own, in order, so that the
sweep loop, the schedulers and the GradScaler move every member's rate together and keep the
ratios of their starting rates (lrfind.core.ramp.rate_ratios). Its state is each member's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from lrfind.core import arguments
from lrfind.core.ramp import rate_ratios
from lrfind.errors import ConfigError


class OptimizerSet(torch.optim.Optimizer):
    """Named optimizers stepped together; each keeps its own state and its own class."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self.optimizers = dict(optimizers)
        held = [
            parameter
            for optimizer in self.optimizers.values()
            for group in optimizer.param_groups
            for parameter in group["params"]
        ]
        if len({id(parameter) for parameter in held}) < len(held):
            raise ConfigError(
                f"optimizers {', '.join(self.optimizers)} share a parameter, so the sweep would "
                "step it twice. Give each optimizer its own parameters."
            )
        super().__init__(held, {})
        # the members' own dicts: a rate set here is the rate each member reads
        self.param_groups = [
            group for optimizer in self.optimizers.values() for group in optimizer.param_groups
        ]

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers.values():
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state_dict[name])

    def rates(self, lr: float) -> dict[str, list[float]]:
        """Each member's group rates when the first group with a positive rate is at `lr`: the
        rates a recommendation for the set gives each optimizer."""
        ratios = iter(rate_ratios([float(group["lr"]) for group in self.param_groups]))
        return {
            name: [lr * next(ratios) for _ in optimizer.param_groups]
            for name, optimizer in self.optimizers.items()
        }

    def describe(self) -> list[dict[str, Any]]:
        """Each member for result.json: its name, class, parameter count and rate ratio."""
        ratios = iter(rate_ratios([float(group["lr"]) for group in self.param_groups]))
        return [
            {
                "name": name,
                "class": _qualified(type(optimizer)),
                "parameters": sum(
                    parameter.numel()
                    for group in optimizer.param_groups
                    for parameter in group["params"]
                ),
                "lr_ratio": [next(ratios) for _ in optimizer.param_groups],
            }
            for name, optimizer in self.optimizers.items()
        ]


def one_optimizer(optimizer: Any) -> Any:
    """The caller's optimizer as one: a list or a mapping of optimizers becomes an
    OptimizerSet (members named by their keys, or by position and class); anything else,
    a list or mapping of no optimizer included, is returned as given for the caller's checks."""
    if isinstance(optimizer, Mapping):
        named = dict(optimizer)
    elif isinstance(optimizer, Sequence) and not isinstance(optimizer, (str, bytes)):
        named = {f"{index}:{type(item).__name__}": item for index, item in enumerate(optimizer)}
    else:
        return optimizer
    if named and not any(isinstance(item, torch.optim.Optimizer) for item in named.values()):
        return optimizer  # not meant as optimizers: the caller's check names it
    if not named:
        raise ConfigError(
            "optimizer is an empty list; pass one optimizer, or a list or mapping of "
            "optimizers over the model's parameters."
        )
    for name, item in named.items():
        if not isinstance(name, str) or not isinstance(item, torch.optim.Optimizer):
            raise ConfigError(
                f"every optimizer of a list or mapping must be a torch.optim.Optimizer named "
                f"by text; got {arguments.shown(name)}: {arguments.shown(item)}. Pass e.g. "
                "{'generator': adam_g, 'discriminator': adam_d}."
            )
    return named[next(iter(named))] if len(named) == 1 else OptimizerSet(named)


def _qualified(kind: type) -> str:
    """torch.optim.AdamW, not torch.optim.adamw.AdamW: the name a user writes."""
    module = "torch.optim" if kind.__module__.startswith("torch.optim.") else kind.__module__
    return f"{module}.{kind.__qualname__}"
