"""The one way builddoctor runs another program.

Always an argument list (never a shell string), always a time limit, always a clean
environment, output captured and bounded. A program that is missing, hangs, or dies
from a signal is a result to report, never an exception that escapes.

Nothing a child starts outlives its run: each child gets its own session; on Linux
builddoctor is a child subreaper (orphans reparent to it, not to init) and every child
carries a run marker in its environment, so after the child exits or times out its
process group, its session and every orphan with its marker are killed. Should builddoctor
itself die (SIGKILL included), every child runs under the guard process (proc_guard.py),
which the kernel's parent-death signal reaches and which ends the child's whole tree. Output is read
in a loop and bounded (the first MAX_OUTPUT bytes and a tail), and the whole run,
draining included, ends by a deadline. SIGINT/SIGTERM/SIGHUP are handled here too
(``install_signal_handlers``): stop every descendant, then raise ``Interrupted``.
"""

from __future__ import annotations

import collections
import itertools
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

#: variables passed through to children: enough to find tools and write temp files,
#: nothing that changes how a llama.cpp binary or a compiler behaves behind our back.
_KEEP = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "SYSTEMROOT", "USER", "LOGNAME")

#: the user's choice of devices: passed to llama.cpp programs when set, because it was made on
#: purpose (a CPU-emulated Vulkan device such as llvmpipe is listed only when named here).
DEVICE_ENV = ("GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")

MAX_OUTPUT = 1 << 20  # bytes of each stream kept from the start (run) or the end (stream)
TAIL_OUTPUT = 64 << 10  # bytes kept from the other end: a crash message comes last, a build's first error first
LINE_MAX = 64 << 10  # longest line handed to stream()'s on_line
DRAIN_S = 2.0  # after the child ended: how long its output may still take to arrive
REAP_S = 3.0  # after a kill: how long the child may take to go
GUARD_START_S = 5.0  # the most time of the guard's own start not counted against the child's time limit
MARKER = "BUILDDOCTOR_RUN"  # environment variable naming the run a process belongs to

_CHUNK = 1 << 16
_GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "proc_guard.py")
_LINUX = sys.platform.startswith("linux")


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; every child was stopped. ``signame``: which one."""

    def __init__(self, signame: str = "SIGINT"):
        super().__init__(signame)
        self.signame = signame


@dataclass
class Completed:
    argv: list[str]
    returncode: int | None  # None: did not finish or did not start
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    signal: str | None = None  # e.g. SIGILL when the child died from a signal
    error: str | None = None  # could not start it: not found, permission, exec format

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def from_user(names) -> dict[str, str]:
    """The variables among ``names`` that the user set (non-empty)."""
    return {k: os.environ[k] for k in names if os.environ.get(k)}


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEEP if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def program_env(home: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The environment a llama.cpp program under test runs with: clean, plus the user's own library
    path and device choice (LD_LIBRARY_PATH decides which libraries load; DEVICE_ENV, which devices).
    ``home``: its HOME (a throw-away folder: a program under test must not read or write the user's)."""
    env = clean_env(from_user(("LD_LIBRARY_PATH", *DEVICE_ENV)))
    if home is not None:
        env["HOME"] = str(home)
    return env


# --------------------------------------------------------------------------- the process table

_lock = threading.RLock()  # re-entrant: the signal handler runs in the main thread, maybe while it holds this
_live: dict[int, str] = {}  # pid of a running child -> its run marker
_stopping = False  # set by stop_all: no new child starts
_counter = itertools.count(1)
_prctl = None


def _libc_prctl():
    """prctl from libc, looked up once in the parent (never between fork and exec)."""
    global _prctl
    if _prctl is None and _LINUX:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
            _prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of our children come to us
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def _parent_death_term() -> None:  # runs in the guard between fork and exec
    """The guard (proc_guard.py) gets SIGTERM when builddoctor dies, and ends the tree below it."""
    if _prctl:
        _prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


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


def _members(leader: int, marker: str | None, table) -> set[int]:
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


def _kill_all(find: Callable[[dict], set[int]], *, rounds: int = 20) -> None:
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


def stop_all() -> None:
    """Kill every descendant of builddoctor (and every process with one of its run markers);
    start no child after this."""
    global _stopping
    _stopping = True
    me = os.getpid()
    with _lock:
        live = set(_live)
    for pid in live:
        _killpg(pid)
    _kill_all(lambda t: _subtree({me}, t) | _members(0, None, t) | {p for p in live if p in t})


def kill_leftovers() -> None:
    """Kill what earlier runs left behind (orphans no run could claim); for a command's end."""
    me = os.getpid()
    with _lock:
        live = set(_live)
    _kill_all(lambda t: (_subtree({me}, t) - live - _subtree(live, t)) | _members(0, None, t) - live)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


# --------------------------------------------------------------------------- signals

_handlers_installed = False


def _handler(exit_code: int | None):
    def on_signal(signum, frame):  # noqa: ARG001
        name = signal.Signals(signum).name
        if _stopping and exit_code is not None:
            # a second signal while stopping: no more waiting
            stop_all()
            os.write(2, f"error: interrupted ({name}); stopped.\n".encode())
            os._exit(exit_code)
        stop_all()
        if exit_code is not None:
            _watchdog(exit_code, name)
        raise Interrupted(name)

    return on_signal


def _watchdog(exit_code: int, name: str, grace: float = 5.0) -> None:
    """Exit after ``grace`` seconds even if the unwinding is stuck (in C code, a blocked thread)."""

    def fire() -> None:
        stop_all()
        os.write(2, f"error: interrupted ({name}); stopped.\n".encode())
        os._exit(exit_code)

    t = threading.Timer(grace, fire)
    t.daemon = True
    t.start()


SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


def install_signal_handlers(exit_code: int) -> None:
    """For the CLI, once: the first SIGINT/SIGTERM/SIGHUP kills every descendant and raises
    ``Interrupted`` (temp folders are removed as it unwinds); a second one, or unwinding for
    more than a few seconds, exits with ``exit_code`` at once."""
    global _handlers_installed
    _libc_prctl()
    for s in SIGNALS:
        signal.signal(s, _handler(exit_code))
    _handlers_installed = True


@contextmanager
def signals_raise() -> Iterator[None]:
    """For a library caller (``build.build``): during the block, a signal stops the children and
    raises ``Interrupted``. Inside the CLI (handlers installed) or off the main thread: nothing."""
    global _stopping
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler(None))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _stopping = False


# --------------------------------------------------------------------------- running


class _Capture:
    """The first ``head`` and the last ``tail`` bytes of a stream, in bounded memory."""

    def __init__(self, head: int, tail: int):
        self.head_max, self.tail_max = head, tail
        self.head = bytearray()
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_len = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_max:
            self.tail.append(data)
            self.tail_len += len(data)
            while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_max:
                self.tail_len -= len(self.tail.popleft())

    def text(self) -> str:
        tail = b"".join(self.tail)[-self.tail_max :] if self.tail_max else b""
        cut = self.total - len(self.head) - len(tail)
        head = self.head.decode("utf-8", errors="replace")
        if cut <= 0:
            return head + tail.decode("utf-8", errors="replace")
        return head + f"\n[... {cut} bytes of output cut ...]\n" + tail.decode("utf-8", errors="replace")


class _Lines:
    """Splits a byte stream into lines for ``on_line``; a line longer than LINE_MAX is cut."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line = on_line
        self.buf = bytearray()
        self.skipping = False

    def add(self, data: bytes) -> None:
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > LINE_MAX:
                    if not self.skipping:
                        self._emit(bytes(self.buf[:LINE_MAX]) + b" [... line cut ...]")
                    self.skipping = True
                    self.buf.clear()
                return
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            if self.skipping:
                self.skipping = False
            else:
                self._emit(line[:LINE_MAX])

    def close(self) -> None:
        if self.buf and not self.skipping:
            self._emit(bytes(self.buf[:LINE_MAX]))
        self.buf.clear()

    def _emit(self, raw: bytes) -> None:
        self.on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def _exited(p: subprocess.Popen) -> bool:
    """Whether the child ended, without reaping it (its pid cannot be reused while we clean up)."""
    if not hasattr(os, "waitid"):  # no WNOWAIT here: reap it (its group is killed first all the same)
        return p.poll() is not None
    try:
        info = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _signal_name(rc: int | None) -> str | None:
    if rc is None or rc >= 0:
        return None
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def _execute(
    argv: list[str],
    *,
    timeout: float,
    env: Mapping[str, str],
    cwd,
    stdin_data: str | None,
    merge: bool,
    on_line: Callable[[str], None] | None,
) -> Completed:
    if _stopping:
        raise Interrupted("SIGTERM")
    _libc_prctl()
    marker = f"{os.getpid()}.{next(_counter)}"
    env = {**env, MARKER: marker}
    start = time.monotonic()
    deadline = start + timeout
    shown = argv
    status_r = status_w = None
    if _prctl:
        # every child runs under the guard (proc_guard.py): the kernel's parent-death signal reaches only a
        # direct child, and a setsid() grandchild or ninja's jobs would outlive a SIGKILLed builddoctor
        status_r, status_w = os.pipe()
        os.set_inheritable(status_w, True)
        argv = [sys.executable, "-I", "-S", _GUARD, str(status_w), *argv]
    try:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            pass_fds=(status_w,) if status_w is not None else (),
            preexec_fn=_parent_death_term if _prctl else None,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        if status_r is not None:
            os.close(status_r)
        named: dict[type, str] = {FileNotFoundError: "not found", PermissionError: "permission denied"}
        why = named.get(type(exc))
        return Completed(shown, None, error=why or getattr(exc, "strerror", None) or str(exc))
    finally:
        if status_w is not None:
            os.close(status_w)
    with _lock:
        _live[p.pid] = marker
    assert p.stdout is not None  # PIPE above
    caps = {p.stdout.fileno(): _Capture(TAIL_OUTPUT, MAX_OUTPUT) if merge else _Capture(MAX_OUTPUT, TAIL_OUTPUT)}
    if not merge:
        assert p.stderr is not None  # PIPE above unless merged
        caps[p.stderr.fileno()] = _Capture(MAX_OUTPUT, TAIL_OUTPUT)
    lines = _Lines(on_line) if on_line is not None else None
    timed_out = False
    said = bytearray()  # the guard's word on its status pipe: why the child could not start
    try:
        timed_out = _pump(p, caps, lines, stdin_data, deadline, marker, status_r, said)
    except BaseException:
        _finish(p, marker, kill=True)
        raise
    finally:
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        with _lock:
            _live.pop(p.pid, None)
    if lines is not None:
        lines.close()
    if status_r is not None:
        why = (bytes(said) + _guard_status(status_r)).decode(errors="replace")
        if why and not timed_out:
            return Completed(shown, None, error=why)
    texts = [c.text() for c in caps.values()]
    out, err = texts[0], (texts[1] if len(texts) > 1 else "")
    if timed_out:
        return Completed(shown, None, out, err, timed_out=True)
    rc = p.returncode
    return Completed(shown, rc, out, err, signal=_signal_name(rc))


def _guard_status(fd: int) -> bytes:
    """What is left on the guard's status pipe (then closed)."""
    try:
        os.set_blocking(fd, False)
        return os.read(fd, 4096)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _pump(
    p: subprocess.Popen,
    caps: dict,
    lines,
    stdin_data: str | None,
    deadline: float,
    marker: str,
    status_fd: int | None = None,
    said: bytearray | None = None,
) -> bool:
    """Read the child's output until it ended and its pipes closed; True when the deadline hit.
    ``status_fd``: the guard's status pipe, whose end says the child started (its words go to ``said``)."""
    begun = time.monotonic()
    sel = selectors.DefaultSelector()
    for fd in caps:
        sel.register(fd, selectors.EVENT_READ)
    if status_fd is not None:
        sel.register(status_fd, selectors.EVENT_READ)
    pending = memoryview(stdin_data.encode()) if stdin_data is not None else None
    if p.stdin is not None:
        os.set_blocking(p.stdin.fileno(), False)
        sel.register(p.stdin.fileno(), selectors.EVENT_WRITE)
    ended_at = None
    try:
        while True:
            if _stopping:
                raise Interrupted("SIGTERM")
            now = time.monotonic()
            if ended_at is None and _exited(p):
                ended_at = now
                _finish(p, marker, kill=False)  # leftovers (daemons, setsid grandchildren) go now
            readers = [k for k in sel.get_map().values() if k.events & selectors.EVENT_READ]
            if ended_at is not None and (not readers or now - ended_at > DRAIN_S):
                p.wait()
                return False
            if now >= deadline:
                _finish(p, marker, kill=True)
                return True
            if not sel.get_map():
                time.sleep(min(0.05, deadline - now))
                continue
            for key, _ in sel.select(timeout=min(0.1, max(0.0, deadline - now))):
                fd = key.fd
                if fd == status_fd:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:
                        data = b""
                    if data and said is not None:
                        said += data[:4096]
                    elif not data:
                        sel.unregister(fd)
                        # the child starts now: the guard's own start (a Python, slow on a loaded machine)
                        # is not the child's time
                        deadline += min(GUARD_START_S, time.monotonic() - begun)
                    continue
                if key.events & selectors.EVENT_WRITE:
                    try:
                        n = os.write(fd, pending[:_CHUNK]) if pending else 0
                    except BlockingIOError:
                        continue
                    except OSError:  # the child closed its stdin
                        pending = None
                    if pending is not None:
                        pending = pending[n:]
                    if not pending and p.stdin is not None:  # a PIPE whenever there is data to write
                        sel.unregister(fd)
                        p.stdin.close()
                    continue
                try:
                    data = os.read(fd, _CHUNK)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(fd)
                    continue
                caps[fd].add(data)
                if lines is not None:
                    lines.add(data)
    finally:
        sel.close()


def _finish(p: subprocess.Popen, marker: str, *, kill: bool) -> None:
    """End a run: kill the child (``kill``) and everything it left behind, within REAP_S."""
    if kill:
        _killpg(p.pid)
        try:
            p.kill()
        except OSError:
            pass
    _killpg(p.pid)
    _kill_all(lambda t: _members(p.pid, marker, t))
    if kill:
        try:
            p.wait(timeout=REAP_S)
        except subprocess.TimeoutExpired:  # stuck in the kernel (D state): leave it, never hang
            pass


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin_data: str | None = None,
) -> Completed:
    """Run ``argv`` with a hard time limit; stdout and stderr kept apart, each bounded (the first
    MAX_OUTPUT bytes and the last TAIL_OUTPUT)."""
    argv = [str(a) for a in argv]
    return _execute(
        argv,
        timeout=timeout,
        env=dict(env if env is not None else clean_env(extra_env)),
        cwd=cwd,
        stdin_data=stdin_data,
        merge=False,
        on_line=None,
    )


def stream(
    argv: Sequence[str],
    *,
    timeout: float,
    on_line=None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Completed:
    """Run ``argv`` like :func:`run`, but hand each output line (stdout and stderr merged) to
    ``on_line`` as it comes; for long builds that report progress. ``Completed.stdout`` holds
    the last MAX_OUTPUT bytes of output (and the first TAIL_OUTPUT). An exception in ``on_line``
    or an interruption kills the run and is re-raised."""
    argv = [str(a) for a in argv]
    return _execute(
        argv,
        timeout=timeout,
        env=dict(env if env is not None else clean_env(extra_env)),
        cwd=cwd,
        stdin_data=None,
        merge=True,
        on_line=on_line,
    )
