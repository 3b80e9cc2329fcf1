"""Writing schedule parameters into a training config, leaving the rest of the file as it was.

    lrfind apply runs/lenet/result.json train.yaml --schedule onecycle --dry-run

YAML goes through ruamel.yaml and TOML through tomlkit, both round-trip parsers, so comments,
key order, quoting and indentation survive; JSON keeps its key order and indentation. Only the
target mapping (`--key`, dotted) changes: it is created when missing, stale schedule keys of
another kind are removed, and other keys in it are kept. The new text is written atomically.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrfind.core.schedules import SCHEDULE_KEYS
from lrfind.errors import ConfigError
from lrfind.outputs.files import write_atomic
from lrfind.settings.formats import format_of, parse_document, read_text, yaml_parser

DEFAULT_KEY = "scheduler"
WHAT = "training config"


@dataclass(frozen=True)
class ConfigChange:
    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"{self.path} (before)",
                tofile=f"{self.path} (after)",
            )
        )

    def write(self) -> None:
        write_atomic(self.path, self.after.encode("utf-8"))


def split_key(key: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not part.strip() for part in parts):
        raise ConfigError(
            f"--key {key!r} is not a dotted path of names; use e.g. --key scheduler or "
            "--key train.scheduler."
        )
    return parts


def read_config(path: Path) -> tuple[str, Any]:
    """The text of the training config at `path` and its round-trip document."""
    path = Path(path)
    fmt = format_of(path, WHAT)
    if not path.is_file():
        raise ConfigError(
            f"training config {path} does not exist. Check the path, or create the file "
            "first (an empty file is fine) to have lrfind fill it."
        )
    text = read_text(path, WHAT)
    return text, EDITORS[fmt].parse(text, path)


def plan_change(
    path: Path, before: str, document: Any, key: str, section: Mapping[str, Any]
) -> ConfigChange:
    """`document` (read from `path` by `read_config`) with `section` written under `key`, and
    its new text; nothing is written yet. `document` is edited in place."""
    editor = EDITORS[format_of(path, WHAT)]
    set_section(document, split_key(key), section, editor.new_mapping, path)
    return ConfigChange(Path(path), before, editor.render(document, before))


def render_snippet(section: Mapping[str, Any], fmt: str, key: str = DEFAULT_KEY) -> str:
    """`section` under `key` as a fresh document in `fmt`: what `lrfind run --emit` prints."""
    editor = EDITORS[fmt]
    document = editor.parse("", Path(f"snippet.{fmt}"))
    set_section(document, split_key(key), section, editor.new_mapping, Path("snippet"))
    return editor.render(document, "")


def set_section(
    document: MutableMapping[str, Any],
    keys: list[str],
    section: Mapping[str, Any],
    new_mapping: Callable[[], MutableMapping[str, Any]],
    path: Path,
) -> None:
    node = document
    for depth, key in enumerate(keys):
        child = node.get(key)
        if child is None:
            node[key] = new_mapping()
            child = node[key]
        elif not isinstance(child, MutableMapping):
            where = ".".join(keys[: depth + 1])
            raise ConfigError(
                f"{path}: `{where}` holds a {type(child).__name__}, not a mapping, so the "
                f"schedule cannot be written under it. Pass another --key, or remove `{where}`."
            )
        node = child
    for stale in [name for name in node if name in SCHEDULE_KEYS and name not in section]:
        del node[stale]
    for name, value in section.items():
        node[name] = value


def lookup(document: Mapping[str, Any], keys: list[str]) -> Any:
    node: Any = document
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


# ---------------------------------------------------------------------------------------------
# One editor per format


@dataclass(frozen=True)
class Editor:
    parse: Callable[[str, Path], Any]
    render: Callable[[Any, str], str]
    new_mapping: Callable[[], MutableMapping[str, Any]]


def _root_mapping(document: Any, path: Path, empty: Callable[[], Any]) -> Any:
    if document is None:
        return empty()
    if not isinstance(document, MutableMapping):
        raise ConfigError(
            f"training config {path} holds a {type(document).__name__} at the top, not a "
            "mapping of keys to values; lrfind can only write into a mapping."
        )
    return document


def _parse_yaml(text: str, path: Path) -> Any:
    from ruamel.yaml.comments import CommentedMap

    return _root_mapping(parse_document(text, path, WHAT, round_trip=True), path, CommentedMap)


def _yaml_writer() -> Any:
    yaml = yaml_parser(round_trip=True)

    def represent_float(representer: Any, value: float) -> Any:
        # YAML 1.1 readers (PyYAML) read `1e-05` as text; `1.0e-05` is a float to both.
        text = repr(value)
        if "e" in text and "." not in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return representer.represent_scalar("tag:yaml.org,2002:float", text)

    yaml.representer.add_representer(float, represent_float)
    return yaml


def _render_yaml(document: Any, original: str) -> str:
    from ruamel.yaml.util import load_yaml_guess_indent

    yaml = _yaml_writer()
    if original.strip():
        _, indent, sequence_offset = load_yaml_guess_indent(original)
        yaml.indent(mapping=indent or 2, sequence=indent or 2, offset=sequence_offset or 0)
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def _new_yaml_mapping() -> MutableMapping[str, Any]:
    from ruamel.yaml.comments import CommentedMap

    return CommentedMap()


def _parse_toml(text: str, path: Path) -> Any:
    return parse_document(text, path, WHAT, round_trip=True)


def _render_toml(document: Any, original: str) -> str:
    import tomlkit

    return tomlkit.dumps(document)


def _new_toml_mapping() -> MutableMapping[str, Any]:
    import tomlkit

    return tomlkit.table()


def _parse_json(text: str, path: Path) -> Any:
    if not text.strip():
        return {}
    return _root_mapping(parse_document(text, path, WHAT), path, dict)


def _render_json(document: Any, original: str) -> str:
    """Same indentation as the original (compact when it was on one line), same final newline."""
    lines = original.splitlines()
    indent: str | int | None = 2 if not original.strip() else None
    for line in lines[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            indent = line[: len(line) - len(stripped)]
            break
    newline = "\n" if original.endswith("\n") or not original else ""
    return json.dumps(document, indent=indent, ensure_ascii=False) + newline


EDITORS = {
    "yaml": Editor(_parse_yaml, _render_yaml, _new_yaml_mapping),
    "toml": Editor(_parse_toml, _render_toml, _new_toml_mapping),
    "json": Editor(_parse_json, _render_json, dict),
}
