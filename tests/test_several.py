"""Several optimizers in one sweep (lrfind.setup.several) and the Muon + AdamW pair that
`--optimizer muon` builds: rates moved together at their ratio, state restored, the rule for
Muon's parameters, each optimizer's rates in result.json."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lrfind.engine.finder import range_test
from lrfind.errors import ConfigError
from lrfind.settings.options import RunConfig
from lrfind.setup.models import BUILTIN_MODELS
from lrfind.setup.optimizers import build_optimizer, muon_parameters
from lrfind.setup.several import OptimizerSet
from tests.conftest import CALM, lrfind, said, tiny_model, tiny_task, user_task, write_python


def names_for_muon(model: nn.Module) -> list[str]:
    named = dict(model.named_parameters())
    hidden, _ = muon_parameters(list(named.values()))
    return [name for name, parameter in named.items() if any(parameter is p for p in hidden)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mlp", ["3.weight"]),  # the input layer (first parameter) and the head stay on AdamW
        ("lenet", ["7.weight", "9.weight"]),  # conv kernels are 4-D
        ("cnn", ["9.weight"]),  # the first dense layer follows the convolutions
    ],
)
def test_muon_takes_the_hidden_matrices_of_each_builtin_model(
    name: str, expected: list[str]
) -> None:
    assert names_for_muon(BUILTIN_MODELS[name].build(1, 28, 28, 10)) == expected


def test_an_embedding_and_its_head_stay_on_adamw() -> None:
    model = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 16), nn.LayerNorm(16))
    model.append(nn.Linear(16, 50, bias=False))
    assert names_for_muon(model) == ["1.weight"]


def test_muon_builds_a_pair_at_one_rate_that_matches_adamws_size() -> None:
    model = BUILTIN_MODELS["mlp"].build(1, 28, 28, 10)
    pair = build_optimizer(RunConfig(optimizer="muon"), model.parameters(), lr=0.01)
    assert isinstance(pair, OptimizerSet)
    muon, adamw = pair.optimizers["muon"], pair.optimizers["adamw"]
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert muon.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    assert [group["lr"] for group in pair.param_groups] == [0.01, 0.01]
    held = [p for group in pair.param_groups for p in group["params"]]
    assert sorted(map(id, held)) == sorted(map(id, model.parameters()))


def test_a_model_without_a_hidden_matrix_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"no hidden 2-D weight .* --optimizer adamw"):
        build_optimizer(RunConfig(optimizer="muon"), nn.Linear(8, 3).parameters(), lr=0.01)


def two_optimizers(model: nn.Module) -> dict[str, torch.optim.Optimizer]:
    first, second = model[0], model[3]
    return {
        "body": torch.optim.SGD(first.parameters(), lr=1e-3, momentum=0.9),
        "head": torch.optim.Adam(second.parameters(), lr=1e-4),
    }


def test_two_optimizers_sweep_together_at_their_ratio_and_are_restored() -> None:
    model = tiny_model()
    optimizers = two_optimizers(model)
    batches = tiny_task()
    for optimizer in optimizers.values():  # state to restore, not just an empty one
        model.zero_grad()
        nn.functional.cross_entropy(model(batches[0][0]), batches[0][1]).backward()
        optimizer.step()
    weights = {key: value.clone() for key, value in model.state_dict().items()}
    states = {name: copy.deepcopy(o.state_dict()) for name, o in optimizers.items()}
    seen: list[tuple[float, float]] = []
    optimizers["head"].register_step_pre_hook(
        lambda *_: seen.append(
            (optimizers["body"].param_groups[0]["lr"], optimizers["head"].param_groups[0]["lr"])
        )
    )
    result = range_test(
        model, optimizers, nn.functional.cross_entropy, batches, **vars(CALM), seed=0
    )
    assert result.group_ratios == (1.0, 0.1)
    assert [body for body, _ in seen] == pytest.approx([record.lr for record in result.records])
    assert all(head == pytest.approx(body / 10) for body, head in seen)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    for name, optimizer in optimizers.items():
        restored = optimizer.state_dict()
        assert restored["param_groups"] == states[name]["param_groups"]
        for index, state in states[name]["state"].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(restored["state"][index][key]), value)


def test_a_list_names_each_optimizer_and_gives_each_its_rates() -> None:
    model = tiny_model()
    optimizers = list(two_optimizers(model).values())
    both = OptimizerSet({"0:SGD": optimizers[0], "1:Adam": optimizers[1]})
    assert both.rates(0.5) == {"0:SGD": [0.5], "1:Adam": [pytest.approx(0.05)]}
    result = range_test(model, optimizers, nn.functional.cross_entropy, tiny_task(), **vars(CALM))
    assert result.group_ratios == (1.0, 0.1)


def test_an_empty_list_and_a_member_that_is_no_optimizer_are_named() -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="optimizer is an empty list"):
        range_test(model, [], nn.functional.cross_entropy, tiny_task())
    mixed = {"body": torch.optim.SGD(model.parameters(), lr=0.1), "head": "sgd"}
    with pytest.raises(ConfigError, match=r"got 'head' \(a str\): 'sgd'"):
        range_test(model, mixed, nn.functional.cross_entropy, tiny_task())


def test_two_optimizers_over_one_parameter_are_refused() -> None:
    model = tiny_model()
    both = [torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.Adam(model.parameters())]
    with pytest.raises(ConfigError, match="share a parameter"):
        range_test(model, both, nn.functional.cross_entropy, tiny_task())


def muon_run(task: Path, out: Path) -> list[str]:
    return ["run", "--dataset", f"{task}:data", "--model", f"{task}:model", "--optimizer",
            "muon", "--batch-size", "64", "--steps", "60", "--repeats", "1", "--start-lr",
            "1e-5", "--end-lr", "10", "--device", "cpu", "--out", str(out), "--quiet"]  # fmt: skip


def assert_each_optimizer_has_its_rates(out: Path) -> None:
    document = json.loads((out / "result.json").read_text())
    block, answer = document["optimizer"], document["recommendation"]
    assert block["class"] == "torch.optim.Muon"
    assert block["rule"].startswith("Muon trains every 2-D weight except")
    members = {member["name"]: member for member in block["optimizers"]}
    assert members["muon"]["parameters"] == 32 * 32
    assert members["adamw"]["class"] == "torch.optim.AdamW"
    for member in members.values():
        assert member["lr_ratio"] == [1.0]
        assert member["rates"]["max_lr"] == [answer["max_lr"]]


def test_muon_runs_on_a_user_model_and_records_each_optimizers_rates(tmp_path: Path) -> None:
    task = write_python(tmp_path / "task.py", user_task(hidden_layers=2))
    completed = lrfind(*muon_run(task, tmp_path / "run"), env={"HOME": str(tmp_path)})
    assert completed.returncode == 0, said(completed)
    assert_each_optimizer_has_its_rates(tmp_path / "run")


def test_muon_as_a_process(tmp_path: Path) -> None:
    """`lrfind run --optimizer muon`, installed, in a fresh process."""
    task = write_python(tmp_path / "task.py", user_task(hidden_layers=2))
    command = str(Path(sys.executable).parent / "lrfind")
    completed = subprocess.run(
        [command, *muon_run(task, tmp_path / "run")], capture_output=True, text=True,
        timeout=300, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert_each_optimizer_has_its_rates(tmp_path / "run")


TWO_OPTIMIZERS_SCRIPT = """
import torch, lrfind
from torch import nn
torch.manual_seed(0)
inputs = torch.randn(512, 8)
batches = [(inputs[i:i + 32], inputs[i:i + 32, :3].argmax(1)) for i in range(0, 512, 32)]
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
optimizers = {"body": torch.optim.SGD(model[0].parameters(), lr=1e-2),
              "head": torch.optim.Adam(model[2].parameters(), lr=1e-3)}
result = lrfind.range_test(model, optimizers, nn.functional.cross_entropy, batches,
                           start_lr=1e-5, end_lr=10, steps=60)
print(result.group_ratios, optimizers["body"].param_groups[0]["lr"],
      optimizers["head"].param_groups[0]["lr"])
"""


def test_two_optimizers_through_the_api_as_a_process() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", TWO_OPTIMIZERS_SCRIPT], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["(1.0,", "0.1)", "0.01", "0.001"]
