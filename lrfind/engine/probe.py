"""The optimizer's own step size over a run at a constant rate (lrfind.core.horizon).

    multipliers = step_multipliers(optimizer, steps=300)   # None when it cannot be measured

A fresh optimizer of the same class and settings (its first parameter group's, with a small
rate and no weight decay) steps a parameter of its own (float64, of unit size, so that an
optimizer whose step follows the parameters' size sees a steady one) on synthetic gradients:
every step the same magnitudes, half the signs up and half down, shuffled anew around a
common drift, so that momentum and averages behave as they do on noisy mini-batch
gradients while plain SGD's step stays exactly the same. The size of each update over the
rate is the step size at that step. The caller's optimizer and model are never touched.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import torch

from lrfind.core.horizon import DEFAULT_TRAINING_STEPS, Horizon

PROBE_SIZE = 4096  # parameters stepped: enough that the update's size is steady
PROBE_RATE = 1e-4  # small against the parameters' unit size, which hardly move
GRADIENT_SCALE = 1e-2  # a typical per-parameter gradient; only ratios of sizes are used
DRIFT = 0.3  # the share of each gradient that points the same way every step
SEED = 0


def step_multipliers(optimizer: torch.optim.Optimizer, steps: int) -> np.ndarray | None:
    """The update size over the rate of each of `steps` steps of a fresh copy of `optimizer`,
    or None for an optimizer that cannot be rebuilt from its settings or stepped without a
    closure (LBFGS), or whose steps are not finite. Several optimizers swept as one (an
    OptimizerSet's `optimizers`) give the geometric mean of their members' sizes: one factor
    scales their common rate."""
    members = getattr(optimizer, "optimizers", None)
    if isinstance(members, dict) and members:
        measured = [step_multipliers(member, steps) for member in members.values()]
        kept = [size for size in measured if size is not None]
        if len(kept) < len(measured):
            return None
        return np.asarray(np.exp(np.mean(np.log(np.stack(kept)), axis=0)))
    if steps < 1 or not optimizer.param_groups:
        return None
    settings = _constructor_settings(optimizer)
    settings.update(lr=PROBE_RATE)
    if "weight_decay" in settings:
        settings["weight_decay"] = 0.0
    for device_only in ("fused", "capturable"):  # CUDA-only implementations; the probe is on CPU
        if settings.get(device_only):
            settings[device_only] = False
    generator = torch.Generator().manual_seed(SEED)
    start = torch.randn(PROBE_SIZE, generator=generator, dtype=torch.float64)
    parameter = torch.nn.Parameter(start)
    magnitude = torch.full((PROBE_SIZE,), GRADIENT_SCALE, dtype=torch.float64)
    # half the signs up, half down, shuffled every step: the same gradient size every step
    balanced = torch.ones(PROBE_SIZE, dtype=torch.float64)
    balanced[PROBE_SIZE // 2 :] = -1.0
    sizes = np.empty(steps)
    try:
        # A schedule-free copy refuses to step outside train mode, and is left so: its
        # parameter moves between two averaged sequences, not as a state that fills.
        probe = type(optimizer)([parameter], **settings)
        for step in range(steps):
            signs = balanced[torch.randperm(PROBE_SIZE, generator=generator)]
            parameter.grad = magnitude * (DRIFT + signs)
            before = parameter.detach().clone()
            probe.step()
            change = float((parameter.detach() - before).norm()) / math.sqrt(PROBE_SIZE)
            sizes[step] = change / PROBE_RATE
    except Exception:  # a user's optimizer class may take other arguments or need a closure
        return None
    if not np.all(np.isfinite(sizes)) or not np.all(sizes > 0):
        return None
    return sizes


def _constructor_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The first group's settings that the class's constructor takes (a group may hold more:
    AdamW's `decoupled_weight_decay`)."""
    settings = {key: value for key, value in optimizer.param_groups[0].items() if key != "params"}
    try:
        parameters = inspect.signature(type(optimizer).__init__).parameters
    except (TypeError, ValueError):
        return settings
    if any(item.kind is inspect.Parameter.VAR_KEYWORD for item in parameters.values()):
        return settings
    return {key: value for key, value in settings.items() if key in parameters}


def measured_horizon(
    optimizer: torch.optim.Optimizer, training_steps: int | None, source: str
) -> Horizon:
    """The Horizon of a run of `training_steps` (None: lrfind.core.horizon's default) with the
    step sizes of `optimizer` measured up to its peak."""
    if training_steps is None:
        training_steps, source = DEFAULT_TRAINING_STEPS, "default"
    steps = Horizon.steps_to_measure(training_steps)
    with torch.no_grad():
        multipliers = step_multipliers(optimizer, steps)
    return Horizon(training_steps, source, multipliers)
