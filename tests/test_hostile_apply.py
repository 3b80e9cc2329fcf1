"""`lrfind apply` against configs a careless or hostile user gives, run as the command in this
process (apply imports no torch: a process would add only its start-up).

Each case checks the exit code, that the message names the file and the fix, that no traceback
is printed, and that every file that must not change is byte-identical afterwards (links still
links, hard links still one inode, modes as they were). Where apply writes, the bytes it
writes differ from the original only in the lines it reports."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Ran, lrfind, write_result


def message(completed: Ran) -> str:
    return " ".join((completed.stdout + completed.stderr).split())


@dataclass(frozen=True)
class Snapshot:
    """What a path is, as far as a user could tell: kind, link target, bytes, inode, mode and
    time of last change (a refusal does not even touch a file)."""

    kind: str
    link: str | None
    data: bytes | None
    inode: int
    mode: int
    modified_ns: int

    @classmethod
    def of(cls, path: Path) -> Snapshot | None:
        if not os.path.lexists(path):
            return None
        status = path.lstat()
        link = os.readlink(path) if path.is_symlink() else None
        data = path.read_bytes() if stat.S_ISREG(status.st_mode) else None
        kind = stat.filemode(status.st_mode)[0]
        mode = stat.S_IMODE(status.st_mode)
        return cls(kind, link, data, status.st_ino, mode, status.st_mtime_ns)


def snapshots(*paths: Path) -> dict[Path, Snapshot | None]:
    return {path: Snapshot.of(path) for path in paths}


def assert_refused(
    completed: Ran,
    before: dict[Path, Snapshot | None],
    *phrases: str,
    exit_code: int = 2,
) -> None:
    """A one-paragraph refusal holding every phrase, and nothing on disk changed (no backup
    or temporary file left beside any of the files either)."""
    assert completed.returncode == exit_code, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    for phrase in phrases:
        assert phrase in message(completed)
    assert snapshots(*before) == before
    folders = {path.parent for path in before}
    assert [entry for folder in folders for entry in folder.glob(".*lrfind-backup")] == []


def assert_written(completed: Ran, target: Path) -> None:
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    assert f"into {target}" in message(completed)
    assert list(target.parent.glob(".*lrfind-backup")) == []


def apply(tmp_path: Path, config: Path, *extra: Any, columns: int = 300) -> Any:
    return lrfind("apply", write_result(tmp_path), config, *extra, columns=columns)


# ---------------------------------------------------------------------------------------------
# Where the file lives


def test_a_symlink_edits_the_real_file_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "configs" / "train.yaml"
    real.parent.mkdir()
    real.write_text("model: lenet\n")
    link = tmp_path / "train.yaml"
    link.symlink_to(Path("configs") / "train.yaml")
    completed = apply(tmp_path, link)
    assert_written(completed, link)
    assert link.is_symlink() and os.readlink(link) == str(Path("configs") / "train.yaml")
    assert yaml.safe_load(real.read_text())["scheduler"]["kind"] == "onecycle"
    assert real.read_text().startswith("model: lenet\n")


def test_a_hard_link_stays_one_file_with_its_mode(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\n")
    config.chmod(0o640)
    other = tmp_path / "shared.yaml"
    os.link(config, other)
    inode = config.stat().st_ino
    assert_written(apply(tmp_path, config), config)
    assert config.stat().st_ino == inode == other.stat().st_ino
    assert other.read_bytes() == config.read_bytes() and b"kind: onecycle" in other.read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_a_read_only_file_is_refused_even_for_root(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\n")
    config.chmod(0o444)  # root may write it anyway; the bits say the user does not want that
    before = snapshots(config)
    completed = apply(tmp_path, config)
    assert_refused(completed, before, f"{config} is read-only (mode 444)", "chmod u+w")


def test_a_file_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    config = folder / "train.yaml"
    config.write_text("model: lenet\n")
    folder.chmod(0o555)
    try:
        before = snapshots(config)
        completed = apply(tmp_path, config)
        assert_refused(completed, before, f"read-only folder, {folder}", f"chmod u+w {folder}")
        assert sorted(os.listdir(folder)) == ["train.yaml"]
    finally:
        folder.chmod(0o755)


def test_a_folder_named_like_a_config_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "train.yaml"
    folder.mkdir()
    before = snapshots(folder)
    completed = apply(tmp_path, folder)
    assert_refused(completed, before, f"{folder} is a folder, not a file", "Pass the config file")
    assert list(folder.iterdir()) == []


def test_a_named_pipe_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "train.yaml"
    os.mkfifo(fifo)
    before = snapshots(fifo)
    with fifo_watchdog(fifo, after_s=30.0) as blocked:
        completed = apply(tmp_path, fifo)
    assert blocked == []  # apply never sat reading the pipe
    assert_refused(completed, before, f"{fifo} is a named pipe (FIFO)", "path of the file")


@contextlib.contextmanager
def fifo_watchdog(fifo: Path, after_s: float) -> Iterator[list[str]]:
    """Unblock whoever reads `fifo` for longer than `after_s` (a writer opens and closes it:
    the reader sees the end of the file) and record that it had to."""
    blocked: list[str] = []
    done = threading.Event()

    def watch() -> None:
        if done.wait(after_s):
            return
        try:  # opening for writing without blocking succeeds only while a reader waits
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            blocked.append(f"a reader blocked on {fifo} for {after_s} s")
        except OSError:
            pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield blocked
    finally:
        done.set()
        watcher.join()


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "train.yaml"
    link.symlink_to(tmp_path / "moved.yaml")
    before = snapshots(link, tmp_path / "moved.yaml")
    completed = apply(tmp_path, link)
    assert_refused(
        completed, before, f"symbolic link to {tmp_path / 'moved.yaml'}, which does not exist",
        "Point the link at your config",
    )  # fmt: skip


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.symlink_to(second)
    second.symlink_to(first)
    before = snapshots(first, second)
    completed = apply(tmp_path, first)
    assert_refused(completed, before, f"{first} is a symbolic link that leads back to itself")
    assert "Fix the link" in message(completed)


def test_a_backup_left_by_an_interrupted_apply_is_not_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model: lenet\nsched")  # cut short while it was written
    backup = tmp_path / ".train.yaml.lrfind-backup"
    backup.write_text("model: lenet\n")
    before = snapshots(config, backup)
    completed = apply(tmp_path, config)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert f"{backup} exists" in message(completed)
    assert f"copy {backup} over {config}" in message(completed)
    assert snapshots(config, backup) == before


# ---------------------------------------------------------------------------------------------
# What the file holds


def test_crlf_yaml_keeps_crlf_on_every_line_and_changes_only_the_new_ones(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    before = b"# LeNet\r\nmodel: lenet\r\nbatch_size: 256\r\n"
    config.write_bytes(before)
    assert_written(apply(tmp_path, config), config)
    after = config.read_bytes()
    assert after.startswith(before)
    assert after.count(b"\n") == after.count(b"\r\n") == 9  # 3 kept and 6 new lines
    assert yaml.safe_load(after)["scheduler"]["kind"] == "onecycle"


def test_crlf_toml_keeps_crlf_on_every_line(tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    before = b'model = "lenet"\r\n\r\n[logging]\r\nevery = 50  # steps\r\n'
    config.write_bytes(before)
    assert_written(apply(tmp_path, config, "--force"), config)
    after = config.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == after.count(b"\r\n")
    assert tomllib.loads(after.decode())["scheduler"]["kind"] == "onecycle"


def test_mixed_line_endings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_bytes(b"model: lenet\r\nbatch_size: 256\n")
    before = snapshots(config)
    completed = apply(tmp_path, config)
    assert_refused(completed, before, "mixes line endings (1 CRLF, 1 LF", f"dos2unix {config}")


def test_a_byte_order_mark_stays_first(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    before = "\ufeffmodel: lenet\n".encode()
    config.write_bytes(before)
    assert_written(apply(tmp_path, config), config)
    after = config.read_bytes()
    assert after.startswith(before) and after.count(b"\xef\xbb\xbf") == 1


def test_a_config_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_bytes("model: lenet  # café\n".encode("latin-1"))
    before = snapshots(config)
    completed = apply(tmp_path, config)
    assert_refused(completed, before, f"{config} is not UTF-8 text", "Save it as UTF-8")


def test_json_keeps_numbers_escapes_and_one_line_arrays_as_written(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    head = '{\n  "lr": 1e-4,\n  "name": "caf\\u00e9",\n  "url": "a\\/b",\n  "sizes": [1, 2, 3]'
    config.write_text(head + "\n}\n")
    assert_written(apply(tmp_path, config, "--force"), config)
    after = config.read_text()
    assert after.startswith(head + ",\n") and after.endswith("\n  }\n}\n")
    written = json.loads(after)
    assert written["lr"] == 1e-4 and written["name"] == "café"
    assert written["scheduler"]["kind"] == "onecycle"
    assert after[len(head) :].startswith(',\n  "scheduler": {\n    "kind": "onecycle",')


def test_yaml_written_its_own_way_keeps_every_line_it_does_not_change(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    before = (
        "%YAML 1.2\n---\nmodel:      lenet   # aligned\nsizes: [1,2 ,3]\nnested:\n    deep: 1\n"
    )
    config.write_text(before)
    assert_written(apply(tmp_path, config), config)
    after = config.read_text()
    assert after.startswith(before) and after[len(before) :].startswith("scheduler:\n")


@pytest.mark.parametrize(
    ("text", "key", "phrase"),
    [
        ("shared: &shared\n  kind: onecycle\nscheduler: *shared\n", "scheduler",
         "`scheduler` is shared through the anchor &shared"),
        ("base: &base\n  kind: onecycle\nscheduler:\n  <<: *base\n  pct_start: 0.3\n",
         "scheduler", "`scheduler` takes keys from a merge key"),
        ("defaults: &defaults\n  epochs: 5\ntrain: *defaults\n", "train.scheduler",
         "`train` is shared through the anchor &defaults"),
        ("scheduler:\n  kind: onecycle\n  max_lr: &top 0.1\nwarmup:\n  lr: *top\n", "scheduler",
         "`scheduler` is shared through the anchor &top"),
    ],
    ids=["alias", "merge-key", "nested-key-through-alias", "anchor-inside-the-section"],
)  # fmt: skip
def test_a_yaml_section_shared_through_an_alias_is_refused(
    tmp_path: Path, text: str, key: str, phrase: str
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(text)
    before = snapshots(config)
    completed = apply(tmp_path, config, "--key", key, "--force")
    assert_refused(completed, before, phrase, f"Write `{key}` (and the mappings above it) out")


def test_dry_run_shows_exactly_the_lines_apply_writes(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    before = '{"note": "' + "x" * 200 + '",\n "lr": 1e-4}'  # no final newline
    config.write_text(before)
    preview = apply(tmp_path, config, "--dry-run", "--force", columns=40)
    assert preview.returncode == 0 and "Traceback" not in preview.stderr
    assert config.read_text() == before  # nothing written
    shown = preview.stdout.splitlines()
    added = [line[1:] for line in shown if line.startswith("+") and not line.startswith("+++")]
    removed = [line[1:] for line in shown if line.startswith("-") and not line.startswith("---")]
    assert "\\ No newline at end of file" in shown
    assert_written(apply(tmp_path, config, "--force"), config)
    after = config.read_text().splitlines()
    assert removed == [' "lr": 1e-4}'] and after[0] == before.splitlines()[0]
    assert after[1:] == added  # every new line, whole, though the terminal is 40 wide


def test_dry_run_shows_tabs_and_odd_characters_as_they_will_be_written(tmp_path: Path) -> None:
    """A tab-indented JSON with a line separator (U+2028) inside a string: the preview prints
    the very characters of every line (no tabs turned into spaces, no line split there)."""
    config = tmp_path / "train.json"
    before = '{\n\t"note": "a\u2028b",\n\t"lr": 1e-4\n}\n'
    config.write_bytes(before.encode())
    preview = apply(tmp_path, config, "--dry-run", "--force", columns=40)
    assert preview.returncode == 0 and "Traceback" not in preview.stderr
    assert config.read_bytes() == before.encode()
    lines = preview.stdout.split("\n")
    added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert any(line.startswith("\t\t") for line in added), added
    assert_written(apply(tmp_path, config, "--force"), config)
    written = config.read_text().split("\n")
    assert all(line in written for line in added)
    assert '\t"note": "a\u2028b",' in written and '\t"note": "a\u2028b",' in preview.stdout
