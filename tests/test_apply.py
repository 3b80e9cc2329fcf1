"""`lrfind apply` and `lrfind run --emit`: schedules written into training configs, the rest
of each file untouched, and bad input refused without touching anything."""

from __future__ import annotations

import difflib
import errno
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfind.cli import app
from lrfind.core.schedules import Bounds, schedule_section
from tests.conftest import RECOMMENDATION, invoke, runner, write_result

YAML_CONFIG = """\
# Training config for the LeNet baseline.
model: lenet   # from lrfind's registry
dataset: fashion-mnist
optimizer: 'sgd'
batch_size: 256
augment:
    flips: true
    crops:
      - 28
      - 4
"""

TOML_CONFIG = """\
# MLP on Fashion-MNIST
model = "mlp"  # two hidden layers
dataset = "fashion-mnist"
batch_size = 128

[logging]
every = 50
"""


def added_lines(before: str, after: str) -> list[str]:
    """The lines of `after` that are not in `before`, checking that every line of `before`
    survives unchanged and in order (the edit only adds or removes schedule lines)."""
    remaining = iter(after.splitlines())
    added = []
    for line in before.splitlines():
        for candidate in remaining:
            if candidate == line:
                break
            added.append(candidate)
        else:
            pytest.fail(f"line {line!r} of the original was changed or moved")
    return added + list(remaining)


def test_yaml_keeps_comments_order_quotes_and_indentation(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(YAML_CONFIG)
    result = invoke("apply", write_result(tmp_path), config, "--schedule", "onecycle")
    assert result.exit_code == 0, result.output
    after = config.read_text()
    added = added_lines(YAML_CONFIG, after)
    assert added[0] == "scheduler:" and all(line.startswith("    ") for line in added[1:])
    written = yaml.safe_load(after)["scheduler"]  # PyYAML, as most training scripts read it
    assert written == schedule_section("onecycle", Bounds(**RECOMMENDATION), 234)
    assert "+scheduler:" in result.output  # the diff is shown


def test_toml_keeps_comments_and_tables(tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text(TOML_CONFIG)
    result_file = write_result(tmp_path)
    document = json.loads(result_file.read_text())
    document["config"].update(model="mlp", batch_size=128)
    result_file.write_text(json.dumps(document))
    result = invoke("apply", result_file, config, "--schedule", "triangular", "--key", "sched")
    assert result.exit_code == 0, result.output
    after = config.read_text()
    assert added_lines(TOML_CONFIG, after)[-5:][0].strip() == "[sched]"
    parsed = tomllib.loads(after)
    assert parsed["logging"] == {"every": 50}
    assert parsed["sched"]["kind"] == "triangular" and parsed["sched"]["base_lr"] == 0.0453


def test_json_keeps_key_order_and_indentation(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    before = '{\n    "model": "lenet",\n    "train": {\n        "epochs": 10\n    }\n}\n'
    config.write_text(before)
    result = invoke(
        "apply", write_result(tmp_path), config, "--key", "train.lr_schedule", "-schedule"
    )
    assert result.exit_code == 2  # a typo in a flag is a usage error, nothing written
    assert config.read_text() == before
    result = invoke(
        "apply", write_result(tmp_path), config, "--key", "train.lr_schedule",
        "--schedule", "triangular2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    after = config.read_text()
    parsed = json.loads(after)
    assert list(parsed) == ["model", "train"] and list(parsed["train"]) == ["epochs", "lr_schedule"]
    assert after.startswith('{\n    "model": "lenet",\n    "train": {\n        "epochs": 10,\n')
    assert after.endswith("}\n")
    # epochs from the config: 10 epochs at 4-epoch half-cycles fit one whole cycle
    assert parsed["train"]["lr_schedule"]["step_size_up"] == 234 * 10 // 2


def test_another_kind_replaces_stale_schedule_keys_and_keeps_the_users(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("scheduler:\n  kind: onecycle\n  max_lr: 1.0\n  div_factor: 25\n  note: x\n")
    result = invoke("apply", write_result(tmp_path), config, "--schedule", "warmup-cosine")
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(config.read_text())["scheduler"]
    assert written["kind"] == "warmup-cosine" and written["note"] == "x"
    assert "div_factor" not in written and "max_lr" not in written


def test_the_kind_already_in_the_config_is_the_default(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\nscheduler:\n  kind: exp_range\n")
    assert invoke("apply", write_result(tmp_path), config).exit_code == 0
    assert yaml.safe_load(config.read_text())["scheduler"]["gamma"] > 0
    again = invoke("apply", write_result(tmp_path), config)
    assert again.exit_code == 0 and "already holds" in " ".join(again.output.split())


def test_dry_run_shows_the_diff_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(YAML_CONFIG)
    stamp = config.stat().st_mtime_ns
    result = invoke("apply", write_result(tmp_path), config, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+scheduler:" in result.output and "+    kind: onecycle" in result.output
    assert "Dry run" in result.output
    assert config.read_text() == YAML_CONFIG and config.stat().st_mtime_ns == stamp


def test_small_rates_stay_floats_for_yaml_1_1_readers(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\n")
    result_file = write_result(tmp_path, base_lr=1e-5, max_lr=3e-4, lr=1e-4)
    assert invoke("apply", result_file, config, "--schedule", "triangular").exit_code == 0
    written = yaml.safe_load(config.read_text())["scheduler"]
    assert written["base_lr"] == 1e-5 and isinstance(written["base_lr"], float)


def test_file_permissions_survive(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\n")
    config.chmod(0o640)
    assert invoke("apply", write_result(tmp_path), config).exit_code == 0
    assert config.stat().st_mode & 0o777 == 0o640


def test_a_result_from_another_setup_is_refused_unless_forced(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    before = "model: resnet18\nbatch_size: 64\n"
    config.write_text(before)
    result = invoke("apply", write_result(tmp_path), config)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "model lenet (sweep) vs resnet18" in message
    assert "batch_size 256 (sweep) vs 64" in message
    assert "--force" in message and "Traceback" not in result.output
    assert config.read_text() == before
    forced = invoke("apply", write_result(tmp_path), config, "--force")
    assert forced.exit_code == 0 and "scheduler" in config.read_text()


def test_spec_forms_of_the_same_model_match(tmp_path: Path) -> None:
    result_file = write_result(tmp_path)
    document = json.loads(result_file.read_text())
    document["config"].update(model="torchvision:resnet18", dataset="fashion-mnist")
    result_file.write_text(json.dumps(document))
    config = tmp_path / "train.yaml"
    config.write_text("model: ResNet18\ndataset: FashionMNIST\n")
    assert invoke("apply", result_file, config).exit_code == 0


@pytest.mark.parametrize(
    ("setup", "arguments", "message"),
    [
        ("scheduler: cosine\n", [], "`scheduler` holds a str, not a mapping"),
        ("model: lenet\n", ["--schedule", "cosine"], "unknown schedule kind 'cosine'"),
        ("model: lenet\n", ["--key", "a..b"], "not a dotted path"),
        ("model: [lenet\n", [], "is not valid YAML"),
        ("- a\n- b\n", [], "holds a CommentedSeq at the top"),
    ],
)
def test_bad_configs_and_flags_are_refused_cleanly(
    tmp_path: Path, setup: str, arguments: list[str], message: str
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(setup)
    result = invoke("apply", write_result(tmp_path), config, *arguments)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert config.read_text() == setup


def test_bad_result_files_and_paths_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\n")
    cases = {
        tmp_path / "missing.json": "does not exist",
        tmp_path / "not-json.json": "is not readable JSON",
        tmp_path / "other.json": "has no `recommendation` block",
        write_result(tmp_path, max_lr=None): "no usable max_lr",
        tmp_path / "none.json": "holds no recommendation (the loss shows no clear descent)",
        tmp_path / "future.json": "has format_version 3; this lrfind reads versions 1 to 2",
    }
    (tmp_path / "good").mkdir()
    future = json.loads(write_result(tmp_path / "good").read_text())
    (tmp_path / "future.json").write_text(json.dumps({**future, "format_version": 3}))
    none = {
        **future,
        "recommendation": None,
        "no_recommendation": ["the loss shows no clear descent"],
    }
    (tmp_path / "none.json").write_text(json.dumps(none))
    (tmp_path / "not-json.json").write_text("{")
    (tmp_path / "other.json").write_text("[1, 2]")
    for result_file, message in cases.items():
        result = invoke("apply", result_file, config)
        assert result.exit_code == 2, (result_file, result.output)
        assert message in " ".join(result.output.split())
    for target, message in (("absent.yaml", "does not exist"), ("train.ini", "unknown extension")):
        result = invoke("apply", write_result(tmp_path), tmp_path / target)
        assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert config.read_text() == "model: lenet\n"


def test_a_failed_write_leaves_the_config_intact(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(YAML_CONFIG)

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    result = invoke("apply", write_result(tmp_path), config)
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert config.read_text() == YAML_CONFIG
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.json", "train.yaml"]


def test_an_empty_file_is_filled(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.toml", "c.json"):
        config = tmp_path / name
        config.write_text("")
        result = invoke("apply", write_result(tmp_path), config, "--force")
        assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "a.yaml").read_text())["scheduler"]["kind"] == "onecycle"
    assert tomllib.loads((tmp_path / "b.toml").read_text())["scheduler"]["max_lr"] == 0.2561
    assert json.loads((tmp_path / "c.json").read_text())["scheduler"]["pct_start"] == 0.3


def tiny_run(data_dir: Path, out: Path, *extra: str) -> Any:
    return invoke(
        "run", "--dataset", "mnist", "--data-dir", data_dir, "--no-download", "--batch-size",
        "32", "--steps", "40", "--start-lr", "1e-3", "--end-lr", "10", "--repeats", "1",
        "--device", "cpu", "--out", out, *extra,
    )  # fmt: skip


def test_emit_prints_only_the_snippet_on_stdout(mnist_dir: Path, tmp_path: Path) -> None:
    result = tiny_run(mnist_dir, tmp_path / "run", "--emit", "yaml", "--schedule", "triangular")
    assert result.exit_code == 0, result.output
    recommendation = json.loads((tmp_path / "run" / "result.json").read_text())["recommendation"]
    snippet = yaml.safe_load(result.stdout)  # the summary table went to stderr
    assert snippet == {"scheduler": recommendation["schedules"]["triangular"]}
    assert "lrfind recommendation" in result.stderr


def test_emitted_python_runs_and_builds_the_scheduler(mnist_dir: Path, tmp_path: Path) -> None:
    import torch

    result = tiny_run(mnist_dir, tmp_path / "run", "--emit", "python")
    assert result.exit_code == 0, result.output
    max_lr = json.loads((tmp_path / "run" / "result.json").read_text())["recommendation"][
        "schedules"
    ]["onecycle"]["max_lr"]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    namespace: dict[str, Any] = {"optimizer": optimizer}
    exec(result.stdout, namespace)
    assert isinstance(namespace["scheduler"], torch.optim.lr_scheduler.OneCycleLR)
    assert namespace["steps_per_epoch"] == 600 // 32
    assert optimizer.param_groups[0]["max_lr"] == pytest.approx(max_lr)


def test_bad_emit_format_is_refused_before_the_sweep(mnist_dir: Path, tmp_path: Path) -> None:
    result = tiny_run(mnist_dir, tmp_path / "run", "--emit", "xml")
    assert result.exit_code == 2
    assert "unknown --emit format 'xml'" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("recommendation", "arguments", "message"),
    [
        ({"max_lr": float("nan")}, [], "no usable max_lr (got nan)"),
        ({"base_lr": float("inf")}, [], "no usable base_lr (got inf)"),
        ({"base_lr": 0.5, "max_lr": 0.25}, [], "base_lr (0.5) is not below its max_lr (0.25)"),
        ({}, ["--epochs", "-5"], "--epochs must be a positive number of training epochs; got -5"),
        ({}, ["--epochs", "0"], "got 0"),
    ],
)
def test_apply_refuses_rates_and_lengths_that_mean_nothing(
    tmp_path: Path, recommendation: dict[str, float], arguments: list[str], message: str
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(YAML_CONFIG)
    before = config.read_bytes()
    result = invoke("apply", write_result(tmp_path, **recommendation), config, *arguments)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert config.read_bytes() == before


def test_dry_run_shows_long_lines_whole(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text('{"note": "' + "x" * 300 + '"}\n')
    result = runner.invoke(app, ["apply", str(write_result(tmp_path)), str(config), "--dry-run"],
                           terminal_width=60)  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("-") and "x" * 300 + '"}' in line for line in lines)
    assert any(line.startswith("+") and "x" * 300 + '", "scheduler"' in line for line in lines)


def test_apply_says_when_a_result_is_interrupted_or_of_low_confidence(tmp_path: Path) -> None:
    path = write_result(tmp_path)
    document = json.loads(path.read_text())
    document["interrupted"] = True
    document["recommendation"].update(confidence="low", confidence_reasons=["only 12 points"])
    path.write_text(json.dumps(document))
    config = tmp_path / "train.yaml"
    config.write_text(YAML_CONFIG)
    result = invoke("apply", path, config, "--dry-run")
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "comes from an interrupted run" in output
    assert "confidence is low (only 12 points)" in output


def test_apply_says_when_the_config_trains_longer_than_the_rates_were_scaled_for(
    tmp_path: Path,
) -> None:
    path = write_result(tmp_path)
    document = json.loads(path.read_text())
    horizon = {"training_steps": 1000, "source": "default", "peak_step": 300,
               "reading_step": 20, "optimizer_factor": 2.5}  # fmt: skip
    document["recommendation"]["horizon"] = horizon
    path.write_text(json.dumps(document))
    config = tmp_path / "train.yaml"
    for epochs, warned in ((3, True), (None, False)):
        config.write_text(YAML_CONFIG + ("" if epochs is None else f"epochs: {epochs}\n"))
        output = " ".join(invoke("apply", path, config, "--dry-run").output.split())
        assert ("scaled by 2.5 for a run of 1,000 steps" in output) is warned, output
        assert ("this config trains 702 (3 epochs of 234)" in output) is warned
    # A factor of about 1 (SGD, Adam) does not depend on the length: nothing to say.
    horizon["optimizer_factor"] = 1.02
    path.write_text(json.dumps(document))
    config.write_text(YAML_CONFIG + "epochs: 3\n")
    assert "scaled by" not in invoke("apply", path, config, "--dry-run").output


# ---------------------------------------------------------------------------------------------
# The edit touches only the target; the write keeps the file where it lives


def plan_text(tmp_path: Path, name: str, text: str | bytes, key: str = "scheduler") -> Any:
    """The change that writes a onecycle section under `key` into a file holding `text`."""
    from lrfind.outputs.configedit import plan_change, read_config

    config = tmp_path / name
    config.write_bytes(text.encode() if isinstance(text, str) else text)
    section = schedule_section("onecycle", Bounds(**RECOMMENDATION), 234)
    return plan_change(read_config(config), key, section)


@pytest.mark.parametrize(
    ("name", "text", "ending"),
    [
        ("a.yaml", "scheduler:\n  kind: triangular\n  base_lr: 0.1  # old\n\n# Data\ndata: x\n",
         "  pct_start: 0.3\n\n# Data\ndata: x\n"),
        ("b.toml", '[scheduler]\nkind = "triangular"\nbase_lr = 0.1\n\n# Data\n[data]\nx = 1\n',
         "pct_start = 0.3\n\n# Data\n[data]\nx = 1\n"),
    ],
)  # fmt: skip
def test_the_comment_that_closes_a_section_stays_after_it(
    tmp_path: Path, name: str, text: str, ending: str
) -> None:
    """The libraries attach `# Data` to the section before it: new keys would go after it,
    and removing the last key would remove it."""
    assert plan_text(tmp_path, name, text).after.endswith(ending)


def test_the_diff_marks_a_last_line_without_a_line_feed(tmp_path: Path) -> None:
    diff = plan_text(tmp_path, "train.yaml", "model: lenet").diff()
    assert "-model: lenet\n\\ No newline at end of file\n+model: lenet\n+scheduler:\n" in diff


def test_line_endings_that_mix_or_stand_alone_are_refused(tmp_path: Path) -> None:
    from lrfind.errors import ConfigError

    for text in ("a: 1\rb: 2\r", "a: 1\r\nb: 2\n"):
        with pytest.raises(ConfigError, match="mixes line endings"):
            plan_text(tmp_path, "train.yaml", text)


def test_json_splicing_drops_stale_members_and_keeps_the_separators_of_the_rest() -> None:
    from lrfind.outputs.jsonsplice import splice_json

    text = '{"a": 1,\n\n "s": {"base_lr": 1e-2,  "note": "\\u00e9" ,  "keep": 2, "gamma": 3}}'
    spliced = splice_json(text, ["s"], {"kind": "onecycle"}, ["base_lr", "gamma"])
    assert spliced == '{"a": 1,\n\n "s": {"note": "\\u00e9" ,  "keep": 2, "kind": "onecycle"}}'
    assert (
        splice_json('{"s": null}', ["s"], {"kind": "onecycle"}, []) == '{"s": {"kind": "onecycle"}}'
    )


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(
    document=st.dictionaries(st.text('abé"\\/', min_size=1, max_size=3), JSON_VALUES, max_size=4),
    indent=st.sampled_from([None, 1, 4, "\t"]),
    ensure_ascii=st.booleans(),
)
def test_json_splicing_changes_only_the_target_object(
    document: dict[str, Any], indent: Any, ensure_ascii: bool
) -> None:
    """Whatever the document and its formatting, the result reads as the document with the
    section written, and every byte outside the target object stays as it was."""
    from lrfind.outputs.jsonsplice import splice_json

    document = {**document, "train": {"scheduler": {"kind": "triangular", "base_lr": 1.5}}}
    text = json.dumps(document, indent=indent, ensure_ascii=ensure_ascii)
    section = {"kind": "onecycle", "max_lr": 0.25, "milestones": [0.5, 0.75]}
    spliced = splice_json(text, ["train", "scheduler"], section, ["base_lr"])
    assert json.loads(spliced) == {**json.loads(text), "train": {"scheduler": section}}
    opening = text.rindex("{", 0, text.rindex('"kind"'))
    closing = text.index("}", opening)
    assert spliced[: opening + 1] == text[: opening + 1] and spliced.endswith(text[closing:])
    fresh = splice_json(text, ["fresh", "scheduler"], section, [])
    assert json.loads(fresh) == {**json.loads(text), "fresh": {"scheduler": section}}
    assert fresh.startswith(text[: text.rindex("}")].rstrip())


def test_lines_the_library_writes_its_own_way_are_not_rewritten_by_the_edit() -> None:
    from lrfind.errors import ConfigError
    from lrfind.outputs.configedit import carry_edit

    original = "%YAML 1.2\n---\nmodel:    lenet\nb: 1\n"
    carried = carry_edit(original, "model: lenet\nb: 1\n", "model: lenet\nb: 2\n", Path("x"), "b")
    assert carried == "%YAML 1.2\n---\nmodel:    lenet\nb: 2\n"
    # three lines of the file are two of the library's: an insertion between them has no place
    with pytest.raises(ConfigError, match="without also rewriting lines near `b`"):
        carry_edit("a1\na2\na3\n", "a\nb\n", "a\nnew\nb\n", Path("train.yaml"), "scheduler")


def test_the_safety_net_refuses_an_edit_that_lands_in_a_shared_anchor() -> None:
    """Without the alias check, ruamel would write into the anchor: the re-read document
    shows the other section changed, and the edit is refused."""
    from lrfind.errors import ConfigError
    from lrfind.outputs.configedit import EDITORS, check_only_target_changed

    before = "shared: &s\n  kind: triangular\nscheduler: *s\n"
    after = "shared: &s\n  kind: onecycle\nscheduler: *s\n"
    with pytest.raises(ConfigError, match=r"would also change `shared.kind`"):
        check_only_target_changed(
            EDITORS["yaml"].plain, before, after, ["scheduler"], {"kind": "onecycle"}, Path("x")
        )


def failing_writes(monkeypatch: pytest.MonkeyPatch, failing: set[int]) -> None:
    """os.pwrite fails with a full disk on the calls numbered in `failing` (0 is the first)."""
    real_pwrite, calls = os.pwrite, []

    def pwrite(descriptor: int, data: bytes, offset: int) -> int:
        calls.append(descriptor)
        if len(calls) - 1 in failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(descriptor, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


def test_a_write_that_fails_after_the_backup_puts_the_file_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(YAML_CONFIG)
    failing_writes(monkeypatch, {1})  # 0: the backup, 1: the file, 2: putting it back
    result = invoke("apply", write_result(tmp_path), config)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No space left on device. It was left as it was" in " ".join(result.output.split())
    assert config.read_text() == YAML_CONFIG
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.json", "train.yaml"]


def test_when_putting_the_file_back_fails_too_the_backup_is_kept_and_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(YAML_CONFIG)
    failing_writes(monkeypatch, {1, 2})
    result = invoke("apply", write_result(tmp_path), config)
    backup = tmp_path / ".train.yaml.lrfind-backup"
    assert result.exit_code == 1
    assert f"They are in {backup}: copy that file over {config}" in "".join(
        result.output.split("\n")
    )
    assert backup.read_text() == YAML_CONFIG


def test_a_file_changed_after_planning_is_not_written(tmp_path: Path) -> None:
    from lrfind.errors import OutputError

    change = plan_text(tmp_path, "train.yaml", "model: lenet\n")
    (tmp_path / "train.yaml").write_text("model: resnet18\n")  # another editor saved meanwhile
    with pytest.raises(OutputError, match="changed while lrfind prepared its edit"):
        change.write()
    assert (tmp_path / "train.yaml").read_text() == "model: resnet18\n"
    assert list(tmp_path.glob(".*backup")) == []


# ---------------------------------------------------------------------------------------------
# Training configs of the usual shapes (lrfind.settings.layouts)

LAYOUTS = {
    "flat": "model: lenet\noptimizer: sgd\nmomentum: 0.0\nbatch_size: {batch}\nepochs: 4\n",
    "name": "model: lenet\noptimizer:\n  name: {optimizer}\n  lr: 0.1\n  momentum: 0.0\n"
    "data:\n  batch_size: {batch}\nepochs: 4\n",
    "type": "model:\n  type: LeNet\noptimizer:\n  type: {optimizer}\n  lr: 0.1\n"
    "dataloader:\n  batch_size: {batch}\nepochs: 4\n",
    "hydra": "model:\n  _target_: my_project.models.lenet\n  num_classes: 10\n"
    "optimizer:\n  _target_: torch.optim.{optimizer}\n  _partial_: true\n  lr: 0.1\n"
    "train:\n  batch_size: {batch}\n  epochs: 4\n",
    "lightning": "model:\n  class_path: my_project.LeNet\noptimizer:\n"
    "  class_path: torch.optim.{optimizer}\n  init_args:\n    lr: 0.1\n    momentum: 0.0\n"
    "data:\n  batch_size: {batch}\ntrainer:\n  max_epochs: 4\n",
    "mmengine": "model:\n  type: LeNet\noptim_wrapper:\n  optimizer:\n    type: {optimizer}\n"
    "    lr: 0.1\n    momentum: 0.0\ntrain_dataloader:\n  batch_size: {batch}\n"
    "train_cfg:\n  max_epochs: 4\n",
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_usual_config_layouts_are_read_for_the_setup_and_the_length(
    tmp_path: Path, layout: str
) -> None:
    from lrfind.settings.layouts import read_setup

    text = LAYOUTS[layout].format(optimizer="SGD", batch=256)
    setup = read_setup(yaml.safe_load(text))
    assert (setup["optimizer"].lower(), setup["batch_size"], setup["epochs"]) == ("sgd", 256, 4)
    assert "lenet" in setup["model"].lower()
    config = tmp_path / "train.yaml"
    config.write_text(text)
    result = invoke("apply", write_result(tmp_path), config, "--schedule", "triangular")
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(config.read_text())["scheduler"]
    assert written["step_size_up"] == 234 * 4 // 2  # whole cycles in the 4 epochs it read


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "flat"])
def test_usual_config_layouts_from_another_setup_are_refused(tmp_path: Path, layout: str) -> None:
    config = tmp_path / "train.yaml"
    text = LAYOUTS[layout].format(optimizer="Adam", batch=128)
    before = "".join(line for line in text.splitlines(True) if "momentum" not in line)
    config.write_text(before)
    result = invoke("apply", write_result(tmp_path), config)
    message = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "optimizer sgd (sweep) vs adam" in message.lower()
    assert "batch_size 256 (sweep) vs 128" in message, message
    assert config.read_text() == before


def test_an_optimizer_mapping_with_its_rate_no_longer_reads_as_another_optimizer(
    tmp_path: Path,
) -> None:
    """The case of issue 15: the whole mapping was compared with `sgd`."""
    config = tmp_path / "train.yaml"
    config.write_text("optimizer: {name: sgd, lr: 0.1}\nbatch_size: 256\n")
    result = invoke("apply", write_result(tmp_path), config)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(config.read_text())["optimizer"] == {"name": "sgd", "lr": 0.1}


def test_momentum_and_optimizer_arguments_in_the_mapping_are_compared(tmp_path: Path) -> None:
    result_file = write_result(tmp_path)
    document = json.loads(result_file.read_text())
    document["config"].update(optimizer="rmsprop", momentum=0.0, optimizer_args={"alpha": 0.9})
    result_file.write_text(json.dumps(document))
    config = tmp_path / "train.yaml"
    config.write_text("optimizer:\n  name: RMSprop\n  alpha: 0.99\n  momentum: 0.9\n")
    message = " ".join(invoke("apply", result_file, config).output.split())
    assert "momentum 0.0 (sweep) vs 0.9" in message
    assert "optimizer argument alpha 0.9 (sweep) vs 0.99" in message
    config.write_text("optimizer:\n  name: RMSprop\n  alpha: 0.9\n  centered: true\n")
    assert invoke("apply", result_file, config).exit_code == 0  # centered: not in the sweep's


RATE_KEPT_IN_THE_OPTIMIZER = [
    ("train.yaml", "optimizer:\n  name: sgd\n  lr: 0.1  # by hand\nepochs: 5\n", yaml.safe_load),
    ("train.toml", '[optimizer]\nname = "sgd"\nlr = 0.1\n\n[data]\nbatch_size = 256\n',
     tomllib.loads),
    ("train.json", '{\n  "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1},\n'
     '  "epochs": 5\n}\n', json.loads),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "read"), RATE_KEPT_IN_THE_OPTIMIZER)
def test_the_rate_goes_where_the_config_keeps_it(
    tmp_path: Path, name: str, text: str, read: Any
) -> None:
    config = tmp_path / name
    config.write_text(text)
    result = invoke("apply", write_result(tmp_path), config, "--schedule", "constant")
    assert result.exit_code == 0, result.output
    assert "its lr into optimizer.lr" in " ".join(result.output.split())
    written = read(config.read_text())
    assert written["optimizer"]["lr"] == RECOMMENDATION["lr"]
    assert written["scheduler"] == {"kind": "constant"}
    after = config.read_text().splitlines()
    removed = [line[2:] for line in difflib.ndiff(text.splitlines(), after) if line[:2] == "- "]
    assert "0.1" in removed[0]  # the old rate's line, now holding the new one
    assert str(RECOMMENDATION["lr"]) in after[text.splitlines().index(removed[0])]
    assert removed[1:] in ([], ['  "epochs": 5'])  # JSON: the last member gains a comma


def test_warmup_peak_goes_into_lightnings_init_args_beside_the_schedule(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(
        "fit:\n  optimizer:\n    class_path: torch.optim.SGD\n    init_args:\n      lr: 0.1\n"
        "  epochs: 6\n"
    )
    result = invoke(
        "apply", write_result(tmp_path), config, "--schedule", "warmup-cosine",
        "--key", "fit.scheduler",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    fit = yaml.safe_load(config.read_text())["fit"]
    assert fit["optimizer"]["init_args"]["lr"] == RECOMMENDATION["max_lr"]  # the warm-up's peak
    assert "lr" not in fit["scheduler"] and fit["scheduler"]["kind"] == "warmup-cosine"


def test_lrfind_train_reads_the_rate_back_from_the_optimizer_mapping(tmp_path: Path) -> None:
    from lrfind.commands.train import _sections_from_config
    from lrfind.settings.options import TrainConfig, load_config_file, merge_options

    config = tmp_path / "train.yaml"
    config.write_text("optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\nepochs: 3\n")
    applied = invoke("apply", write_result(tmp_path), config, "--schedule", "warmup-cosine")
    assert applied.exit_code == 0, applied.output
    settings = merge_options(TrainConfig, load_config_file(config), {}, str(config))
    assert (settings.optimizer, settings.momentum) == ("sgd", 0.9)
    assert settings.lr == RECOMMENDATION["max_lr"]  # the warm-up's peak, from optimizer.lr
    assert settings.scheduler is not None and "lr" not in settings.scheduler
    sections = _sections_from_config(settings, ["warmup-cosine"])
    expected = schedule_section("warmup-cosine", Bounds(**RECOMMENDATION), 234, 3)
    assert sections["warmup-cosine"] == expected


@pytest.mark.parametrize(
    ("criterion", "same"),
    [
        ("torch.nn.CrossEntropyLoss", True),
        ("torch.nn.MSELoss", False),
    ],
)
def test_a_loss_named_by_its_torch_class_matches_lrfinds_name(
    tmp_path: Path, criterion: str, same: bool
) -> None:
    result_file = write_result(tmp_path)
    document = json.loads(result_file.read_text())
    document["config"]["loss"] = "cross-entropy"
    result_file.write_text(json.dumps(document))
    config = tmp_path / "train.yaml"
    config.write_text(f"criterion:\n  _target_: {criterion}\n")
    result = invoke("apply", result_file, config)
    assert (result.exit_code == 0) is same, result.output
    if not same:
        assert "loss cross-entropy (sweep) vs torch.nn:MSELoss" in " ".join(result.output.split())
