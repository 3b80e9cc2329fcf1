"""Optimizer families (lrfind.setup.families): schedule-free optimizers step in train mode,
are evaluated in eval mode, sweep without their warm-up and get their own lr; LR-free ones
are refused with what to tune instead, unless the sweep is forced."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from prodigyopt import Prodigy
from schedulefree import AdamWScheduleFree, SGDScheduleFree
from torch import nn

from lrfind.engine.finder import range_test
from lrfind.engine.trainer import train_epochs
from lrfind.errors import ConfigError
from lrfind.settings.optimizers import LR_FREE
from lrfind.setup.families import LR_FREE as LR_FREE_FAMILY
from lrfind.setup.families import SCHEDULE_FREE, family
from tests.conftest import CALM, lrfind, said, tiny_model, tiny_task, user_task, write_python


def trained_then_saved(model: nn.Module) -> AdamWScheduleFree:
    """A schedule-free optimizer with state, left in eval mode as a checkpoint keeps it."""
    optimizer = AdamWScheduleFree(model.parameters(), lr=1e-2, warmup_steps=1000)
    optimizer.train()
    for inputs, targets in tiny_task()[:3]:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    optimizer.eval()
    return optimizer


def test_schedule_free_sweeps_in_train_mode_evaluates_in_eval_mode_and_is_restored() -> None:
    model = tiny_model()
    optimizer = trained_then_saved(model)
    weights = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(optimizer.state_dict())
    modes: list[tuple[bool, bool]] = []  # (model.training, optimizer in train mode) per forward
    model.register_forward_pre_hook(
        lambda module, _: modes.append((module.training, optimizer.param_groups[0]["train_mode"]))
    )
    rates: list[tuple[float, float]] = []
    optimizer.register_step_post_hook(
        lambda opt, *_: rates.append(
            (opt.param_groups[0]["scheduled_lr"], opt.param_groups[0]["lr"])
        )
    )
    batches = tiny_task()
    result = range_test(
        model, optimizer, nn.functional.cross_entropy, batches, **vars(CALM), seed=0,
        val_batches=batches[:2],
    )  # fmt: skip
    assert len(result.records) > 10 and result.val_losses is not None
    assert set(modes) == {(True, True), (False, False)}
    # the warm-up (1000 steps) was off: every step trained at the rate recorded
    assert all(scheduled == lr for scheduled, lr in rates)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    restored = optimizer.state_dict()
    assert restored["param_groups"] == state["param_groups"]  # eval mode, warm-up 1000
    for index, values in state["state"].items():
        for key, value in values.items():
            assert torch.equal(restored["state"][index][key], value), key


def test_training_steps_schedule_free_in_train_mode_and_tests_in_eval_mode() -> None:
    model = tiny_model()
    optimizer = SGDScheduleFree(model.parameters(), lr=0.1)
    modes: list[tuple[bool, bool]] = []
    model.register_forward_pre_hook(
        lambda module, _: modes.append((module.training, optimizer.param_groups[0]["train_mode"]))
    )

    class Held:
        def batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
            return tiny_task(seed=1)[:2]

    history = train_epochs(
        model, optimizer, nn.functional.cross_entropy, tiny_task(), epochs=1, test=Held()
    )
    assert history[0].test_accuracy is not None
    assert set(modes) == {(True, True), (False, False)}
    assert optimizer.param_groups[0]["train_mode"]  # back in train mode after the test


def test_the_families_are_known_by_class_name_in_any_module() -> None:
    model = tiny_model()
    assert family(AdamWScheduleFree(model.parameters())) == SCHEDULE_FREE
    assert family(Prodigy(model.parameters())) == LR_FREE_FAMILY
    assert family(torch.optim.AdamW(model.parameters())) is None
    own = type("DAdaptAdam", (torch.optim.SGD,), {})  # another package's D-Adaptation
    assert family(own(model.parameters(), lr=1.0)) == LR_FREE_FAMILY
    assert {"prodigy", "dadaptadam", "dog", "mechanic"} <= LR_FREE.keys()


def test_an_lr_free_optimizer_is_refused_with_what_to_tune_unless_forced() -> None:
    model = tiny_model()
    optimizer = Prodigy(model.parameters())
    with pytest.raises(ConfigError, match=r"Prodigy sets its own step size.*Tune d_coef"):
        range_test(model, optimizer, nn.functional.cross_entropy, tiny_task())
    result = range_test(
        model, optimizer, nn.functional.cross_entropy, tiny_task(), **vars(CALM),
        force_sweep=True,
    )  # fmt: skip
    assert len(result.records) > 0


def run_arguments(task: Path, out: Path, optimizer: str) -> list[str]:
    return ["run", "--dataset", f"{task}:data", "--model", f"{task}:model", "--optimizer",
            optimizer, "--batch-size", "64", "--steps", "60", "--repeats", "1", "--start-lr",
            "1e-5", "--end-lr", "10", "--epochs", "2", "--device", "cpu",
            "--out", str(out)]  # fmt: skip


def assert_schedule_free_answer(out: Path, printed: str) -> None:
    document = json.loads((out / "result.json").read_text())
    block = document["optimizer"]
    assert block["family"] == "schedule-free"
    answer = block["schedule_free"]
    assert answer["lr"] == document["recommendation"]["max_lr"]
    assert answer["warmup_steps"] == round(0.05 * 2 * 16)  # 5% of 2 epochs of 16 batches
    assert "Schedule-free: lr=" in printed and "OneCycleLR" not in printed


def test_schedule_free_through_the_cli_gets_its_own_lr(tmp_path: Path) -> None:
    task = write_python(tmp_path / "task.py", user_task())
    completed = lrfind(*run_arguments(task, tmp_path / "run", "schedulefree:AdamWScheduleFree"))
    assert completed.returncode == 0, said(completed)
    assert_schedule_free_answer(tmp_path / "run", said(completed))


def test_schedule_free_as_a_process(tmp_path: Path) -> None:
    """`lrfind run --optimizer schedulefree:AdamWScheduleFree`, installed, in a fresh process
    (it failed with schedule-free's own "insert .train() and .eval() calls")."""
    task = write_python(tmp_path / "task.py", user_task())
    command = str(Path(sys.executable).parent / "lrfind")
    arguments = run_arguments(task, tmp_path / "run", "schedulefree:AdamWScheduleFree")
    completed = subprocess.run(
        [command, *arguments], capture_output=True, text=True, timeout=300,
        env={**os.environ, "HOME": str(tmp_path), "COLUMNS": "200"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert_schedule_free_answer(tmp_path / "run", " ".join(completed.stdout.split()))


def test_prodigy_through_the_cli_is_refused_before_data_and_runs_when_forced(
    tmp_path: Path,
) -> None:
    task = write_python(tmp_path / "task.py", user_task())
    out = tmp_path / "run"
    refused = lrfind(*run_arguments(task, out, "prodigyopt:Prodigy"))
    assert refused.returncode == 2, said(refused)
    assert "Tune d_coef instead" in said(refused) and "--force-sweep" in said(refused)
    assert "Traceback" not in refused.stderr and not out.exists()
    forced = lrfind(*run_arguments(task, out, "prodigyopt:Prodigy"), "--force-sweep")
    assert forced.returncode in (0, 1), said(forced)  # 1: no answer, still written
    block = json.loads((out / "result.json").read_text())["optimizer"]
    assert block["family"] == "lr-free" and "multipliers" in block["lr_free"]
