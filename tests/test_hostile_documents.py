"""Old and odd documents (issue 26, class 6): result.json of every format version and of any
damage, and training configs written the ways their formats allow (TOML inline tables and
dotted keys, YAML and JSON nulls, a section of a schedule lrfind does not write). Each is
either edited into a file `lrfind train` accepts or refused by its field with exit code 2, no
traceback and every file as it was."""

from __future__ import annotations

import inspect
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from lrfind.core.schedules import check_section
from lrfind.outputs.configedit import SECTION_KEYS, TORCH_SCHEDULER_KEYS
from tests.conftest import assert_refused, files_under, lrfind, said

RATES = {"base_lr": 0.0453, "max_lr": 0.2561, "lr": 0.0853}
GOOD = {"format_version": 2, "recommendation": RATES, "data": {"steps_per_epoch": 234}}


def result_file(folder: Path, document: Any) -> Path:
    path = folder / "result.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


# ---------------------------------------------------------------------------------------------
# result.json: every version, every damage, refused by its field


NO_RATES = ["holds no recommendation", "rerun `lrfind run`"]
EDITED = ["the result was edited or is damaged", "Rerun `lrfind run`"]


@pytest.mark.parametrize(
    ("document", "phrases"),
    [
        pytest.param({"recommendation": None}, NO_RATES, id="v1-null-no-version"),
        pytest.param({"format_version": 1, "recommendation": None, "diagnostics": ["flat"]},
                     ["holds no recommendation (flat)"], id="v1-null-with-reasons"),
        pytest.param({"format_version": 1, "recommendation": {"max_lr": None,
                      "confidence_reasons": ["too flat"]}}, ["(too flat)"], id="v1-no-rates"),
        pytest.param({"format_version": 1, "recommendation": {**RATES,
                      "confidence_reasons": 5}}, ["`recommendation.confidence_reasons` is 5",
                      "not a list of texts", *EDITED], id="v1-reasons-a-number"),
        pytest.param({"format_version": 1, "recommendation": {**RATES, "diagnostics": "x"}},
                     ["`recommendation.diagnostics` is 'x'", *EDITED], id="v1-diagnostics-text"),
        pytest.param({"format_version": 2, "recommendation": {**RATES, "confidence": "low",
                      "confidence_reasons": 3}}, ["`recommendation.confidence_reasons` is 3"],
                     id="v2-reasons-a-number"),
        pytest.param({"format_version": 2, "recommendation": {**RATES, "confidence": 7}},
                     ["`recommendation.confidence` is 7, not a text"], id="v2-confidence"),
        pytest.param({"format_version": 2, "recommendation": None, "no_recommendation": "flat"},
                     ["`no_recommendation` is 'flat', not a list of texts"], id="v2-reasons-text"),
        pytest.param({"format_version": 2, "recommendation": RATES, "data": []},
                     ["`data` is [], not a mapping", "remove the field"], id="v2-data-list"),
        pytest.param({"format_version": 2, "recommendation": RATES, "config": "lenet"},
                     ["`config` is 'lenet', not a mapping"], id="v2-config-text"),
        pytest.param({"format_version": 2, "recommendation": RATES, "interrupted": "yes"},
                     ["`interrupted` is 'yes', not true or false"], id="v2-interrupted-text"),
        pytest.param({"format_version": 0, "recommendation": None},
                     ["format_version 0; this lrfind reads versions 1 to 2",
                      "edited or is damaged"], id="version-0"),
        pytest.param({"format_version": -3, "recommendation": RATES},
                     ["format_version -3"], id="version-negative"),
        pytest.param({"format_version": True, "recommendation": RATES},
                     ["format_version True"], id="version-bool"),
        pytest.param({"format_version": 9, "recommendation": RATES},
                     ["format_version 9", "Upgrade lrfind"], id="version-newer"),
        pytest.param({"format_version": 2, "recommendation": {}}, ["no usable base_lr (got None)"],
                     id="v2-empty-block"),
        pytest.param('{"format_version": 2, "recommendation": {"base_lr": 0.04',
                     ["is not readable JSON: it ends inside the document", "cut short",
                      "write it again whole"], id="cut-json"),
        pytest.param('{"format_version": 2, "recommendation": {"base_lr": "0.0',
                     ["it ends inside the document"], id="cut-inside-a-string"),
        pytest.param("", ["it ends inside the document"], id="empty-file"),
        pytest.param('{"recommendation": null,}', ["is not readable JSON (Expecting"],
                     id="trailing-comma"),
    ],
)  # fmt: skip
def test_apply_refuses_old_and_damaged_results_by_their_field(
    tmp_path: Path, document: Any, phrases: list[str]
) -> None:
    result = result_file(tmp_path, document)
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\nepochs: 5\n")
    before = files_under(tmp_path)
    completed = lrfind("apply", result, config)
    assert_refused(completed, 2, *phrases, before=before, root=tmp_path, alone=True)


def test_train_refuses_a_damaged_result_before_any_work(tmp_path: Path) -> None:
    result = result_file(tmp_path, {"format_version": 1, "recommendation": None})
    config = tmp_path / "train.yaml"
    config.write_text("model: mlp\ndataset: mnist\nepochs: 1\n")
    before = files_under(tmp_path)
    out = tmp_path / "out"
    completed = lrfind("train", "--config", config, "--result", result, "--out", out)
    assert_refused(completed, 2, *NO_RATES, before=before, root=tmp_path, alone=True)


def test_a_version_1_result_with_rates_still_applies(tmp_path: Path) -> None:
    block = {**RATES, "confidence": "high", "confidence_reasons": [], "diagnostics": ["ok"]}
    result = result_file(tmp_path, {"format_version": 1, "recommendation": block})
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\n")
    completed = lrfind("apply", result, config)
    assert completed.returncode == 0, said(completed)
    assert yaml.safe_load(config.read_text())["scheduler"]["max_lr"] == RATES["max_lr"]


# ---------------------------------------------------------------------------------------------
# Training configs in every form their format allows


def read_section(path: Path, keys: tuple[str, ...] = ("scheduler",)) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        node: Any = tomllib.loads(text)
    elif path.suffix == ".json":
        node = json.loads(text)
    else:
        node = yaml.safe_load(text)
    for key in keys:
        node = node[key]
    assert isinstance(node, dict)
    return node


TRIANGULAR = {"kind", "base_lr", "max_lr", "step_size_up"}


@pytest.mark.parametrize(
    ("name", "text", "others"),
    [
        pytest.param("inline.toml", 'epochs = 5\nscheduler = { kind = "onecycle" }\n',
                     {"epochs": 5}, id="toml-inline-table"),
        pytest.param("inline-last.toml", 'scheduler = { kind = "onecycle", max_lr = 0.1 }\n',
                     {}, id="toml-inline-no-epochs"),
        pytest.param("dotted.toml", 'epochs = 5\nscheduler.kind = "onecycle"\nmodel = "lenet"\n',
                     {"epochs": 5, "model": "lenet"}, id="toml-dotted-keys"),
        pytest.param("table.toml", 'epochs = 5\n\n[scheduler]\nkind = "onecycle"\n',
                     {"epochs": 5}, id="toml-table-with-epochs"),
        pytest.param("tilde.yaml", "epochs: 5\nscheduler: ~\n", {"epochs": 5}, id="yaml-tilde"),
        pytest.param("null.yaml", "scheduler: null # none yet\nmodel: lenet\n",
                     {"model": "lenet"}, id="yaml-null-with-comment"),
        pytest.param("empty.yaml", "scheduler:\nmodel: lenet\n", {"model": "lenet"},
                     id="yaml-empty-value"),
        pytest.param("flow.yaml", "a: 1\nscheduler: {kind: onecycle}\nb: 2\n", {"a": 1, "b": 2},
                     id="yaml-flow-mapping"),
        pytest.param("null.json", '{"epochs": 5, "scheduler": null}\n', {"epochs": 5},
                     id="json-null"),
    ],
)  # fmt: skip
def test_odd_but_valid_configs_take_the_schedule_and_train_accepts_them(
    tmp_path: Path, name: str, text: str, others: dict[str, Any]
) -> None:
    result = result_file(tmp_path, GOOD)
    config = tmp_path / name
    config.write_text(text)
    completed = lrfind("apply", result, config, "--schedule", "triangular")
    assert completed.returncode == 0, said(completed)
    assert "Traceback" not in completed.stdout + completed.stderr
    section = read_section(config)
    assert set(section) == TRIANGULAR
    assert section["max_lr"] == RATES["max_lr"]
    check_section(section, "scheduler")  # what `lrfind train` checks first
    whole = read_section(config, ()) if name.endswith((".toml", ".json")) else yaml.safe_load(
        config.read_text())  # fmt: skip
    assert {key: whole[key] for key in others} == others
    again = lrfind("apply", result, config, "--schedule", "triangular")
    assert again.returncode == 0 and "already holds" in said(again)


PLATEAU = {
    "yaml": "epochs: 5\nscheduler:\n  kind: plateau\n  mode: min\n  patience: 3\n  factor: 0.5\n"
    "  note: mine\n",
    "toml": 'epochs = 5\n[scheduler]\nkind = "plateau"\nmode = "min"\npatience = 3\n'
    'factor = 0.5\nnote = "mine"\n',
    "json": '{"epochs": 5, "scheduler": {"kind": "plateau", "mode": "min", "patience": 3, '
    '"factor": 0.5, "note": "mine"}}\n',
}
OTHER_KINDS = {
    "plateau": {"mode": "min", "patience": 3, "factor": 0.5, "threshold": 0.01, "cooldown": 1},
    "cosine-restarts": {"T_0": 10, "T_mult": 2, "eta_min": 0.001},
    "step": {"step_size": 30, "gamma": 0.1, "last_epoch": -1},
    "poly": {"total_iters": 100, "power": 2.0},
}


@pytest.mark.parametrize("fmt", list(PLATEAU))
@pytest.mark.parametrize("kind", ["triangular", "onecycle", "warmup-cosine", "constant"])
def test_another_schedules_keys_go_and_the_users_own_stay(
    tmp_path: Path, fmt: str, kind: str
) -> None:
    result = result_file(tmp_path, GOOD)
    config = tmp_path / f"train.{fmt}"
    config.write_text(PLATEAU[fmt])
    completed = lrfind("apply", result, config, "--schedule", kind)
    assert completed.returncode == 0, said(completed)
    section = read_section(config)
    assert section["kind"] == kind and section["note"] == "mine"
    assert not {"mode", "patience", "factor"} & set(section)
    check_section({k: v for k, v in section.items() if k != "note"}, "scheduler")


@pytest.mark.parametrize("kind", list(OTHER_KINDS))
def test_every_torch_schedulers_keys_are_replaced(tmp_path: Path, kind: str) -> None:
    result = result_file(tmp_path, GOOD)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"scheduler": {"kind": kind, **OTHER_KINDS[kind]}}))
    completed = lrfind("apply", result, config, "--schedule", "triangular")
    assert completed.returncode == 0, said(completed)
    section = read_section(config)
    assert set(section) == TRIANGULAR
    check_section(section, "scheduler")


@pytest.mark.parametrize(
    "named",
    [{"name": "onecycle"}, {"type": "OneCycleLR"},
     {"_target_": "torch.optim.lr_scheduler.OneCycleLR"},
     {"class_path": "torch.optim.lr_scheduler.OneCycleLR"}],
)  # fmt: skip
def test_the_old_schedules_name_goes_with_its_keys(tmp_path: Path, named: dict[str, str]) -> None:
    """A section naming its scheduler by `name`, `type`, `_target_` or `class_path` would
    contradict the new kind if the name stayed beside it."""
    result = result_file(tmp_path, GOOD)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"scheduler": {**named, "max_lr": 0.5, "div_factor": 25}}))
    completed = lrfind("apply", result, config, "--schedule", "triangular")
    assert completed.returncode == 0, said(completed)
    section = read_section(config)
    assert set(section) == TRIANGULAR
    check_section(section, "scheduler")


def test_the_torch_scheduler_keys_are_those_of_the_installed_torch() -> None:
    from torch.optim import lr_scheduler

    schedulers = (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)
    taken = set()
    for value in vars(lr_scheduler).values():
        if inspect.isclass(value) and issubclass(value, schedulers):
            parameters = inspect.signature(value.__init__).parameters
            taken |= set(parameters) - {"self", "optimizer", "args", "kwargs"}
    assert taken <= TORCH_SCHEDULER_KEYS
    assert "note" not in SECTION_KEYS and "interval" not in SECTION_KEYS


def test_a_refused_edit_of_a_shared_section_still_names_the_anchor(tmp_path: Path) -> None:
    result = result_file(tmp_path, GOOD)
    config = tmp_path / "train.yaml"
    config.write_text("base: &s {kind: onecycle}\nscheduler: *s\n")
    before = files_under(tmp_path)
    completed = lrfind("apply", result, config)
    assert_refused(completed, 2, "anchor &s", before=before, root=tmp_path, alone=True)
    assert os.path.getsize(config) == len(before["train.yaml"])
