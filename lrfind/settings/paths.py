"""What the operating system says about a path a user gave, as one message.

    try:
        target.read_bytes()
    except OSError as error:
        raise ConfigError(os_refusal(error, "result file", target)) from None

Every path lrfind is given (--out, --config, --weights, --data-dir, a model or dataset spec, a
result or curve file) can be refused by the OS: a name over 255 bytes, a file where a folder
should be, no permission, a loop of links. `os_refusal` turns any such OSError into a sentence
that names the argument, the path, the reason in words and the fix; the readers and writers
use it, and the CLI's one error handler uses it for an OSError no reader caught.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

NAME_MAX = 255  # bytes in one name of a path, on every common file system
PATH_MAX = 4096  # bytes in a whole path, on Linux


def os_refusal(error: OSError, what: str, path: object | None = None) -> str:
    """Why the OS refused `path` (by default the error's own file name), and what to do.
    `what` names the argument or file: "--out", "result file"."""
    shown = Path(os.fsdecode(str(path if path is not None else error.filename or "")))
    reason, fix = _reason(error, shown)
    return f"{what} {shown}: {reason}. {fix}"


def _reason(error: OSError, path: Path) -> tuple[str, str]:
    code = error.errno
    if code == errno.ENAMETOOLONG:
        longest = max((os.fsencode(part) for part in path.parts), key=len, default=b"")
        if len(longest) > NAME_MAX:
            return (
                f"a name in it is {len(longest)} bytes long, and the file system allows at most "
                f"{NAME_MAX} bytes in one name",
                "Choose a shorter name.",
            )
        return (
            f"the path is {len(os.fsencode(str(path)))} bytes long, more than the file system "
            "allows",
            "Choose a shorter path, or run from a folder nearer to it.",
        )
    if code == errno.ENOTDIR:
        blocking = _file_on_the_way(path)
        where = f"{blocking} is a file" if blocking else "a part of it is a file"
        return (
            f"{where}, where a folder is needed",
            "Check the path: a folder cannot be inside a file.",
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            "permission denied",
            "Check the permissions of the path and the folders above it, or choose another path.",
        )
    if code == errno.ELOOP:
        return (
            "its symbolic links lead in a loop, so it names no file",
            "Fix the link, or pass the path of the file itself.",
        )
    if code == errno.EISDIR:
        return "it is a folder, where a file is needed", "Pass the path of a file in it."
    if code == errno.ENOENT:
        return "it does not exist", "Check the path."
    if code == errno.EROFS:
        return "it is on a read-only file system", "Choose a path on a writable disk."
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk (or your quota) is full", "Free some space, or choose another disk."
    return (
        error.strerror or str(error),
        "Check the path and that it can be used, or choose another.",
    )


def _file_on_the_way(path: Path) -> Path | None:
    """The first path above `path` (or `path` itself) that exists and is no folder."""
    for candidate in [*reversed(path.parents), path]:
        try:
            if candidate.exists() and not candidate.is_dir():
                return candidate
        except OSError:
            return None
    return None
