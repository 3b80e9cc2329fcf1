"""Reading YAML, TOML and JSON documents: the one place lrfind parses a config file.

    from lrfind.settings.formats import parse_document
    document = parse_document(text, Path("train.yaml"), "training config", round_trip=True)

Option files (`--config`) are read as plain values; training configs that `lrfind apply`
edits are read round-trip (ruamel.yaml, tomlkit), so comments, order and quoting survive.
Every failure is a `ConfigError` that names the file, the place and what is wrong.

A file cut short (a program still writing it, a disk that filled) is never read as data: each
format's reader tells an end that comes too early from other damage, and says so in one
wording (`cut_short`). JSON, YAML and TOML documents are checked here, curves in
lrfind.outputs.curves (a last row without its line break) and gzip files by their end marker.
"""

from __future__ import annotations

import json
import re
import tomllib
import warnings
from pathlib import Path
from typing import Any

from lrfind.errors import ConfigError
from lrfind.settings.paths import os_refusal

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}


def format_of(path: Path, what: str) -> str:
    """yaml, toml or json, from the file's extension."""
    suffix = Path(path).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise ConfigError(
            f"{what} {path} has an unknown extension {suffix!r}; use .yaml, .yml, .toml or .json."
        )
    return fmt


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`, or a ConfigError saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(os_refusal(error, what, path)) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"cannot read {what} {path}: {error}.") from None


def cut_short(subject: str, how: str) -> str:
    """The one message for a file that ends too early: `subject` names the file, `how` says
    where it stops."""
    return (
        f"{subject}: {how}, as a file does when it was cut short while it was written (a "
        "program still writing it, a disk that filled). It was not read. Wait for the program "
        "that writes it to finish, or write it again whole, and run again."
    )


def cut_document(path: Path, what: str, fmt: str, detail: str = "") -> str:
    """`cut_short` for a JSON, YAML or TOML document; `detail` is what its parser said."""
    said = f" ({detail.strip().splitlines()[0]})" if detail.strip() else ""
    return cut_short(f"{what} {path} is not readable {fmt}", f"it ends inside the document{said}")


def json_ends_early(text: str, error: json.JSONDecodeError) -> bool:
    """Whether JSON failed because the text stopped: the parser met the end while a value was
    open (a string runs to the end when it is unterminated)."""
    return error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")


def parse_document(text: str, path: Path, what: str, *, round_trip: bool = False) -> Any:
    """The document `text` holds, in the format of `path`'s extension.

    `round_trip` keeps what an editor needs to write the file back unchanged elsewhere
    (ruamel's and tomlkit's own mapping types); plain reads give dicts, lists and scalars.
    """
    fmt = format_of(path, what)
    try:
        if fmt == "yaml":
            return parse_yaml(text, path, what, round_trip=round_trip)
        if fmt == "toml":
            return parse_toml(text, path, what, round_trip=round_trip)
        return parse_json(text, path, what)
    except RecursionError:
        raise ConfigError(
            f"{what} {path} nests its values too deeply to read. Options are flat names and "
            "values (a schedule is one mapping); write them out without deep nesting."
        ) from None


def parse_json(text: str, path: Path, what: str) -> Any:
    """JSON, or a ConfigError naming `what` file, the line and the column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        if json_ends_early(text, error):
            raise ConfigError(cut_document(path, what, "JSON")) from None
        raise ConfigError(
            f"{what} {path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}."
        ) from None


def parse_toml(text: str, path: Path, what: str, *, round_trip: bool = False) -> Any:
    if round_trip:
        import tomlkit
        from tomlkit.exceptions import ParseError

        try:
            return tomlkit.parse(text)
        except ParseError as error:
            raise _toml_error(text, path, what, error) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _toml_error(text, path, what, error) from None


def _toml_error(text: str, path: Path, what: str, error: Exception) -> ConfigError:
    # tomlkit gives the place as attributes; tomllib says it in the message
    found = re.search(r"at line (\d+), column (\d+)", str(error))
    line = getattr(error, "line", None) or (int(found.group(1)) if found else None)
    column = getattr(error, "col", None) or (int(found.group(2)) if found else None)
    if _ends_early(text, str(error), line, column):
        return ConfigError(cut_document(path, what, "TOML", str(error)))
    return ConfigError(f"{what} {path} is not valid TOML: {error}.")


def _ends_early(text: str, message: str, line: int | None, column: int | None) -> bool:
    """Whether a YAML or TOML parser failed because `text` stops in the middle of its last
    line: it says it met the end (tomlkit names it `'\\x00'`), or it failed at the end of
    that line (1-based `line` and `column`)."""
    if text.endswith("\n"):
        return False
    ends = ("end of document", "end of file", "<stream end>", "end of stream", "'\\x00'")
    last = text.rsplit("\n", 1)[-1]
    at_end = line == text.count("\n") + 1 and column is not None and column >= len(last)
    return at_end or any(end in message.lower() for end in ends)


def yaml_parser(*, round_trip: bool) -> Any:
    """ruamel.yaml, round-trip (keeps comments and quotes, never re-wraps lines) or plain.

    Plain reads follow YAML 1.1, as PyYAML and most training scripts do, so an option file
    means what it always meant (`download: yes` is true, `seed: 010` is 8)."""
    from ruamel.yaml import YAML

    if not round_trip:
        yaml = YAML(typ="safe", pure=True)
        yaml.version = (1, 1)
        return yaml
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the user's long lines
    return yaml


def parse_yaml(text: str, path: Path, what: str, *, round_trip: bool = False) -> Any:
    """Plain reads (YAML 1.1) refuse anchors and aliases, which can expand into huge
    documents, and duplicate keys; round-trip reads (YAML 1.2, as ruamel edits) keep what the
    file has."""
    from ruamel.yaml import YAMLError
    from ruamel.yaml.error import MantissaNoDotYAML1_1Warning, ReusedAnchorWarning
    from ruamel.yaml.events import AliasEvent

    yaml = yaml_parser(round_trip=round_trip)
    try:
        if not round_trip:
            for event in yaml.parse(text):
                if isinstance(event, AliasEvent):
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise ConfigError(
                        f"{what} {path} uses a YAML alias (*{event.anchor}) at line {line}. "
                        "Anchors and aliases are not accepted in option files (they can "
                        "expand into huge documents); write the value out."
                    )
        with warnings.catch_warnings():  # `1e-7` is a float; a reused anchor is harmless
            warnings.simplefilter("ignore", MantissaNoDotYAML1_1Warning)
            warnings.simplefilter("ignore", ReusedAnchorWarning)
            return yaml.load(text)
    except YAMLError as error:
        where = ""
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
        place = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        if _ends_early(text, str(error), *place):
            raise ConfigError(cut_document(path, what, "YAML", problem)) from None
        fix = (
            "Fix the file and run again."
            if round_trip
            else "Option files take plain YAML: each key once, no custom tags."
        )
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {problem}. {fix}") from None
