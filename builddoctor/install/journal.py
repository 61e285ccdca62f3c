"""The one journal of replace and rollback: apply the steps, or undo the ones done.

Kept on disk as ``journal.json`` in the backup folder from before the first file changes until
the end, and locked while the command runs: a replace or rollback killed half-way (SIGKILL, power
loss) leaves it behind for ``recover`` to undo.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor.install.files import FORMAT, KEPT, MAX_MANIFEST, SHA, UNDO, FileState, plain_name, put
from builddoctor.install_marker import Unusable, read_small
from builddoctor.profiles import SchemaError, Serializable

#: tests only (honoured only under pytest): "FILE:N" appends each step's number to FILE and waits a
#: minute after step N, so that a test can kill a real replace or rollback half-way
PAUSE_HOOK = "BUILDDOCTOR_TEST_PAUSE_BETWEEN_FILES"


@dataclass
class JournalStep(Serializable):
    dest: str  # absolute, directly inside the journal's dest_dir
    want: FileState  # what the step puts there
    undo: FileState  # what was there before it
    undo_src: str | None = None  # where the bytes of ``undo`` are kept (a file in the backup folder)


@dataclass
class Journal(Serializable):
    """``journal.json``: the steps of a replace or rollback under way, and how to undo each."""

    format: int
    command: str  # "replace" or "rollback"
    dest_dir: str
    steps: list[JournalStep] = field(default_factory=list)


@dataclass
class Step:
    dest: Path
    want: FileState
    want_src: Path | None
    undo: FileState  # what dest holds before the step, and where its bytes are kept meanwhile
    undo_src: Path | None


class Failed(Exception):
    def __init__(self, cause: BaseException, at: str, put_back: list[str], stuck: list[str]):
        super().__init__(str(cause))
        self.cause, self.at, self.put_back, self.stuck = cause, at, put_back, stuck


def transact(steps: list[Step], commit: Callable[[], None] | None = None) -> None:
    """Apply every step, then ``commit``; on any failure (Ctrl-C included) undo the steps done,
    newest first, and raise ``Failed`` naming the files."""
    done: list[Step] = []
    pending: Step | None = None
    try:
        for s in steps:
            pending = s
            put(s.dest, s.want, s.want_src)
            done.append(s)
            pending = None
            _test_pause(len(done))
        if commit is not None:
            commit()
    except BaseException as exc:  # noqa: BLE001 - every failure is undone, then reported
        put_back, stuck = [], []
        if pending is not None:  # its rename is atomic, so it most likely never happened; undo it anyway
            try:
                put(pending.dest, pending.undo, pending.undo_src)
            except BaseException:  # noqa: BLE001
                stuck.append(str(pending.dest))
        for s in reversed(done):
            try:
                put(s.dest, s.undo, s.undo_src)
                put_back.append(str(s.dest))
            except BaseException:  # noqa: BLE001 - keep putting back the others
                stuck.append(str(s.dest))
        at = os.path.basename(pending.dest) if pending is not None else "the end"
        raise Failed(exc, at, put_back, stuck) from exc


def _test_pause(n: int) -> None:
    """The test hook PAUSE_HOOK; nothing outside pytest (PYTEST_CURRENT_TEST is pytest's own)."""
    hook = os.environ.get(PAUSE_HOOK)
    if not hook or "PYTEST_CURRENT_TEST" not in os.environ:
        return
    where, _, at = hook.rpartition(":")
    with open(where, "a") as fh:
        fh.write(f"{n}\n")
    if str(n) == at:
        time.sleep(60)


def write_journal(path: Path, command: str, dest_dir: Path, steps: list[Step]) -> int:
    """Write the journal of ``steps`` at ``path`` (durably, before any of them runs); the returned fd
    holds a lock on it for as long as the command runs (the kernel drops it when the process dies)."""
    j = Journal(
        format=FORMAT,
        command=command,
        dest_dir=str(dest_dir),
        steps=[JournalStep(str(s.dest), s.want, s.undo, str(s.undo_src) if s.undo_src else None) for s in steps],
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = memoryview(j.to_json(indent=1).encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd


def end_journal(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)
    os.close(fd)


def load_journal(backup: Path, path: Path) -> Journal:
    """The journal at ``path``, checked like a manifest: only what replace and rollback write."""
    raw = read_small(path, MAX_MANIFEST)
    try:
        j = Journal.from_dict(json.loads(raw.decode("utf-8")))
    except (ValueError, RecursionError, SchemaError) as exc:
        raise Unusable(f"journal.json cannot be read ({' '.join(str(exc).split())[:200]})") from None
    d = j.dest_dir
    if (
        j.command not in ("replace", "rollback")
        or not isinstance(d, str)
        or not d
        or "\x00" in d
        or not os.path.isabs(d)
        or os.path.normpath(d) != d
    ):
        raise Unusable("journal.json is not one builddoctor writes")
    homes = {str(backup / "files"), str(backup / UNDO), str(backup / KEPT)}
    for i, st in enumerate(j.steps):
        if not _step_as_written(st, d, homes):
            raise Unusable(f"journal.json step {i} ({st.dest[:200]!r}) is not one builddoctor writes")
    return j


def _step_as_written(st: JournalStep, d: str, homes: set[str]) -> bool:
    """A step replace or rollback writes: a plain file in ``d``, states it records, an undo copy in ``homes``."""
    name = os.path.basename(st.dest)
    ok = "\x00" not in st.dest and os.path.normpath(st.dest) == st.dest and os.path.dirname(st.dest) == d
    ok = ok and plain_name(name)
    for state in (st.want, st.undo):
        ok = ok and (
            state.type == "absent"
            or (state.type == "link" and bool(state.link) and "\x00" not in (state.link or ""))
            or (state.type == "file" and bool(SHA.fullmatch(state.sha256 or "")))
        )
    if ok and st.undo.type == "file":
        src = st.undo_src or ""
        ok = (
            "\x00" not in src
            and os.path.normpath(src) == src
            and os.path.dirname(src) in homes
            and plain_name(os.path.basename(src))
            and isinstance(st.undo.mode, int)
            and 0 <= st.undo.mode <= 0o7777
        )
    return ok
