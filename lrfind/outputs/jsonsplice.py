"""Editing JSON text by splicing: one object's members change, every other byte stays.

    splice_json('{"lr": 1e-4}\\n', ["scheduler"], {"kind": "onecycle"}, stale=[])
    # '{"lr": 1e-4, "scheduler": {"kind": "onecycle"}}\\n'

`json.dumps` writes a whole document anew: `1e-4` as `0.0001`, `\\u00e9` as `é`, a one-line
array over several lines. Here the text is scanned with the json module's own scanners for the
places of an object's members, and only that object's inside is rebuilt: kept members as they
were, schedule values written anew, stale ones dropped, new members in the style of their
neighbours (indentation, separators). The text must be valid JSON whose path holds objects or
nothing; the caller has checked both (and checks the result again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # what JSON allows between tokens


@dataclass(frozen=True)
class Member:
    """One `"key": value` of an object, by its places in the text."""

    key: str
    start: int  # the key's opening quote
    value_start: int
    end: int  # just after the value
    colon: str  # the text between key and value, e.g. ": "


def splice_json(
    text: str, keys: list[str], section: Mapping[str, Any], stale: Sequence[str]
) -> str:
    """`text` with `section`'s values written into the object at `keys` (created when
    missing) and its `stale` members removed."""
    unit = _indent_unit(text)
    opening = _skip(text, 0)
    for depth, key in enumerate(keys):
        members, closing = members_of(text, opening)
        found = [member for member in members if member.key == key]
        if not found or text[found[-1].value_start] != "{":  # missing, or null: written anew
            value: Any = dict(section)
            for outer in reversed(keys[depth + 1 :]):
                value = {outer: value}
            return _rebuilt(text, opening, closing, members, {key: value}, (), unit)
        opening = found[-1].value_start  # json.loads keeps the last of repeated keys
    members, closing = members_of(text, opening)
    return _rebuilt(text, opening, closing, members, section, stale, unit)


def members_of(text: str, opening: int) -> tuple[list[Member], int]:
    """The members of the object whose `{` is at `opening`, and the place of its `}`."""
    members = []
    index = _skip(text, opening + 1)
    while text[index] == '"':
        key, after_key = _DECODER.raw_decode(text, index)
        value_start = _skip(text, _skip(text, after_key) + 1)
        _, end = _DECODER.raw_decode(text, value_start)
        members.append(Member(key, index, value_start, end, text[after_key:value_start]))
        index = _skip(text, end)
        if text[index] == ",":
            index = _skip(text, index + 1)
    return members, index


def _rebuilt(
    text: str,
    opening: int,
    closing: int,
    members: list[Member],
    values: Mapping[str, Any],
    drop: Sequence[str],
    unit: str,
) -> str:
    """The object at `opening` with `values` written and `drop` removed. The whitespace and
    commas between kept members stay as they were; new members follow the last one."""
    gaps = _gaps(text, opening, closing, members)
    style = _Style.of(text, opening, gaps, members, unit)
    kept = [index for index, member in enumerate(members) if member.key not in drop]
    pieces = []
    for position, index in enumerate(kept):
        member = members[index]
        if position:
            pieces.append(gaps[kept[position - 1] + 1])
        if member.key in values:
            value = style.value_text(values[member.key])
            pieces.append(text[member.start : member.value_start] + value)
        else:
            pieces.append(text[member.start : member.end])
    present = {member.key for member in members}
    for key, value in values.items():
        if key not in present:
            pieces.append(style.separator if pieces else "")
            pieces.append(json.dumps(key, ensure_ascii=False) + style.colon)
            pieces.append(style.value_text(value))
    inside = (gaps[0] if members else style.opening) + "".join(pieces)
    inside += gaps[-1] if members else style.closing
    return text[: opening + 1] + inside + text[closing:]


def _gaps(text: str, opening: int, closing: int, members: list[Member]) -> list[str]:
    """The text before the first member, between each two (a comma and whitespace), and
    after the last; for an empty object, its inside."""
    edges = [opening + 1, *(place for m in members for place in (m.start, m.end)), closing]
    return [text[edges[index] : edges[index + 1]] for index in range(0, len(edges), 2)]


@dataclass(frozen=True)
class _Style:
    """How an object writes its members: on one line, or one a line with an indentation."""

    opening: str  # before the first member
    separator: str  # before each further member
    closing: str  # after the last
    colon: str
    unit: str | None  # one level of indentation; None when the object is on one line
    member_indent: str

    @classmethod
    def of(
        cls, text: str, opening: int, gaps: list[str], members: list[Member], unit: str
    ) -> _Style:
        colon = members[0].colon if members else ": "
        if members and "\n" not in "".join(gaps):
            separator = gaps[-2] if len(members) > 1 else ", "
            return cls("", separator, "", colon, None, "")
        if not members and "\n" not in text.strip():
            return cls("", ", ", "", colon, None, "")
        outer = _line_indent(text, opening)
        lead = gaps[-2] if len(members) > 1 else gaps[0] if members else "\n" + outer + unit
        member_indent = lead.rpartition("\n")[2]
        separator = lead if lead.startswith(",") else "," + lead
        return cls("\n" + member_indent, separator, "\n" + outer, colon, unit, member_indent)

    def value_text(self, value: Any) -> str:
        if isinstance(value, Mapping) and self.unit is not None:
            written = json.dumps(
                value, indent=self.unit, separators=(",", self.colon), ensure_ascii=False
            )
            return written.replace("\n", "\n" + self.member_indent)
        return json.dumps(value, separators=(", ", self.colon), ensure_ascii=False)


def _skip(text: str, index: int) -> int:
    """The place of the first character at or after `index` that is not JSON whitespace."""
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


def _line_indent(text: str, index: int) -> str:
    line_start = text.rfind("\n", 0, index) + 1
    line = text[line_start:index]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _indent_unit(text: str) -> str:
    """The indentation of the first indented line: one level, as the file writes it."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            return line[: len(line) - len(stripped)]
    return "  "
