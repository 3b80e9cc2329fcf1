"""Writing files: atomically, into run folders that appear only when complete.

    with staged_run_folder(Path("runs/lenet-sgd"), overwrite=False) as staging:
        write_json(staging / "result.json", document)

A run folder is assembled in a hidden sibling folder and renamed into place only when every
file is complete, so an interrupted or failing run never leaves a half-written folder, and an
existing run is replaced only with `overwrite=True`. CSV and JSON are written here, so every
file lrfind makes has one cell format and one JSON form. A user's own file (the training config
`lrfind apply` edits) is never replaced but rewritten in place, behind a backup
(`replace_in_place`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrfind.errors import OutputError
from lrfind.settings.paths import os_refusal


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`.
    `data` may come in chunks (a long CSV), each written as it comes."""
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise OutputError(_write_failure(path, error)) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for chunk in [data] if isinstance(data, bytes) else data:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; a replaced file keeps its permissions, a new one gets the umask's
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        else:
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise OutputError(_write_failure(path, error)) from None
    except BaseException:  # a chunk that failed to come: no half-written file is left
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _write_failure(path: Path, error: OSError) -> str:
    return (
        f"cannot write {path}: {error.strerror or error}. Check that the folder is writable "
        "and the disk has space, or choose another folder with --out."
    )


# Everything lrfind writes into a run folder (`sweep/` is the sweep `lrfind train` runs
# first). A folder holding only these, with its result.json or train.json, is an lrfind run.
RUN_ENTRIES = frozenset(
    {"sweep.csv", "sweep.png", "result.json", "history.csv", "history.png", "train.json", "sweep"}
)
RUN_DOCUMENTS = frozenset({"result.json", "train.json"})


def check_run_folder(out: Path, overwrite: bool) -> None:
    """Fail before any work when the run folder cannot be written: it exists and may not be
    replaced, it is not an lrfind run (--overwrite replaces nothing else), it is the current
    folder or one above it, its parent cannot be written, or the OS refuses the path (a name
    too long, a file on the way)."""
    out = Path(out)
    try:
        _check_run_folder(out, overwrite)
    except OSError as error:
        raise OutputError(os_refusal(error, "--out", out)) from None


def _check_run_folder(out: Path, overwrite: bool) -> None:
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise OutputError(
            f"--out {out} is the current folder or one that holds it; a run folder is replaced "
            "as a whole, so it must be a folder of its own. Pass e.g. --out runs/my-sweep."
        )
    if out.is_symlink() and not out.exists():
        raise OutputError(
            f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist. "
            "Point the link at a folder, remove it, or choose another folder with --out."
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder. Choose another path with --out.")
    if out.exists() and not overwrite:
        raise OutputError(
            f"run folder {out} already exists. Pass --overwrite to replace it, or choose "
            "another folder with --out."
        )
    if out.exists():
        _check_is_a_run(out)
    existing = next(parent for parent in out.absolute().parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot create run folder {out}: {existing} is not a writable folder. "
            "Choose another folder with --out."
        )


def _check_is_a_run(out: Path) -> None:
    """--overwrite replaces an lrfind run (or an empty folder), never anything else."""
    try:
        entries = set(os.listdir(out))
    except OSError as error:
        raise OutputError(_write_failure(out, error)) from None
    if CLAIM_FILE in entries:
        _check_claim_is_stale(out)
        entries.discard(CLAIM_FILE)
    foreign = sorted(entries - RUN_ENTRIES)
    sweep = out / "sweep"  # the sweep `lrfind train` ran first is a run of its own
    if "sweep" in entries and not foreign and (not sweep.is_dir() or sweep.is_symlink()):
        foreign = ["sweep"]
    if foreign or (entries and not entries & RUN_DOCUMENTS):
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        reason = (
            f"it holds {shown}, which lrfind did not write"
            if foreign
            else ("it has no result.json or train.json")
        )
        raise OutputError(
            f"--overwrite replaces only an lrfind run folder, and {out} is not one: {reason}. "
            "Nothing was changed. Choose another folder with --out."
        )
    if "sweep" in entries:
        _check_is_a_run(sweep)


CLAIM_FILE = ".lrfind-claim"  # "<pid> <token>": the run that will write this folder


class RunFolder:
    """A run folder, claimed for one run from its start (`claim_run_folder`) so that no other
    run and nothing else is replaced by it: the run writes into a staging folder beside it,
    and `staged()` moves that into place only while the claim is still this run's and the
    folder holds nothing lrfind did not write. Otherwise the staging folder is kept under a
    new name, which the error gives."""

    def __init__(self, out: Path, token: str, created: bool) -> None:
        self.out = out
        self.token = token
        self.created = created  # the claim made the folder (it did not exist before)

    @contextlib.contextmanager
    def staged(self) -> Iterator[Path]:
        """Yield an empty staging folder; on success it becomes the run folder, on error it
        is removed."""
        out = self.out
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; follow the umask
        except OSError as error:
            raise OutputError(_write_failure(out, error)) from None
        try:
            yield staging
            self._move_into_place(staging)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputError(_write_failure(out, error)) from None
        except OutputError as error:  # a file of the run: named where it was to be
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputError(str(error).replace(str(staging), str(out))) from None
        except BaseException:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
            raise

    def _move_into_place(self, staging: Path) -> None:
        out = self.out
        problem = self._lost_claim()
        if problem is not None:
            kept = Path(tempfile.mkdtemp(prefix=f"{out.name}-not-replaced-", dir=out.parent))
            os.replace(staging, kept / "run")
            raise OutputError(
                f"{out} was not written: {problem}. This run's files are in {kept / 'run'}; "
                "move them where you want them, or rerun with another --out."
            )
        retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        try:
            os.replace(out, retired / out.name)
            try:
                os.replace(staging, out)
            except OSError:  # the folder as it was comes back (its claim is released after)
                os.replace(retired / out.name, out)
                raise
        except OSError:
            with contextlib.suppress(OSError):
                retired.rmdir()  # only when empty: a folder that could not come back stays
            raise
        shutil.rmtree(retired, ignore_errors=True)

    def _lost_claim(self) -> str | None:
        """Why the folder is no longer this run's to replace, or None."""
        try:
            claim = (self.out / CLAIM_FILE).read_text()
            entries = set(os.listdir(self.out))
        except OSError:
            return "the folder or this run's claim on it was removed while the run worked"
        if claim.split()[-1:] != [self.token]:
            return "another run claimed the folder while this one worked"
        foreign = sorted(entries - RUN_ENTRIES - {CLAIM_FILE})
        if foreign:
            return f"{', '.join(foreign[:5])} appeared in it while the run worked"
        return None

    def release(self) -> None:
        """Give the claim up (the run failed): the folder is as it was before."""
        claim = self.out / CLAIM_FILE
        with contextlib.suppress(OSError):
            if claim.read_text().split()[-1:] == [self.token]:
                claim.unlink()
                if self.created:
                    self.out.rmdir()


def _write_claim(out: Path, token: str, created: bool) -> None:
    """Put the claim file in place with its token already in it (written aside, then linked
    to its name, which fails when it exists), so that no reader ever sees it empty."""
    aside = out / f"{CLAIM_FILE}.{token.split()[1]}"
    try:
        aside.write_text(token + "\n")
        try:
            os.link(aside, out / CLAIM_FILE)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create it exclusively instead
            descriptor = os.open(out / CLAIM_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(token + "\n")
    except FileExistsError:
        if created:
            with contextlib.suppress(OSError):
                aside.unlink()
                out.rmdir()
        raise OutputError(
            f"another lrfind run is writing to {out} (it holds {CLAIM_FILE}). Wait for it, or "
            "choose another folder with --out."
        ) from None
    except OSError as error:  # a full disk: the folder this run made goes, or it would
        if created:  # block the rerun as "already exists"
            with contextlib.suppress(OSError):
                aside.unlink()
            with contextlib.suppress(OSError):
                out.rmdir()
        raise OutputError(_write_failure(out, error)) from None
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()


def _check_claim_is_stale(out: Path) -> None:
    """A claim left by a run that is still running is refused; one left by a run that died
    (killed, machine restarted) is removed, so that --overwrite can take the folder."""
    claim = out / CLAIM_FILE
    try:
        pid = int(claim.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = -1
    if pid > 0 and _alive(pid):
        raise OutputError(
            f"another lrfind run (process {pid}) is writing to {out}. Wait for it, or choose "
            "another folder with --out."
        )
    with contextlib.suppress(OSError):
        claim.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


@contextlib.contextmanager
def claim_run_folder(out: Path, overwrite: bool) -> Iterator[RunFolder]:
    """Check the run folder (`check_run_folder`) and claim it for this run until the block
    ends; on an error the claim is released and the folder left as it was."""
    out = Path(out)
    check_run_folder(out, overwrite)
    token = f"{os.getpid()} {secrets.token_hex(8)}"
    created = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists():
            os.mkdir(out)
            created = True
    except FileExistsError:
        raise OutputError(
            f"{out} appeared while this run was starting (another program or run created "
            "it). Run again to check what it holds, or choose another folder with --out."
        ) from None
    except OSError as error:
        raise OutputError(_write_failure(out, error)) from None
    _write_claim(out, token, created)
    folder = RunFolder(out, token.split()[1], created)
    try:
        yield folder
    except BaseException:
        folder.release()
        raise


@contextlib.contextmanager
def staged_run_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """Claim `out` and yield an empty staging folder; on success it becomes `out`, on error
    it is removed and `out` is left as it was."""
    with claim_run_folder(out, overwrite) as folder, folder.staged() as staging:
        yield staging


def csv_cell(value: Any) -> str:
    """A CSV cell: empty for a missing or non-finite number, else the value's exact repr."""
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if math.isfinite(value) else ""
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A header and one line per row (cells by `csv_cell`), written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    write_atomic(path, buffer.getvalue().encode())


def csv_column(values: Iterable[Any]) -> list[str]:
    """`csv_cell` of every value of one column; a float array without a Python call per
    value beyond `repr` (an empty cell where it is not finite)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        finite = np.isfinite(values)
        if finite.all():
            return list(map(repr, values.astype(float).tolist()))
        cells = np.full(len(values), "", dtype=object)
        cells[finite] = list(map(repr, values[finite].astype(float).tolist()))
        result: list[str] = cells.tolist()
        return result
    return [csv_cell(value) for value in values]


def write_csv_blocks(
    path: Path, columns: Sequence[str], blocks: Iterable[Sequence[Sequence[str]]]
) -> None:
    """`write_csv` of a table that comes in blocks of rows, each given column by column as
    `csv_column` cells (numbers and empty cells, which the csv module never quotes): the same
    bytes, at join speed, holding one block's text at a time."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(columns)

    def chunks() -> Iterator[bytes]:
        yield header.getvalue().encode()
        for block in blocks:
            rows = "\n".join(map(",".join, zip(*block, strict=True)))
            if rows:
                yield (rows + "\n").encode()

    write_atomic(path, chunks())


def json_ready(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to null, paths to strings."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    text = json.dumps(json_ready(document), indent=2, allow_nan=False)
    write_atomic(path, (text + "\n").encode())


# ---------------------------------------------------------------------------------------------
# Editing a user's file where it lives


def in_place_backup(path: Path) -> Path:
    """Where `replace_in_place` keeps the old contents of `path` while it writes."""
    return path.with_name(f".{path.name}.lrfind-backup")


def permits_writing(path: Path) -> bool:
    """Whether the permission bits let this user write `path`. Root may write anything, so
    for root the bits say what the owner meant: a file or folder with no write bit at all is
    read-only to lrfind too."""
    try:
        if os.geteuid() == 0:
            return bool(os.stat(path).st_mode & 0o222)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def replace_in_place(path: Path, data: bytes, expected: bytes) -> None:
    """Give the existing regular file `path` the contents `data`, in place.

    A user's file is edited where it lives: it keeps its inode (hard links stay linked), its
    mode and its owner, which renaming a new file over it would not keep. The write goes in
    steps that each leave a whole file behind:

    1. the file is opened for writing (an honest test of permission) and must still hold
       `expected`, the contents the edit was planned on;
    2. those contents are copied to `in_place_backup(path)` and flushed to disk. The backup
       is created exclusively, so a second writer, or a backup left by a crash, stops here;
    3. `data` is written over the file from its start, the file is cut to its length and
       flushed. If that fails (a full disk, an I/O error), the old contents are written back
       and the error says nothing changed; if even that fails, it names the backup to copy;
    4. the backup is removed.

    A crash during step 3 leaves the backup beside the file; it is the only moment the file
    can be incomplete, and the backup is whole by then.
    """
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise OutputError(_not_changed(path, error)) from None
    try:
        current = _read_all(descriptor)
        if current != expected:
            raise OutputError(
                f"{path} changed while lrfind prepared its edit, so nothing was written. "
                "Run the command again to edit the file as it is now."
            )
        backup = in_place_backup(path)
        _write_backup(backup, current, path)
        try:
            _overwrite(descriptor, data)
        except OSError as error:
            _put_back(descriptor, current, backup, path, error)
        with contextlib.suppress(OSError):
            os.unlink(backup)
    except OSError as error:  # reading the file, before anything was written
        raise OutputError(_not_changed(path, error)) from None
    finally:
        os.close(descriptor)


def _read_all(descriptor: int) -> bytes:
    contents = b""
    while chunk := os.pread(descriptor, 1 << 20, len(contents)):
        contents += chunk
    return contents


def _overwrite(descriptor: int, data: bytes) -> None:
    written = 0
    while written < len(data):
        written += os.pwrite(descriptor, data[written:], written)
    os.ftruncate(descriptor, len(data))
    os.fsync(descriptor)


def _write_backup(backup: Path, contents: bytes, path: Path) -> None:
    try:
        descriptor = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise OutputError(leftover_backup_message(path, backup)) from None
    except OSError as error:
        raise OutputError(_not_changed(path, error)) from None
    try:
        _overwrite(descriptor, contents)
        _sync_folder(backup.parent)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(backup)
        raise OutputError(_not_changed(path, error)) from None
    finally:
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries, so that a file made in it survives a crash."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _put_back(descriptor: int, contents: bytes, backup: Path, path: Path, error: OSError) -> None:
    """The write over `path` failed: restore its contents and raise, saying what state it is in."""
    try:
        _overwrite(descriptor, contents)
    except OSError:
        raise OutputError(
            f"cannot write {path}: {error.strerror or error}, and putting its old contents "
            f"back failed too. They are in {backup}: copy that file over {path}."
        ) from None
    with contextlib.suppress(OSError):
        os.unlink(backup)
    raise OutputError(_not_changed(path, error)) from None


def _not_changed(path: Path, error: OSError) -> str:
    return (
        f"cannot write {path}: {error.strerror or error}. It was left as it was. Check that "
        "the file and its folder are writable and the disk has space, and run again."
    )


def leftover_backup_message(path: Path, backup: Path) -> str:
    return (
        f"{backup} exists: an earlier edit of {path} was interrupted while writing, or another "
        f"is under way. Nothing was written. If {path} is complete, delete {backup}; if not, "
        f"copy {backup} over {path}. Then run again."
    )
