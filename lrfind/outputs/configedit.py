"""Writing schedule parameters into a training config, leaving the rest of the file as it was.

    lrfind apply runs/lenet/result.json train.yaml --schedule onecycle --dry-run

Only the target mapping (`--key`, dotted) changes: it is created when missing, stale schedule
keys of another kind are removed, and other keys in it are kept. The promise is about bytes:
the file written differs from the file read only in the lines the diff shows, and those lines
hold the target mapping (or the line before it, which may gain a comma or a line break).

- The file is read as bytes (`configfile`) and edited as such: a byte-order mark and CRLF
  line endings are taken off before parsing and put back on every line after, so new lines
  match old ones.
- YAML goes through ruamel.yaml and TOML through tomlkit, round-trip libraries that keep
  comments and order. They still write some lines their own way (aligned values, `%YAML`
  lines), so only the lines their edit changes are carried onto the user's own lines
  (`carry_edit`). JSON is edited by splicing the target object's text (`jsonsplice`), so
  numbers such as `1e-4`, escapes and one-line arrays stay as written.
- A YAML target that is shared through an anchor, alias or merge key is refused: writing it
  would change every place that uses it.
- Before anything is written, the new text is parsed again and must hold the old document with
  only the target changed (`check_only_target_changed`), whatever the format or the cause.
- The file is written where it lives: links are followed and it is rewritten in place behind a
  backup (`replace_in_place`), so hard links, mode and owner survive. A file that cannot be
  written that way (read-only, in a read-only folder, not a regular file) is refused first
  (`configfile`).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrfind.core.schedules import SCHEDULE_KEYS
from lrfind.errors import ConfigError
from lrfind.outputs.configfile import Layout, check_writable, read_exact, resolve_config
from lrfind.outputs.files import replace_in_place
from lrfind.outputs.jsonsplice import splice_json
from lrfind.settings.formats import format_of, parse_document, yaml_parser
from lrfind.settings.layouts import NAME_KEYS, lookup

DEFAULT_KEY = "scheduler"
WHAT = "training config"
# The parameters of torch's schedulers (torch.optim.lr_scheduler; tests/test_hostile_documents.py
# holds this to the installed torch). A schedule section of a kind lrfind does not write
# (a plateau schedule's mode, patience, factor) holds them; a key no scheduler takes is the
# user's own, and an edit keeps it.
TORCH_SCHEDULER_KEYS = frozenset(
    {
        "T_0", "T_max", "T_mult", "anneal_strategy", "base_lr", "base_momentum", "cooldown",
        "cycle_momentum", "div_factor", "end_factor", "epochs", "eps", "eta_min", "factor",
        "final_div_factor", "gamma", "last_epoch", "lr_lambda", "max_lr", "max_momentum",
        "milestones", "min_lr", "mode", "patience", "pct_start", "power", "scale_fn",
        "scale_mode", "schedulers", "start_factor", "step_size", "step_size_down",
        "step_size_up", "steps_per_epoch", "three_phase", "threshold", "threshold_mode",
        "total_iters", "total_steps", "verbose",
    }
)  # fmt: skip
# What a schedule section holds that belongs to its schedule, its class's name included (a
# `name: onecycle` or `_target_: ...OneCycleLR` beside a new kind would contradict it):
# replaced as a whole by an edit.
SECTION_KEYS = SCHEDULE_KEYS | TORCH_SCHEDULER_KEYS | frozenset(NAME_KEYS)


@dataclass(frozen=True)
class ConfigFile:
    """A training config as read for editing."""

    path: Path  # as the user named it
    target: Path  # the file itself, symbolic links followed
    text: str  # its exact contents (byte-order mark and line endings included)
    document: Any  # the round-trip document of its text


@dataclass(frozen=True)
class ConfigChange:
    path: Path  # as the user named it, for the diff and messages
    target: Path  # the file that is written
    before: str  # exact contents now
    after: str  # exact contents to write

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of the exact texts, split at line feeds only; a last line without
        one is marked as `diff` marks it, so that the preview is what will be written."""
        lines = difflib.unified_diff(
            split_lines(self.before),
            split_lines(self.after),
            fromfile=f"{self.path} (before)",
            tofile=f"{self.path} (after)",
        )
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines
        )

    def write(self) -> None:
        replace_in_place(self.target, self.after.encode("utf-8"), self.before.encode("utf-8"))


def split_key(key: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not part.strip() for part in parts):
        raise ConfigError(
            f"--key {key!r} is not a dotted path of names; use e.g. --key scheduler or "
            "--key train.scheduler."
        )
    return parts


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split at line feeds only (not at the other characters that
    `str.splitlines` takes for line breaks, which a value may hold)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def read_config(path: Path) -> ConfigFile:
    """The training config at `path` and its round-trip document. A config that `apply`
    could not write where it lives is refused here, before any diff is shown."""
    path = Path(path)
    fmt = format_of(path, WHAT)
    target = resolve_config(path)
    check_writable(path, target)
    text = read_exact(path, target)
    _, body = Layout.of(text, path)
    return ConfigFile(path, target, text, EDITORS[fmt].parse(body, path))


def plan_change(
    config: ConfigFile,
    key: str,
    section: Mapping[str, Any],
    also: Sequence[tuple[list[str], Mapping[str, Any]]] = (),
) -> ConfigChange:
    """`config` with `section` written under `key`, and its new text; nothing is written yet.
    `also` are other mappings (keys, values) whose values are set, nothing else in them
    removed: the optimizer's `lr`, where the config keeps its rate there. `config.document`
    is edited in place. Refused when the edit would change anything but the targets."""
    path, keys = config.path, split_key(key)
    fmt = format_of(path, WHAT)
    editor = EDITORS[fmt]
    layout, body = Layout.of(config.text, path)
    document = config.document
    # What is written is plain values, even where it was computed from the document's own
    # (a round-trip library's integer type would read back as another type than written).
    section = _plain(section)
    also = [(other, _plain(values)) for other, values in also]
    if fmt == "yaml":
        for target_keys in [keys, *(other for other, _ in also)]:
            check_not_shared(document, target_keys, path)
    for target_keys in [keys, *(other for other, _ in also)]:
        _empty_where_null(document, target_keys, editor.new_mapping)
    untouched = editor.render(document, body) if fmt != "json" else ""
    stale = stale_keys(lookup(document, keys), section)
    set_section(document, keys, section, editor.new_mapping, path)
    for other, values in also:
        set_section(document, other, values, editor.new_mapping, path, replace_stale=False)
    if not body.strip():
        new_body = editor.render(document, body)
    elif fmt == "yaml" and _yaml_holds_nothing(body):  # comments stay, the mapping follows
        new_body = body.rstrip("\n") + "\n" + editor.render(document, "")
    elif fmt == "json":
        new_body = splice_json(body, keys, section, stale)
        for other, values in also:
            new_body = splice_json(new_body, other, values, [])
    else:
        new_body = carry_edit(body, untouched, editor.render(document, body), path, key)
    check_only_target_changed(editor.plain, body, new_body, keys, section, path, also)
    return ConfigChange(path, config.target, config.text, layout.restore(new_body))


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
    replace_stale: bool = True,
) -> None:
    """`section`'s values written into the mapping at `keys` (created when missing); with
    `replace_stale`, the schedule keys it does not have are removed from that mapping."""
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
    with _closing_lines_kept(node):
        for stale in stale_keys(node, section) if replace_stale else []:
            del node[stale]
        for name, value in section.items():
            node[name] = value


def stale_keys(node: Any, section: Mapping[str, Any]) -> list[str]:
    """Keys of a schedule in the target mapping (any kind's, lrfind's or torch's: the old
    schedule's) that the new section does not have."""
    if not isinstance(node, Mapping):
        return []
    return [name for name in node if name in SECTION_KEYS and name not in section]


# ---------------------------------------------------------------------------------------------
# Edits that stay where they belong


def check_not_shared(document: Any, keys: list[str], path: Path) -> None:
    """Refuse a YAML target that an anchor, alias or merge key shares with other places: the
    mappings on the way to it, and everything in it (an alias is the anchored node itself,
    so one test finds both)."""
    from ruamel.yaml.comments import merge_attrib

    nodes, node = [("the top level", document)], document
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            break
        node = node[key]
        nodes.append((f"`{'.'.join(keys[: depth + 1])}`", node))
    for depth, (name, node) in enumerate(nodes):
        if getattr(node, merge_attrib, None):
            raise _shared(path, name, "takes keys from a merge key (<<: *name)", keys)
        anchor = _anchor_in(node) if depth == len(keys) else _anchor_of(node)
        if anchor is not None:
            raise _shared(path, name, f"is shared through the anchor &{anchor}", keys)


def _anchor_of(node: Any) -> str | None:
    anchor = getattr(node, "yaml_anchor", lambda: None)()
    return None if anchor is None else str(anchor.value)


def _anchor_in(node: Any) -> str | None:
    """The first anchor on `node` or anywhere inside it."""
    if _anchor_of(node) is not None:
        return _anchor_of(node)
    if isinstance(node, Mapping):
        children = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return None
    return next((name for child in children if (name := _anchor_in(child))), None)


def _shared(path: Path, name: str, how: str, keys: list[str]) -> ConfigError:
    key = ".".join(keys)
    return ConfigError(
        f"training config {path}: {name} {how}, so writing the schedule into `{key}` would "
        f"change every place that uses it too. Nothing was written. Write `{key}` (and the "
        "mappings above it) out explicitly, without &, * or <<, and run again."
    )


def check_only_target_changed(
    plain: Callable[[str], Any],
    before: str,
    after: str,
    keys: list[str],
    section: Mapping[str, Any],
    path: Path,
    also: Sequence[tuple[list[str], Mapping[str, Any]]] = (),
) -> None:
    """The safety net under every edit: `after`, parsed as a training script would parse it,
    must be `before` with `section` written under `keys` (and the values of `also` set) and
    nothing else changed. Anything that breaks this (an alias, a merge key, a library that
    rewrote a value) is refused."""
    try:
        expected = _plain(plain(before)) or {}  # an empty or comment-only file holds nothing
        written = _plain(plain(after))
    except Exception as error:  # whatever the parser raises, the edit cannot be checked
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        changed: str | None = f"how the file reads (it would not parse: {reason})"
    else:
        set_section(expected, keys, section, dict, path)
        for other, values in also:
            set_section(expected, other, values, dict, path, replace_stale=False)
        changed = _first_difference(written, expected)
    if changed is not None:
        key = ".".join(keys)
        raise ConfigError(
            f"training config {path}: the edit of `{key}` would also change {changed}, so "
            f"nothing was written. Write `{key}` out "
            "explicitly (no alias or merge key) and run again, or add it by hand from "
            "`lrfind apply --dry-run`."
        )


def _plain(value: Any) -> Any:
    """Plain dicts, lists and scalars, each a copy of its own: an alias read twice becomes
    two values, so an edit of one shows up as a difference from the other; a round-trip
    library's own scalar types (tomlkit's Integer, ruamel's ScalarFloat) become Python's."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _empty_where_null(
    document: Any, keys: list[str], new_mapping: Callable[[], MutableMapping[str, Any]]
) -> None:
    """An empty mapping in place of a null on the way to the target (`scheduler: ~`, a
    `null` in JSON): the edit then reads as the change of that line it is, rather than as
    lines added under a key whose null stays."""
    node = document
    for key in keys:
        if not isinstance(node, MutableMapping) or key not in node:
            return
        if node[key] is None:
            node[key] = new_mapping()
        node = node[key]


def _first_difference(written: Any, expected: Any, where: str = "") -> str | None:
    """The dotted place where two plain documents first differ (in type or value), or None."""
    if isinstance(written, dict) and isinstance(expected, dict):
        for key in [*expected, *(key for key in written if key not in expected)]:
            found = _first_difference(
                written.get(key, _MISSING), expected.get(key, _MISSING), f"{where}.{key}"
            )
            if found is not None:
                return found
        return None
    if isinstance(written, list) and isinstance(expected, list) and len(written) == len(expected):
        pairs = enumerate(zip(written, expected, strict=True))
        found_items = (_first_difference(a, b, f"{where}[{i}]") for i, (a, b) in pairs)
        return next((found for found in found_items if found is not None), None)
    not_a_number = written != written and expected != expected  # NaN is NaN, as written
    same = type(written) is type(expected) and (written == expected or not_a_number)
    return None if same else f"`{where.lstrip('.') or 'the top level'}`"


_MISSING = object()


def carry_edit(original: str, untouched: str, edited: str, path: Path, key: str) -> str:
    """`original` with the change that turned `untouched` into `edited`.

    A round-trip library writes a whole document, and where a file is not written the way it
    writes (aligned values, `%YAML` lines, mixed indentation), it writes lines that mean the
    same but read differently. `untouched` is its text of the document as read and `edited`
    its text after the edit: the lines that differ between those two are the edit, and only
    they are carried onto the user's lines. An edit next to lines the library writes
    differently, which cannot be placed among the user's lines, is refused.
    """
    source, before, after = split_lines(original), split_lines(untouched), split_lines(edited)
    unterminated = bool(source) and not source[-1].endswith("\n")
    if unterminated:  # what follows the last line, if anything, goes on a line of its own
        source[-1] += "\n"
    places = _line_places(before, source)
    pieces: list[str] = []
    done = 0
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, start, end, new_start, new_end in matcher.get_opcodes():
        if tag == "equal":
            continue
        if start not in places or end not in places:
            raise _cannot_carry(path, key, before[start:] or before[-1:])
        first = places[start][0] if start == end else places[start][1]
        last = places[end][0]
        if first < done or last < first:
            raise _cannot_carry(path, key, before[start:] or before[-1:])
        pieces += [*source[done:first], *after[new_start:new_end]]
        done = last
    carried = "".join(pieces + source[done:])
    return carried[:-1] if unterminated and done < len(source) else carried


def _line_places(rendered: list[str], source: list[str]) -> dict[int, tuple[int, int]]:
    """For each place between lines of `rendered` that has a counterpart between lines of
    `source`: the first and the last such counterpart. Lines that differ but come in blocks
    of equal length are taken as the same lines written differently."""
    places: dict[int, tuple[int, int]] = {}

    def add(place: int, counterpart: int) -> None:
        places[place] = (places.get(place, (counterpart, counterpart))[0], counterpart)

    matcher = difflib.SequenceMatcher(None, rendered, source, autojunk=False)
    for tag, start, end, source_start, source_end in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and end - start == source_end - source_start):
            for offset in range(end - start + 1):
                add(start + offset, source_start + offset)
        else:
            add(start, source_start)
            add(end, source_end)
    return places


def _cannot_carry(path: Path, key: str, lines: list[str]) -> ConfigError:
    near = f"near `{lines[0].strip()}` " if lines else ""
    return ConfigError(
        f"training config {path}: lrfind cannot write `{key}` without also rewriting lines "
        f"{near}that the edit does not change, because the {path.suffix[1:]} "
        "library writes them differently from the file. Nothing was written. Add the section "
        "by hand from `lrfind apply --dry-run` of a copy, or write those lines plainly."
    )


def _closing_lines_kept(node: Any) -> contextlib.AbstractContextManager[None]:
    """The blank lines and comments that close a mapping (often the comment above the next
    section) stay at its end when the edit adds keys or removes its last one: new keys go
    after the last key, not after those lines. Plain mappings have none."""
    if hasattr(node, "ca"):
        return _yaml_closing_lines_kept(node)
    if hasattr(getattr(node, "value", None), "body"):
        return _toml_closing_lines_kept(node)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _toml_closing_lines_kept(table: Any) -> Iterator[None]:
    """tomlkit keeps a table's closing lines as its last items; new keys are appended."""
    from tomlkit.items import Comment, Whitespace

    body = table.value.body
    closing: list[Any] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], (Whitespace, Comment)):
        closing.insert(0, body.pop())
    try:
        yield
    finally:
        body.extend(closing)


@contextlib.contextmanager
def _yaml_closing_lines_kept(node: Any) -> Iterator[None]:
    """ruamel attaches a mapping's closing lines to its last key, as the end of that key's
    comment: move them to the key that is last after the edit."""
    items = getattr(getattr(node, "ca", None), "items", None)
    last = next(reversed(node), None) if items else None
    entry = items.get(last) if items and last is not None else None
    token = entry[2] if entry and len(entry) > 2 else None
    yield
    if not items or token is None or not node:
        return
    own, _, following = token.value.partition("\n")
    new_last = next(reversed(node))
    if not following or new_last == last:
        return
    if last in node and own.strip():
        token.value = own + "\n"  # the old last key keeps the comment on its own line
    elif last in node:
        items[last][2] = None
    existing = items.get(new_last)
    if existing and len(existing) > 2 and existing[2] is not None:
        existing[2].value += following
    else:
        from ruamel.yaml.tokens import CommentToken

        items[new_last] = [None, None, CommentToken("\n" + following, token.start_mark), None]


# ---------------------------------------------------------------------------------------------
# One editor per format


@dataclass(frozen=True)
class Editor:
    parse: Callable[[str, Path], Any]  # the round-trip document of a text
    render: Callable[[Any, str], str]  # a document's text, in the style of an original text
    new_mapping: Callable[[], MutableMapping[str, Any]]
    plain: Callable[[str], Any]  # plain values, as a training script reads the text


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


def _plain_yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)  # YAML 1.2, as the round-trip edit


def _yaml_holds_nothing(text: str) -> bool:
    """Comments only (or a bare `---`): there is no mapping to carry an edit onto, and the
    round-trip library would drop the comments."""
    try:
        return _plain_yaml(text) is None
    except Exception:  # a text ruamel's safe reader refuses holds something
        return False


def _parse_toml(text: str, path: Path) -> Any:
    return parse_document(text, path, WHAT, round_trip=True)


def _render_toml(document: Any, original: str) -> str:
    import tomlkit

    return tomlkit.dumps(document)


def _new_toml_mapping() -> MutableMapping[str, Any]:
    import tomlkit

    return tomlkit.table()


def _plain_toml(text: str) -> Any:
    import tomllib

    return tomllib.loads(text)


def _parse_json(text: str, path: Path) -> Any:
    if not text.strip():
        return {}
    return _root_mapping(parse_document(text, path, WHAT), path, dict)


def _render_json(document: Any, original: str) -> str:
    """A whole document, for an empty file or a snippet (a file with content is spliced)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _plain_json(text: str) -> Any:
    return json.loads(text) if text.strip() else {}


EDITORS = {
    "yaml": Editor(_parse_yaml, _render_yaml, _new_yaml_mapping, _plain_yaml),
    "toml": Editor(_parse_toml, _render_toml, _new_toml_mapping, _plain_toml),
    "json": Editor(_parse_json, _render_json, dict, _plain_json),
}
