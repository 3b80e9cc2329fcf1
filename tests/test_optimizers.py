"""Optimizers by name, by spec and with their arguments: resolved before any data loads,
recorded in result.json, stacked only where their update is element-wise."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lrfind.commands.run import _plot_title, stack_choice
from lrfind.engine.distributed import Ranks
from lrfind.errors import ConfigError, SpecError
from lrfind.settings.optimizers import (
    ELEMENTWISE,
    NOT_ELEMENTWISE,
    REFUSED,
    parse_optimizer_args,
    parse_value,
)
from lrfind.settings.options import RunConfig, TrainConfig, load_config_file, merge_options
from lrfind.setup.optimizers import build_optimizer, check_optimizer, torch_optimizers
from tests.conftest import (
    CALM,
    assert_clean_failure,
    invoke,
    lrfind,
    one_by_one,
    stacked,
    tiny_model,
    user_task,
    write_python,
)

PROBE = [torch.zeros(3, requires_grad=True)]


def built(**options: Any) -> torch.optim.Optimizer:
    config = RunConfig(**options)
    check_optimizer(config)
    return build_optimizer(config, PROBE, lr=0.01)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rmsprop", torch.optim.RMSprop),
        ("NAdam", torch.optim.NAdam),
        ("RADAM", torch.optim.RAdam),
        ("adagrad", torch.optim.Adagrad),
        ("adadelta", torch.optim.Adadelta),
        ("Adamax", torch.optim.Adamax),
        ("asgd", torch.optim.ASGD),
        ("adafactor", torch.optim.Adafactor),
        ("sgd", torch.optim.SGD),
        ("AdamW", torch.optim.AdamW),
        ("torch.optim:RMSprop", torch.optim.RMSprop),
    ],
)
def test_any_torch_optimizer_by_name_in_any_case(name: str, expected: type) -> None:
    optimizer = built(optimizer=name)
    assert type(optimizer) is expected
    assert optimizer.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("lbfgs", "it needs a closure that evaluates the loss several times per step"),
        ("SparseAdam", "it only takes sparse gradients"),
        ("rprop", "reads lr only once"),
        ("torch.optim:LBFGS", "needs a closure"),
    ],
)
def test_optimizers_a_range_test_cannot_use_are_refused_with_the_reason(
    name: str, reason: str
) -> None:
    with pytest.raises(
        ConfigError, match=rf"optimizer '{name}' cannot run a range test: .*{reason}"
    ):
        RunConfig(optimizer=name)


def test_every_torch_optimizer_is_classified_once() -> None:
    """A new torch.optim optimizer fails here until someone checks its update rule."""
    classified = [*ELEMENTWISE, *NOT_ELEMENTWISE, *REFUSED]
    assert len(classified) == len(set(classified))
    every = {
        name.lower()
        for name, value in vars(torch.optim).items()
        if isinstance(value, type)
        and issubclass(value, torch.optim.Optimizer)
        and value is not torch.optim.Optimizer
    }
    assert every == set(classified)
    assert set(torch_optimizers()) == every - set(REFUSED)


def test_an_unknown_name_lists_what_torch_has_and_the_close_one() -> None:
    with pytest.raises(SpecError, match=r"unknown optimizer 'rmsprp'. Did you mean 'rmsprop'\?"):
        built(optimizer="rmsprp")
    with pytest.raises(SpecError, match=r"torch.optim has: adadelta, adafactor, adagrad"):
        built(optimizer="lion")


def test_arguments_reach_the_optimizer() -> None:
    rmsprop = built(optimizer="rmsprop", optimizer_args={"alpha": 0.9, "centered": True})
    assert (rmsprop.defaults["alpha"], rmsprop.defaults["centered"]) == (0.9, True)
    adam = built(optimizer="adam", optimizer_args={"betas": [0.8, 0.95]})  # a YAML list
    assert adam.defaults["betas"] == (0.8, 0.95)
    nesterov = built(optimizer="sgd", momentum=0.9, optimizer_args={"nesterov": True})
    assert (nesterov.defaults["momentum"], nesterov.defaults["nesterov"]) == (0.9, True)
    assert built(optimizer="rmsprop", momentum=0.5).defaults["momentum"] == 0.5


def test_weight_decay_is_lrfinds_not_the_optimizers_default() -> None:
    assert built(optimizer="adamw").defaults["weight_decay"] == 0.0  # AdamW's own is 0.01
    assert built(optimizer="adamw", weight_decay=0.1).defaults["weight_decay"] == 0.1


def test_an_unknown_argument_names_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        built(optimizer="rmsprop", optimizer_args={"alfa": 0.9})
    message = str(caught.value)
    assert "optimizer 'rmsprop' (torch.optim.RMSprop) takes no argument 'alfa'." in message
    assert "Did you mean 'alpha'?" in message
    assert "Its arguments: alpha, eps, centered," in message


def test_momentum_needs_an_optimizer_that_has_one() -> None:
    with pytest.raises(ConfigError, match=r"adam \(torch.optim.Adam\) has none .*betas=0.9,0.999"):
        built(optimizer="adam", momentum=0.9)


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("adam", {"betas": 0.9}, "argument betas takes a tuple of 2 (its default is "
         "(0.9, 0.999)); got 0.9. Write e.g. --optimizer-arg betas=0.9,0.999."),
        ("adam", {"betas": (0.9, 0.99, 0.5)}, "argument betas takes a tuple of 2 (its default "
         "is (0.9, 0.999)); got (0.9, 0.99, 0.5)."),
        ("adamw", {"betas": (0.9,)}, "argument betas takes a tuple of 2"),
        ("rmsprop", {"centered": "yes"}, "argument centered takes true or false"),
        ("rmsprop", {"alpha": "high"}, "argument alpha takes a number (its default is 0.99)"),
        ("sgd", {"nesterov": 1}, "argument nesterov takes true or false"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_kind_is_named_with_the_default(
    name: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        built(optimizer=name, optimizer_args=arguments)


def test_a_value_torch_refuses_is_one_paragraph_with_torchs_reason() -> None:
    with pytest.raises(ConfigError, match=r"refused its arguments .*Invalid alpha value: -1"):
        built(optimizer="rmsprop", optimizer_args={"alpha": -1.0})
    with pytest.raises(ConfigError, match="Nesterov momentum requires a momentum"):
        built(optimizer="sgd", optimizer_args={"nesterov": True})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.9", 0.9),
        ("1e-4", 1e-4),
        ("100", 100),
        ("-3", -3),
        ("true", True),
        ("False", False),
        ("none", None),
        ("0.9,0.99", (0.9, 0.99)),
        ("0.5, 1.2", (0.5, 1.2)),
        ("0.5,", (0.5,)),
        ("strong_wolfe", "strong_wolfe"),
        ("'0.9'", "0.9"),
        ('"a,b"', "a,b"),
    ],
)
def test_the_rule_for_optimizer_arg_values(text: str, value: Any) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_optimizer_args_parse_in_order_and_refuse_what_is_not_name_value() -> None:
    assert parse_optimizer_args(["alpha=0.9", "centered=true", "alpha=0.95"]) == {
        "alpha": 0.95,
        "centered": True,
    }
    for bad in ("alpha", "=0.9", "1st=2"):
        with pytest.raises(ConfigError, match="is not name=value"):
            parse_optimizer_args([bad])


@pytest.mark.parametrize("owned", ["lr", "momentum", "weight_decay", "params"])
def test_arguments_that_other_options_own_are_refused(owned: str) -> None:
    with pytest.raises(ConfigError, match=f"optimizer_args may not set '{owned}'"):
        RunConfig(optimizer_args={owned: 0.1})


def test_a_config_files_optimizer_mapping_spreads_into_the_options(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "optimizer:\n  name: RMSprop\n  alpha: 0.9\n  momentum: 0.5\n  weight_decay: 1.0e-4\n"
    )
    config = merge_options(RunConfig, load_config_file(path), {}, str(path))
    assert (config.optimizer, config.momentum, config.weight_decay) == ("RMSprop", 0.5, 1e-4)
    assert config.optimizer_args == {"alpha": 0.9}
    flags = {"optimizer_args": {"centered": True, "alpha": 0.95}}  # flags add, key by key
    config = merge_options(RunConfig, load_config_file(path), flags, str(path))
    assert config.optimizer_args == {"alpha": 0.95, "centered": True}

    hydra = {"optimizer": {"_target_": "torch.optim.NAdam", "_partial_": True, "lr": 0.01}}
    trained = merge_options(TrainConfig, hydra, {}, "train.yaml")
    assert (trained.optimizer, trained.lr, trained.optimizer_args) == ("nadam", 0.01, None)
    with pytest.raises(
        ConfigError, match=re.escape("optimizer.lr in train.yaml: a sweep sets the rate")
    ):
        merge_options(RunConfig, hydra, {}, "train.yaml")
    twice = {"momentum": 0.9, "optimizer": {"type": "SGD", "momentum": 0.8}}
    with pytest.raises(ConfigError, match=re.escape("momentum in s.yaml is given twice")):
        merge_options(RunConfig, twice, {}, "s.yaml")
    with pytest.raises(
        ConfigError, match=re.escape("optimizer in s.yaml is a mapping without a name")
    ):
        merge_options(RunConfig, {"optimizer": {"lr": 0.1}}, {}, "s.yaml")


# ---------------------------------------------------------------------------------------------
# Optimizers from other code

USER_OPTIMIZER = """
class SignDescent(torch.optim.Optimizer):
    '''Steps by the gradient's sign, scaled by lr and `scale`.'''

    def __init__(self, params, lr=0.01, scale=1.0):
        super().__init__(params, {"lr": lr, "scale": scale})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.add_(parameter.grad.sign(), alpha=-group["lr"] * group["scale"])


class Broken(torch.optim.Optimizer):
    def __init__(self, params, lr=0.01):
        raise RuntimeError("the accelerator library is missing")


def not_an_optimizer(params, lr):
    return [params, lr]
"""


def test_a_class_from_a_file_is_an_optimizer_with_its_arguments(tmp_path: Path) -> None:
    spec = f"{write_python(tmp_path / 'my_optim.py', USER_OPTIMIZER)}:SignDescent"
    optimizer = built(optimizer=spec, optimizer_args={"scale": 0.5})
    assert type(optimizer).__name__ == "SignDescent" and optimizer.defaults["scale"] == 0.5
    with pytest.raises(ConfigError, match=r"takes no argument 'scal'. Did you mean 'scale'\?"):
        built(optimizer=spec, optimizer_args={"scal": 0.5})
    with pytest.raises(ConfigError, match=r"SignDescent\) takes no weight_decay; got --weight-dec"):
        built(optimizer=spec, weight_decay=0.1)
    with pytest.raises(
        SpecError, match=r"has no class 'Missing'\. Classes it defines: Broken, Sign"
    ):
        built(optimizer=spec.replace("SignDescent", "Missing"))
    with pytest.raises(SpecError, match="raised RuntimeError: the accelerator library is missing"):
        built(optimizer=spec.replace("SignDescent", "Broken"))
    with pytest.raises(SpecError, match=re.escape("returned a list, not a torch.optim.Optimizer")):
        built(optimizer=spec.replace("SignDescent", "not_an_optimizer"))


def test_a_bad_optimizer_fails_before_the_data_is_loaded(mnist_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "loaded"
    dataset = write_python(
        tmp_path / "data.py",
        f"def build():\n    open({str(marker)!r}, 'w').close()\n"
        "    return torch.utils.data.TensorDataset(torch.zeros(8, 4), torch.zeros(8).long())\n",
    )
    out = tmp_path / "out"
    result = invoke(
        "run", "--dataset", f"{dataset}:build", "--model", "mlp", "--out", out, "--device", "cpu",
        "--optimizer", "rmsprop", "--optimizer-arg", "alfa=0.9",
    )  # fmt: skip
    assert_clean_failure(result, 2, "takes no argument 'alfa'. Did you mean 'alpha'?", out)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Stacked repeats


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_element_wise_optimizers_stack_exactly(name: str) -> None:
    config = RunConfig(optimizer=name, stack_repeats="on")
    make = lambda tensors: build_optimizer(config, tensors, CALM.start_lr)  # noqa: E731
    models = [tiny_model(seed) for seed in range(2)]
    together, alone = stacked(models, make, CALM), one_by_one(models, make, CALM)
    for joint, single in zip(together, alone, strict=True):
        assert joint.stop_reason == single.stop_reason
        np.testing.assert_allclose(joint.losses, single.losses, rtol=1e-4)


def test_adafactor_stacked_is_not_adafactor_per_copy() -> None:
    """Why Adafactor is not in the registry: its step is scaled by each tensor's norm, which
    stacked copies share, so their curves part from the one-by-one sweeps."""
    config = RunConfig(optimizer="adafactor")
    make = lambda tensors: build_optimizer(config, tensors, CALM.start_lr)  # noqa: E731
    models = [tiny_model(seed) for seed in range(3)]
    with torch.no_grad():  # copies of different scales: the stacked norm is none of theirs
        for scale, model in enumerate(models, start=1):
            for parameter in model.parameters():
                parameter.mul_(scale)
    together, alone = stacked(models, make, CALM), one_by_one(models, make, CALM)
    steps = min(len(joint.losses) for joint in together)
    gaps = [
        np.max(np.abs(joint.losses[:steps] - single.losses[:steps]) / single.losses[:steps])
        for joint, single in zip(together, alone, strict=True)
    ]
    assert max(gaps) > 100 * 1e-4  # far outside the tolerance the element-wise ones meet


def test_stacking_is_refused_or_skipped_with_the_reason_for_other_optimizers(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="--stack-repeats on cannot be combined with --optim"):
        RunConfig(optimizer="adafactor", stack_repeats="on")
    with pytest.raises(ConfigError, match="knows to be element-wise"):
        RunConfig(optimizer="my_optim.py:SignDescent", stack_repeats="on")
    config = RunConfig(optimizer="Adafactor", repeats=3)
    stack, note = stack_choice(
        config, tiny_model(), torch.zeros(2, 8), torch.device("cuda"), Ranks(0, 1, 0)
    )
    assert not stack
    assert note is not None and note.startswith(
        "The repeats ran one after another, not stacked, because of --optimizer Adafactor, "
        "whose update is not element-wise"
    )


# ---------------------------------------------------------------------------------------------
# Recorded


def test_the_plot_title_names_the_optimizer_and_its_arguments() -> None:
    config = RunConfig(
        optimizer="sgd", momentum=0.9, weight_decay=5e-4, optimizer_args={"nesterov": True}
    )
    assert "sgd (momentum 0.9, weight decay 0.0005, nesterov true), batch 256" in _plot_title(
        config
    )
    assert "\nrmsprop (betas 0.9,0.99), batch" in _plot_title(
        RunConfig(optimizer="rmsprop", optimizer_args={"betas": (0.9, 0.99)})
    )


def bare_user(home: Path) -> dict[str, str | None]:
    """A user with nothing of lrfind's in their environment: a fresh home, no data folders."""
    return {"HOME": str(home), "XDG_CACHE_HOME": None, "LRFIND_DATA_DIR": None}


def test_rmsprop_with_an_argument_end_to_end(tmp_path: Path) -> None:
    task = write_python(tmp_path / "task.py", user_task())
    out = tmp_path / "run"
    completed = lrfind(
        "run", "--dataset", f"{task}:data", "--model", f"{task}:model",
        "--optimizer", "rmsprop", "--optimizer-arg", "alpha=0.9",
        "--batch-size", "64", "--steps", "60", "--repeats", "1", "--start-lr", "1e-6",
        "--end-lr", "10", "--device", "cpu", "--out", out, "--quiet",
        env=bare_user(tmp_path),
    )  # fmt: skip
    assert completed.returncode in (0, 1), completed.stderr  # 1: no answer, still written
    assert "Traceback" not in completed.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["optimizer"] == "rmsprop"
    assert result["config"]["optimizer_args"] == {"alpha": 0.9}
    assert result["optimizer"] == {
        "spec": "rmsprop",
        "class": "torch.optim.RMSprop",
        "arguments": {"alpha": 0.9, "weight_decay": 0.0},
    }
    assert (out / "sweep.png").read_bytes().startswith(b"\x89PNG")


def test_lrfind_train_takes_a_hydra_optimizer_mapping(tmp_path: Path) -> None:
    task = write_python(tmp_path / "task.py", user_task())
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {task}:model\ndataset: {task}:data\noptimizer:\n"
        "  _target_: torch.optim.RMSprop\n  _partial_: true\n  lr: 0.001\n  alpha: 0.9\n"
        "batch_size: 64\nepochs: 1\ndevice: cpu\nscheduler:\n  kind: constant\n"
    )
    out = tmp_path / "train"
    completed = lrfind(
        "train", "--config", config, "--out", out, "--quiet", env=bare_user(tmp_path)
    )
    assert completed.returncode == 0, completed.stderr
    written = json.loads((out / "train.json").read_text())
    assert (written["config"]["optimizer"], written["config"]["optimizer_args"]) == (
        "rmsprop",
        {"alpha": 0.9},
    )
    assert written["schedules"]["constant"]["parameters"] == {"kind": "constant", "lr": 0.001}
    assert written["bounds_source"] == "the training config"
