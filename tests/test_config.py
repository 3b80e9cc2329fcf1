"""Options: defaults < config file < flags, and a clear message for every bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfind.core.methods import DEFAULT_METHOD
from lrfind.errors import ConfigError
from lrfind.settings.options import RunConfig, load_config_file, resolve_config


def test_defaults_are_the_documented_ones() -> None:
    config = resolve_config()
    assert (config.model, config.dataset, config.optimizer) == ("lenet", "fashion-mnist", "sgd")
    assert (config.start_lr, config.end_lr, config.steps) == (1e-7, 10.0, 100)
    assert (config.batch_size, config.momentum, config.weight_decay) == (256, 0.0, 0.0)
    assert (config.mode, config.device, config.method) == ("exp", "auto", DEFAULT_METHOD)
    assert (config.repeats, config.refine, config.auto_range, config.val_batches) == (
        11,
        True,
        False,
        0,
    )


def test_flags_override_the_file_which_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("steps: 50\nbatch_size: 64\nstart-lr: 1e-6\n")
    config = resolve_config(load_config_file(path), {"steps": 80})
    assert config.steps == 80  # flag wins
    assert config.batch_size == 64  # file wins over default
    assert config.start_lr == 1e-6  # YAML reads 1e-6 as text; it is taken as the number
    assert config.end_lr == 10.0  # default


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("sweep.toml", 'steps = 50\noptimizer = "adam"\n'),
        ("sweep.json", '{"steps": 50, "optimizer": "adam"}'),
        ("sweep.yml", "steps: 50\noptimizer: adam\n"),
    ],
)
def test_every_file_format_loads(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    config = resolve_config(load_config_file(path))
    assert (config.steps, config.optimizer) == (50, "adam")


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("stpes: 50\n")
    with pytest.raises(ConfigError, match=r"unknown option 'stpes'.*Did you mean 'steps'"):
        resolve_config(load_config_file(path), source=str(path))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr must be below end_lr; got 1 >= 0.1"),
        ({"start_lr": 0.0}, "start_lr must be a positive, finite number; got 0"),
        ({"end_lr": -3.0}, "end_lr must be a positive"),
        ({"steps": 9}, "steps must be between 10 and 1000000; got 9"),
        ({"batch_size": 0}, "batch_size must be a positive integer; got 0"),
        ({"momentum": 1.5}, "momentum must be in"),
        ({"weight_decay": -1.0}, "weight_decay must be zero or positive"),
        ({"optimizer": "LBFGS"}, "optimizer 'LBFGS' cannot run a range test: it needs a closure"),
        ({"optimizer_args": {"lr": 0.1}}, "optimizer_args may not set 'lr'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"mode": "cos"}, "unknown mode 'cos'"),
        ({"start_lr": 1e-300, "end_lr": 1e300}, "spans more decades than a float can hold"),
        ({"method": "magic"}, "unknown method 'magic'"),
        ({"smoothing": 1.0}, "smoothing is an EMA factor"),
        ({"divergence_factor": 0.5}, "divergence_factor must be a finite number above 1"),
        ({"seed": -1}, "seed must be between 0 and"),
        ({"steps": "many"}, "steps in flags must be an integer; got 'many'"),
        ({"steps": "1.5"}, "steps in flags must be an integer; got '1.5'"),
        ({"steps": True}, "steps in flags must be an integer"),
        ({"start_lr": "fast"}, "start_lr in flags must be a number; got 'fast'"),
        ({"download": "yes"}, "download in flags must be true or false"),
        ({"start_lr": None}, "start_lr in flags is empty"),
        ({"repeats": 101}, "repeats must be between 0 and 100; got 101"),
        ({"val_batches": 5000}, "val_batches must be between 0 and 1000; got 5000"),
        ({"refine": "no"}, "refine in flags must be true or false"),
    ],
)
def test_bad_values_name_the_value_and_the_fix(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_config(None, values)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", '{"steps": 50,,}', r"not valid JSON: .* line 1, column 14"),
        ("bad.toml", "steps = = 5", "not valid TOML"),
        ("bad.yaml", "steps: [1, 2\n", "not valid YAML at line"),
        ("tag.yaml", "steps: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("list.yaml", "- 1\n- 2\n", "must hold a mapping .* holds a list"),
        (
            "bomb.yaml",
            "a: &a [1, 1, 1, 1]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
            r"uses a YAML alias \(\*a\) at line 2",
        ),
        ("sweep.ini", "steps=5", "unknown extension '.ini'"),
    ],
)
def test_unreadable_files_are_explained(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "absent.yaml")


def test_empty_yaml_file_means_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert resolve_config(load_config_file(path)) == RunConfig()


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["steps", "start_lr", "end_lr", "batch_size", "optimizer", "download",
                         "seed", "momentum", "bogus", "data_dir", "out", "repeats", "refine",
                         "val_batches", "method", "auto_range"]),
        st.one_of(st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(allow_nan=True),
                  st.text(max_size=8), st.lists(st.integers(), max_size=2)),
    )
)  # fmt: skip
def test_random_documents_give_a_config_or_a_config_error(document: dict[str, Any]) -> None:
    try:
        resolve_config(document)
    except ConfigError as error:
        assert str(error)


@settings(max_examples=150, deadline=None)
@given(
    suffix=st.sampled_from([".yaml", ".toml", ".json"]),
    text=st.one_of(
        st.text(max_size=80),
        st.lists(
            st.tuples(st.sampled_from(["steps", "end_lr", "method", "x", "- 1", "[a", "!!tag"]),
                      st.sampled_from([":", " =", ": &a", ": *a", ":: ", ""]),
                      st.text(alphabet="0123456789.e-[]{}'\"&*!: ab", max_size=10)),
            max_size=4,
        ).map(lambda rows: "\n".join(f"{key}{sep} {value}" for key, sep, value in rows)),
    ),
)  # fmt: skip
def test_random_files_give_a_config_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, suffix: str, text: str
) -> None:
    path = tmp_path_factory.mktemp("random") / f"config{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        resolve_config(load_config_file(path), source=str(path))
    except ConfigError as error:
        assert str(error)


def test_shipped_example_configs_are_valid() -> None:
    folder = Path(__file__).resolve().parent.parent / "configs"
    examples = sorted(folder.glob("sweep-*"))
    assert examples, "configs/ should ship example sweep configs"
    for path in examples:
        config = resolve_config(load_config_file(path), source=str(path))
        assert config.model in ("lenet", "mlp")


def test_yaml_option_files_mean_what_yaml_1_1_readers_read(tmp_path: Path) -> None:
    """Option files are read as PyYAML and most training scripts read them (YAML 1.1)."""
    path = tmp_path / "options.yaml"
    path.write_text("download: no\nquiet: yes\nseed: 010\nstart_lr: 1e-6\n")
    config = resolve_config(load_config_file(path))
    assert (config.download, config.quiet, config.seed, config.start_lr) == (False, True, 8, 1e-6)


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "options.yaml"
    path.write_text("steps: 20\nsteps: 30\n")
    with pytest.raises(ConfigError, match=r'line 2, column 1: found duplicate key "steps"'):
        load_config_file(path)


def test_an_option_given_twice_in_one_file_under_two_spellings_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text("start_lr: 1e-3\nstart-lr: 1e-4\n")
    with pytest.raises(
        ConfigError, match=r"start_lr is given twice in .*'start_lr' and 'start-lr'"
    ):
        resolve_config(load_config_file(config), None, source=str(config))
    # a flag over a file's value is no repetition: the flag wins
    settings = resolve_config({"start_lr": 1e-3}, {"start_lr": "1e-4"})
    assert settings.start_lr == 1e-4
