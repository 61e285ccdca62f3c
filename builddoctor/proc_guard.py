"""The guard between builddoctor and every child it runs (proc.run and proc.stream): when builddoctor
dies, even by SIGKILL, the guard takes the child's whole tree down with it.

The kernel's parent-death signal reaches only a direct child; ninja's jobs run in process groups
of their own, two levels further down, and went on compiling for minutes after builddoctor was
killed. The guard is that direct child: the parent-death signal (SIGTERM, set by proc.stream)
reaches it, and it kills every process of its session and every descendant (as a child subreaper,
orphans of the tree come to it), then exits. It also ends the tree when the command ends, and dies
by the child's own signal so the caller sees what the child saw.

Run as a script (``python -I -S proc_guard.py STATUS_FD ARGV...``), not imported: it must work with a clean
environment, whatever way builddoctor itself was installed. Linux only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (parent, session) from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and fields[0] != "Z":
            out[int(name)] = (int(fields[1]), int(fields[3]))
    return out


def _tree(me: int, sid: int) -> set[int]:
    table = _table()
    found = {pid for pid, (_pp, s) in table.items() if s == sid}
    todo = [me]
    while todo:
        parent = todo.pop()
        for pid, (pp, _s) in table.items():
            if pp == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    found.discard(me)
    return found


def _end_tree() -> None:
    me, sid = os.getpid(), os.getsid(0)
    for _ in range(20):  # a process forking as it dies is caught in a later round
        pids = _tree(me, sid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # reap what came to us
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not pid:
            time.sleep(0.01)


def _say(fd: int, why: str) -> None:
    """Tell builddoctor on ``fd`` that the child could not start (so it reports "not found", not exit 127)."""
    try:
        os.write(fd, why.encode(errors="replace")[:4096])
    except OSError:
        pass


def main(argv: list[str]) -> int:
    status_fd = int(argv.pop(0))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass

    def stop(signum, frame):  # noqa: ARG001 - builddoctor died or stopped us: the whole tree goes
        _end_tree()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    if os.getppid() == 1:  # builddoctor died before the handlers were set
        return 128 + signal.SIGTERM
    try:
        child = subprocess.Popen(argv)
    except FileNotFoundError:
        _say(status_fd, "not found")
        return 127
    except PermissionError:
        _say(status_fd, "permission denied")
        return 126
    except (OSError, ValueError) as exc:
        _say(status_fd, getattr(exc, "strerror", None) or str(exc))
        return 126
    os.close(status_fd)
    rc = child.wait()
    _end_tree()
    if rc < 0:  # die by the child's signal, so the caller reports it as the child's
        signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
