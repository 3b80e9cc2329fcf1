"""The optimizer a setup names, built over any parameters (a model's, or stacked copies').

optimizer = build_optimizer(RunConfig(optimizer="adam"), model.parameters(), lr=1e-7)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lrfind.settings.options import SetupSettings


def build_optimizer(
    setup: SetupSettings, parameters: Iterable[torch.Tensor], lr: float
) -> torch.optim.Optimizer:
    """The optimizer the setup names, at `lr` (the sweep or the schedule then sets it)."""
    if setup.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=lr,
            momentum=setup.momentum,
            weight_decay=setup.weight_decay,
        )
    if setup.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=setup.weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=setup.weight_decay)
