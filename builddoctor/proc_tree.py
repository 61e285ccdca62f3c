"""Which processes belong to builddoctor's runs, and killing them (proc.py runs the children).

A run is its child's process group and session, the child's descendants, and orphans that carry the
run's marker (``MARKER`` in their environment) and were reparented to builddoctor, a child
subreaper. The registry of live children is kept here, so that a kill spares the runs still going.
Linux reads /proc; elsewhere the table is empty and only process groups are killed.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

MARKER = "BUILDDOCTOR_RUN"  # environment variable naming the run a process belongs to

_lock = threading.RLock()  # re-entrant: the signal handler runs in the main thread, maybe while it holds this
_live: dict[int, str] = {}  # pid of a running child -> its run marker
_stopping = False  # set by stop_all: no new child starts
_prctl = None
_LINUX = sys.platform.startswith("linux")


def libc_prctl():
    """prctl from libc, looked up once in the parent (never between fork and exec)."""
    global _prctl
    if _prctl is None and _LINUX:
        try:
            import ctypes  # noqa: PLC0415 (ctypes: Linux only, when the first child starts, not at every start-up)

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
            _prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of our children come to us
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def parent_death_term() -> None:  # runs in the guard between fork and exec
    """The guard (proc_guard.py) gets SIGTERM when builddoctor dies, and ends the tree below it."""
    if _prctl:
        _prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def stopping() -> bool:
    """Whether ``stop_all`` ran (a signal came): no child starts, a running one's wait ends."""
    return _stopping


def stop_all() -> None:
    """Kill every descendant of builddoctor (and every process with one of its run markers);
    start no child after this."""
    global _stopping
    _stopping = True
    kill_descendants()


def allow_starts() -> None:
    """Children may start again (a library caller's ``signals_raise`` block is over)."""
    global _stopping
    _stopping = False


def register(pid: int, marker: str) -> None:
    """A child started: its run is live until ``unregister``."""
    with _lock:
        _live[pid] = marker


def unregister(pid: int) -> None:
    with _lock:
        _live.pop(pid, None)


def _table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (parent, process group, session, state) of every process /proc shows."""
    out: dict[int, tuple[int, int, int, str]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2 :].split()
        try:
            out[int(name)] = (int(rest[1]), int(rest[2]), int(rest[3]), rest[0].decode())
        except (IndexError, ValueError):
            continue
    return out


def _marker_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read(1 << 20)
    except OSError:
        return None
    key = MARKER.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode(errors="replace")
    return None


def _subtree(roots: set[int], table) -> set[int]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, *_rest) in table.items():
        kids[ppid].append(pid)
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        for k in kids.get(pid, ()):
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return seen


def members(leader: int, marker: str | None, table) -> set[int]:
    """The processes of one run: the leader's group and session, the leader's descendants, and
    orphans (reparented to us) carrying the run's marker (``marker`` None: any of our markers),
    with all of theirs. The leader itself is left out (it is reaped by its Popen)."""
    me = os.getpid()
    prefix = f"{me}."
    found = {p for p, (_pp, pg, sid, _st) in table.items() if leader and (pg == leader or sid == leader)}
    found |= _subtree({leader}, table) if leader else set()
    with _lock:
        live = dict(_live)
    for pid, (ppid, _pg, _sid, state) in table.items():
        if pid == me or pid in live or state == "Z":
            continue
        if ppid == me or marker is None:
            m = _marker_of(pid)
            if m is None and ppid == me and marker is not None and len(live) <= 1:
                found.add(pid)  # an orphan that dropped its environment, and no other run to own it
            elif m is not None and (m == marker or (marker is None and m.startswith(prefix))):
                found.add(pid)
    found |= _subtree(found, table)
    found.discard(me)
    found.discard(leader)
    return {p for p in found if table.get(p, (0, 0, 0, ""))[3] != "Z"}


def kill_all(find: Callable[[dict], set[int]], *, rounds: int = 20) -> None:
    """SIGKILL what ``find`` names until it names nothing (a process forking as it dies is
    caught in a later round); then reap those that became our children."""
    me = os.getpid()
    killed: set[int] = set()
    for _ in range(rounds):
        table = _table()
        targets = find(table) - {me}
        if not targets:
            break
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    with _lock:
        live = set(_live)
    deadline = time.monotonic() + 1.0
    pending = killed - live
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                got, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got = pid  # not our child: init or its own parent reaps it
            if got:
                pending.discard(pid)
        if pending:
            time.sleep(0.01)


def kill_descendants() -> None:
    """Kill every descendant of builddoctor and every process with one of its run markers."""
    me = os.getpid()
    with _lock:
        live = set(_live)
    for pid in live:
        killpg(pid)
    kill_all(lambda t: _subtree({me}, t) | members(0, None, t) | {p for p in live if p in t})


def kill_leftovers() -> None:
    """Kill what earlier runs left behind (orphans no run could claim); for a command's end."""
    me = os.getpid()
    with _lock:
        live = set(_live)
    kill_all(lambda t: (_subtree({me}, t) - live - _subtree(live, t)) | members(0, None, t) - live)


def killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
