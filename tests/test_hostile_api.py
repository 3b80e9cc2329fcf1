"""Issue 26, class 3: the API keeps the CLI's promises.

Every public function (lrfind.range_test, find_lr, analyze, build_scheduler) refuses what
the CLI refuses, with an LrfindError (a ConfigError is also a ValueError) that names the value
and the fix, before any work: the model's weights untouched and the loss never called. Values
of the right kind in another form (numpy numbers, a tensor of rates) are accepted and sweep
exactly as Python's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lrfind
from lrfind.core.settings import SweepSettings
from lrfind.errors import ConfigError, LrfindError, SweepError
from tests.conftest import assert_same_state, snapshot, tiny_model, tiny_task

# A curve with a clear descent and a clean divergence: analyze recommends from it.
_LOG = np.linspace(-6, 1, 100)
RATES = (10**_LOG).tolist()
LOSSES = (
    2.3
    - 1.8 / (1 + np.exp(-(_LOG + 3) * 3))
    + np.where(_LOG > -0.5, (_LOG + 0.5) ** 2 * 8, 0)
    + np.random.default_rng(0).normal(0, 0.01, 100)
).tolist()


class CountingLoss:
    calls = 0

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return nn.functional.cross_entropy(outputs, targets)


def refused(call: Callable[[], Any], kind: type[Exception], *phrases: str) -> str:
    """The call raises `kind`, an LrfindError holding every phrase; its message."""
    with pytest.raises(kind) as caught:
        call()
    assert isinstance(caught.value, LrfindError), repr(caught.value)
    message = str(caught.value)
    for phrase in phrases:
        assert phrase in message, message
    return message


# range_test's keyword options: (options, phrases of the message: the value and the fix)
SWEEP_OPTIONS = [
    ({"steps": 1e2}, ["steps must be an integer", "100.0", "steps=100"]),
    ({"steps": True}, ["steps must be an integer", "True"]),
    ({"steps": "20"}, ["steps must be an integer", "'20'"]),
    ({"start_lr": "1e-3"}, ["start_lr must be a number", "'1e-3' (a str)", "start_lr=0.001"]),
    ({"start_lr": torch.tensor(1e-3)}, ["start_lr must be a number", "Tensor"]),
    ({"end_lr": None}, ["end_lr must be a number", "None"]),
    ({"start_lr": math.nan}, ["start_lr must be a positive, finite number", "nan"]),
    ({"end_lr": -1.0}, ["end_lr must be a positive, finite number"]),
    ({"end_lr": 1e39}, ["end_lr 1e+39 is beyond the largest float32", "--end-lr 10"]),
    ({"mode": None}, ["mode must be text", "None"]),
    ({"mode": "log"}, ["unknown mode 'log'", "exp, linear"]),
    ({"smoothing": 1.5}, ["smoothing is an EMA factor in [0, 1)", "1.5"]),
    ({"divergence_factor": math.inf}, ["divergence_factor must be a finite number above 1"]),
    ({"method": ["bottom"]}, ["method must be text", "['bottom']"]),
    ({"method": "magic"}, ["unknown method 'magic'"]),
    ({"precision": None}, ["precision must be text", "precision='fp32'"]),
    ({"precision": "fp8"}, ["unknown precision 'fp8'"]),
    ({"accumulate": 2.0}, ["accumulate must be a positive integer", "2.0"]),
    ({"seed": "0"}, ["seed must be an integer", "'0' (a str)"]),
    ({"seed": 1.5}, ["seed must be an integer", "1.5"]),
    ({"seed": -1}, ["seed must be between 0 and", "got -1"]),
    ({"seed": 2**64}, ["seed must be between 0 and"]),
    ({"channels_last": "yes"}, ["channels_last must be True or False", "'yes'"]),
    ({"snapshot": "ram"}, ["unknown snapshot 'ram'", "device, cpu, disk"]),
    ({"snapshot": None}, ["snapshot must be text", "None"]),
    ({"callback": 42}, ["callback must be a function", "42 (a int)"]),
    ({"callback": lrfind.StepRecord}, ["callback must be a function", "not a class"]),
    ({"stop_requested": "no"}, ["stop_requested must be a function", "'no'"]),
    ({"unpack": 1}, ["unpack must be a function", "(inputs, targets)"]),
    ({"val_batches": torch.zeros(2, 8)}, ["val_batches must be a list of batches", "Tensor"]),
    ({"val_batches": 3}, ["val_batches must be a list of batches"]),
    ({"ranks": "0"}, ["ranks must be an lrfind.engine.distributed.Ranks"]),
    ({"device": "gpu"}, ["device 'gpu' is not a device torch knows", "device='cuda'"]),
    ({"device": 3.0}, ["device must be a torch.device or its name", "3.0"]),
    ({"stesp": 20}, ["range_test takes no option 'stesp'", "Did you mean 'steps'?"]),
    ({"lr": 0.1}, ["range_test takes no option 'lr'", "start_lr"]),
]


@pytest.mark.parametrize(("options", "phrases"), SWEEP_OPTIONS, ids=lambda x: repr(x)[:40])
def test_range_test_refuses_bad_options_before_any_work(
    options: dict[str, Any], phrases: list[str]
) -> None:
    model = tiny_model()
    before = snapshot(model)
    loss = CountingLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    call = lambda: lrfind.range_test(model, optimizer, loss, tiny_task(), progress=False, **options)  # noqa: E731
    refused(call, ConfigError, *phrases)
    assert loss.calls == 0
    assert_same_state(before, snapshot(model))


def frozen() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.requires_grad_(False)
    return model, optimizer


class MyRprop(torch.optim.Rprop):
    """A user's subclass of an optimizer lrfind refuses: refused for the same reason."""


class NoRate(torch.optim.Optimizer):
    """An optimizer whose defaults hold no rate, so its step could read none."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, {})

    def step(self, closure: Any = None) -> None:
        return None


def with_optimizer(kind: Callable[..., Any], **arguments: Any) -> Callable[[], Any]:
    def build() -> tuple[nn.Module, Any]:
        model = tiny_model()
        return model, kind(model.parameters(), **arguments)

    return build


OBJECTS: list[tuple[str, Callable[[], tuple[Any, Any]], list[str]]] = [
    ("rprop", with_optimizer(torch.optim.Rprop), ["optimizer Rprop cannot", "reads lr only once"]),
    ("lbfgs", with_optimizer(torch.optim.LBFGS), ["optimizer LBFGS cannot", "closure"]),
    ("subclass", with_optimizer(MyRprop), ["optimizer MyRprop cannot", "reads lr only once"]),
    ("sparse", with_optimizer(torch.optim.SparseAdam), ["optimizer SparseAdam", "use adam"]),
    (
        "empty group",
        lambda: (tiny_model(), torch.optim.SGD([{"params": []}], lr=0.1)),
        ["holds no parameters", "1 parameter group(s), all empty", "SGD(model.parameters()"],
    ),
    ("all frozen", frozen, ["requires_grad=False", "Unfreeze"]),
    ("every group at lr 0", with_optimizer(torch.optim.SGD, lr=0.0), ["lr 0", "stays frozen"]),
    (
        "no lr at all",
        lambda: (lambda m: (m, NoRate(m.parameters())))(tiny_model()),
        ["NoRate has a parameter group without a numeric `lr`", "an `lr` argument"],
    ),
    (
        "not an optimizer",
        lambda: (tiny_model(), {"lr": 0.1}),
        ["optimizer must be a torch.optim.Optimizer", "dict", "torch.optim.SGD("],
    ),
    (
        "a function for a model",
        lambda: (lambda x: x, torch.optim.SGD(tiny_model().parameters(), lr=0.1)),
        ["model must be a torch.nn.Module", "function"],
    ),
    (
        "meta device",
        lambda: (lambda m: (m, torch.optim.SGD(m.parameters(), lr=0.1)))(
            nn.Linear(8, 3, device="meta")
        ),
        ["'weight' is on the meta device", "model.to_empty(device='cpu')"],
    ),
]


@pytest.mark.parametrize(("name", "build", "phrases"), OBJECTS, ids=[o[0] for o in OBJECTS])
def test_range_test_refuses_objects_it_cannot_sweep(
    name: str, build: Callable[[], tuple[Any, Any]], phrases: list[str]
) -> None:
    model, optimizer = build()
    before = snapshot(model) if isinstance(model, nn.Module) else None
    loss = CountingLoss()
    call = lambda: lrfind.range_test(model, optimizer, loss, tiny_task(), progress=False)  # noqa: E731
    refused(call, ConfigError, *phrases)
    assert loss.calls == 0
    if before is not None and name != "meta device":
        assert_same_state(before, snapshot(model))


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_gradients_off_is_named_not_blamed_on_the_model(context: Callable[[], Any]) -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with context():
        message = refused(
            lambda: lrfind.range_test(
                model, optimizer, CountingLoss(), tiny_task(), progress=False
            ),
            ConfigError,
            "gradients are off",
            "torch.no_grad()",
            "Call it outside that block",
        )
    assert "model" not in message.split("(")[0]


def test_a_loader_that_is_not_iterable_is_refused() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    refused(
        lambda: lrfind.range_test(model, optimizer, CountingLoss(), 42, progress=False),
        ConfigError,
        "train_loader must be an iterable of batches",
        "42 (a int)",
        "DataLoader",
    )


@pytest.mark.parametrize("batches", [4, 0])
def test_a_generator_for_a_loader_is_named_as_one(batches: int) -> None:
    """Not the dataset's size or drop_last: a generator can be read only once."""
    model = tiny_model()
    before = snapshot(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = (batch for batch in tiny_task()[:batches])
    message = refused(
        lambda: lrfind.range_test(
            model, optimizer, CountingLoss(), generator, steps=10, progress=False
        ),
        SweepError,
        "is a generator, an iterator that can be read only once",
        "list(generator)",
    )
    assert "drop_last" not in message
    assert ("ran out after one pass" in message) == bool(batches)
    assert_same_state(before, snapshot(model))


FIND_LR_OPTIONS = [
    ({"repeats": 2.5}, ["repeats must be an integer", "2.5"]),
    ({"repeats": -1}, ["repeats must be between 0 and 100"]),
    ({"refine": "no"}, ["refine must be True or False", "'no'"]),
    ({"auto_range": 1}, ["auto_range must be True or False", "1 (a int)"]),
    ({"seed": None}, ["seed must be an integer", "None"]),
    ({"on_sweep": "print"}, ["on_sweep must be a function", "'print'"]),
    ({"steps": 1e2}, ["steps must be an integer", "steps=100"]),
    ({"repeat": 2}, ["find_lr takes no option 'repeat'", "Did you mean 'repeats'?"]),
]


@pytest.mark.parametrize(("options", "phrases"), FIND_LR_OPTIONS, ids=lambda x: repr(x)[:40])
def test_find_lr_refuses_bad_options_before_any_work(
    options: dict[str, Any], phrases: list[str]
) -> None:
    model = tiny_model()
    loss = CountingLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    call = lambda: lrfind.find_lr(model, optimizer, loss, tiny_task(), progress=False, **options)  # noqa: E731
    refused(call, ConfigError, *phrases)
    assert loss.calls == 0


ANALYZE = [
    ({"lrs": [math.nan] * 100}, ["lrs[0] is nan", "positive, finite"]),
    ({"lrs": [0.0, *RATES[1:]]}, ["lrs[0] is 0", "positive, finite"]),
    ({"lrs": [0.1] * 100}, ["every learning rate is 0.1", "never grow"]),
    ({"lrs": [*RATES[:5], -1.0, *RATES[6:]]}, ["lrs[5] is -1"]),
    ({"lrs": [*RATES[:99], math.inf]}, ["lrs[99] is inf"]),
    ({"lrs": RATES[::-1]}, ["lrs[1]", "is below the rate before it", "sorted by rate"]),
    ({"lrs": [*RATES[:3], RATES[1], *RATES[4:]]}, ["lrs[3]", "is below the rate before it"]),
    ({"lrs": [str(rate) for rate in RATES]}, ["lrs must hold numbers", "'1e-06' (a str)"]),
    ({"lrs": [True] * 100}, ["lrs must hold numbers"]),
    ({"lrs": "0.1,0.2"}, ["lrs must be a sequence of numbers", "(a str)"]),
    ({"lrs": 0.1}, ["lrs must be a sequence of numbers", "0.1 (a float)"]),
    ({"lrs": np.ones((5, 6))}, ["lrs must be one-dimensional", "(5, 6)"]),
    ({"lrs": RATES[:10]}, ["as many learning rates as losses", "10 rates and 100 losses"]),
    ({"losses": [*LOSSES[:7], math.nan, *LOSSES[8:]]}, ["losses[7] is nan", "only the last"]),
    ({"losses": [None] * 100}, ["losses must hold numbers", "None"]),
    ({"smoothing": 1.5}, ["smoothing is an EMA factor in [0, 1)", "1.5"]),
    ({"smoothing": "0.9"}, ["smoothing must be a number", "smoothing=0.9"]),
    ({"divergence_factor": 0.5}, ["divergence_factor must be a finite number above 1"]),
    ({"method": None}, ["method must be text", "None"]),
    ({"planned_steps": 0}, ["planned_steps must be a positive integer"]),
    ({"planned_steps": 100.0}, ["planned_steps must be an integer", "planned_steps=100"]),
]


@pytest.mark.parametrize(("changed", "phrases"), ANALYZE, ids=lambda x: repr(x)[:40])
def test_analyze_refuses_what_the_cli_refuses(changed: dict[str, Any], phrases: list[str]) -> None:
    arguments = {"lrs": RATES, "losses": LOSSES, **changed}
    refused(
        lambda: lrfind.analyze(arguments.pop("lrs"), arguments.pop("losses"), **arguments),
        ConfigError,
        *phrases,
    )


def test_analyze_takes_any_form_of_the_same_numbers() -> None:
    """A list, a numpy array, a tensor, numpy scalars: one analysis; a curve that ends on a
    NaN loss (as a sweep that diverged does) is still a curve."""
    reference = lrfind.analyze(RATES, LOSSES)
    assert reference.recommendation is not None
    for lrs, losses in [
        (np.array(RATES), np.array(LOSSES)),
        (torch.tensor(RATES, dtype=torch.float64), torch.tensor(LOSSES, dtype=torch.float64)),
        ([np.float64(rate) for rate in RATES], tuple(LOSSES)),
    ]:
        assert lrfind.analyze(lrs, losses).recommendation == reference.recommendation
    ended = lrfind.analyze(RATES, [*LOSSES[:-1], math.nan], planned_steps=np.int64(100))
    assert ended.lrs.tolist() == RATES
    held = [*RATES[:50], RATES[49], *RATES[51:]]  # a rate held for two steps (fp16 skips)
    assert lrfind.analyze(held, LOSSES).lrs.tolist() == held


def recommendation() -> lrfind.Recommendation:
    found = lrfind.analyze(RATES, LOSSES).recommendation
    assert found is not None
    return found


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD(tiny_model().parameters(), lr=0.1)


SCHEDULER = [
    (lambda: (optimizer(), None, "onecycle", 10, 2), ["recommendation is None", "is not None"]),
    (lambda: (optimizer(), 42, "onecycle", 10, 2), ["must be lrfind's Recommendation", "42"]),
    (
        lambda: (optimizer(), {"recommendation": None}, "onecycle", 10, 2),
        ["holds no recommendation"],
    ),
    (lambda: (optimizer(), recommendation(), None, 10, 2), ["unknown schedule kind None"]),
    (lambda: (optimizer(), recommendation(), ["onecycle"], 10, 2), ["unknown schedule kind"]),
    (lambda: (optimizer(), recommendation(), "onecylce", 10, 2), ["Did you mean 'onecycle'?"]),
    (lambda: (optimizer(), recommendation(), "onecycle", True, 2), ["steps_per_epoch", "True"]),
    (lambda: (optimizer(), recommendation(), "onecycle", 10.0, 2), ["steps_per_epoch=10"]),
    (lambda: (optimizer(), recommendation(), "onecycle", 10, 0), ["epochs must be a positive"]),
    (lambda: (None, recommendation(), "onecycle", 10, 2), ["optimizer must be a torch.optim"]),
]


@pytest.mark.parametrize(("arguments", "phrases"), SCHEDULER, ids=range(len(SCHEDULER)))
def test_build_scheduler_refuses_what_has_no_schedule(
    arguments: Callable[[], tuple[Any, ...]], phrases: list[str]
) -> None:
    refused(lambda: lrfind.build_scheduler(*arguments()), ConfigError, *phrases)


def test_the_readmes_pattern_on_a_sweep_without_an_answer() -> None:
    """`build_scheduler(optimizer, outcome.recommendation, ...)` where the curve held no
    answer (a flat loss): a ConfigError pointing at the check, not an AttributeError."""
    flat = lrfind.analyze(RATES, [1.0] * 100)
    assert flat.recommendation is None
    refused(
        lambda: lrfind.build_scheduler(optimizer(), flat.recommendation, "cosine", 10, 1),
        ConfigError,
        "recommendation is None",
    )


def test_numpy_numbers_sweep_exactly_as_pythons() -> None:
    """Valid values in numpy's types are the same values: the same records, bit for bit."""
    runs = []
    for numbers in [
        {"start_lr": 1e-4, "end_lr": 1.0, "steps": 12, "seed": 0, "smoothing": 0.9},
        {
            "start_lr": np.float64(1e-4),
            "end_lr": np.float32(1.0),
            "steps": np.int64(12),
            "seed": np.int32(0),
            "smoothing": np.float64(0.9),
        },
    ]:
        model = tiny_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        runs.append(
            lrfind.range_test(
                model, optimizer, nn.functional.cross_entropy, tiny_task(), progress=False,
                **numbers,
            )
        )  # fmt: skip
    assert runs[0].records == runs[1].records
    assert runs[0].recommendation == runs[1].recommendation


def test_settings_types_are_checked_where_they_are_declared() -> None:
    """One check for the CLI and the API alike: SweepSettings itself refuses a wrong type, and
    normalises numpy numbers to Python's."""
    with pytest.raises(ConfigError, match="steps must be an integer"):
        SweepSettings(steps=50.0)  # type: ignore[arg-type]
    settings = SweepSettings(steps=np.int64(50), start_lr=np.float32(1e-3))  # type: ignore[arg-type]
    assert type(settings.steps) is int and type(settings.start_lr) is float
