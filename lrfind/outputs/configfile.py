"""A training config on disk, as `lrfind apply` may edit it: the file a path names (links
followed), whether it may be rewritten where it lives, and its exact text.

    target = resolve_config(Path("train.yaml")); check_writable(Path("train.yaml"), target)
    layout, body = Layout.of(read_exact(Path("train.yaml"), target), Path("train.yaml"))

Everything here refuses before anything is written, with a ConfigError that names the file
and the fix; the file is left as it was.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lrfind.errors import ConfigError
from lrfind.outputs.files import in_place_backup, leftover_backup_message, permits_writing
from lrfind.settings.paths import os_refusal


def resolve_config(path: Path) -> Path:
    """The regular file `path` names, symbolic links followed, or a ConfigError that says why
    there is none."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        if path.is_symlink():
            raise ConfigError(
                f"training config {path} is a symbolic link to {os.readlink(path)}, which does "
                "not exist. Point the link at your config, or pass the config's own path."
            ) from None
        raise ConfigError(
            f"training config {path} does not exist. Check the path, or create the file "
            "first (an empty file is fine) to have lrfind fill it."
        ) from None
    except RuntimeError:  # a symbolic link loop, before Python 3.13
        raise _loop(path) from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _loop(path) from None
        raise ConfigError(os_refusal(error, "training config", path)) from None
    mode = target.stat().st_mode
    if stat.S_ISDIR(mode):
        raise ConfigError(
            f"training config {path} is a folder, not a file. Pass the config file in it, "
            f"e.g. {path / 'train.yaml'}."
        )
    if not stat.S_ISREG(mode):
        raise ConfigError(
            f"training config {path} is a {_kind_of_file(mode)}, not a regular file; lrfind "
            "edits a config file where it lives. Pass the path of the file itself."
        )
    return target


def _loop(path: Path) -> ConfigError:
    return ConfigError(
        f"training config {path} is a symbolic link that leads back to itself (a loop), so "
        "there is no file to edit. Fix the link, or pass the config's own path."
    )


def _kind_of_file(mode: int) -> str:
    kinds = [
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


def check_writable(path: Path, target: Path) -> None:
    """The file and its folder (which holds the backup while it is written) must be writable
    by their permission bits, and no earlier edit may have been cut short."""
    shown = path if path == target else f"{path} (a link to {target})"
    if not permits_writing(target):
        mode = target.stat().st_mode & 0o777
        raise ConfigError(
            f"training config {shown} is read-only (mode {mode:o}), so lrfind leaves it as it "
            f"is. Make it writable (chmod u+w {target}) if it should take the schedule, or "
            "apply to a writable copy."
        )
    if not permits_writing(target.parent):
        raise ConfigError(
            f"training config {shown} is in a read-only folder, {target.parent}; lrfind keeps "
            "a backup beside the file while it rewrites it, so it left the file as it is. "
            f"Make the folder writable (chmod u+w {target.parent}), or apply to a copy "
            "elsewhere."
        )
    backup = in_place_backup(target)
    if os.path.lexists(backup):
        raise ConfigError(leftover_backup_message(target, backup))


def read_exact(path: Path, target: Path) -> str:
    try:
        data = target.read_bytes()
    except OSError as error:
        raise ConfigError(os_refusal(error, "training config", path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"training config {path} is not UTF-8 text (byte {error.start} cannot be read); "
            "lrfind edits UTF-8 files only. Save it as UTF-8 and run again."
        ) from None


@dataclass(frozen=True)
class Layout:
    """What a config's text has around its content: a byte-order mark and a line ending,
    taken off before editing and put back on every line after it."""

    bom: str
    newline: str

    @classmethod
    def of(cls, text: str, path: Path) -> tuple[Layout, str]:
        """The layout of `text` and its body (no mark, line feeds only)."""
        bom = "\ufeff" if text.startswith("\ufeff") else ""
        body = text[len(bom) :]
        crlf = body.count("\r\n")
        lone_feeds, lone_returns = body.count("\n") - crlf, body.count("\r") - crlf
        if lone_returns or (crlf and lone_feeds):
            raise ConfigError(
                f"training config {path} mixes line endings ({crlf} CRLF, {lone_feeds} LF, "
                f"{lone_returns} CR alone), so no one ending fits the lines lrfind would add. "
                f"Convert it to one kind (e.g. `dos2unix {path}`) and run again."
            )
        newline = "\r\n" if crlf else "\n"
        return cls(bom, newline), body.replace("\r\n", "\n")

    def restore(self, body: str) -> str:
        return self.bom + body.replace("\n", self.newline)
