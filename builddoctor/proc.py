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
draining included, ends by a deadline. SIGINT/SIGTERM/SIGHUP stop every descendant, then
raise ``Interrupted`` (``install_signal_handlers``).

Beside it: proc_tree.py (which processes belong to a run, the registry of live children, the
killing), proc_output.py (bounded capture and lines), proc_signals.py (the handlers).
"""

from __future__ import annotations

import itertools
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from builddoctor.proc_output import Capture, Lines
from builddoctor.proc_signals import Interrupted
from builddoctor.proc_signals import install_signal_handlers as install_signal_handlers  # the CLI's, once
from builddoctor.proc_signals import signals_raise as signals_raise  # build.build's
from builddoctor.proc_tree import (
    MARKER,
    kill_all,
    killpg,
    libc_prctl,
    members,
    parent_death_term,
    register,
    stopping,
    unregister,
)
from builddoctor.proc_tree import kill_leftovers as kill_leftovers  # the CLI's, at a command's end

#: variables passed through to children: enough to find tools and write temp files,
#: nothing that changes how a llama.cpp binary or a compiler behaves behind our back.
_KEEP = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "SYSTEMROOT", "USER", "LOGNAME")

#: the user's choice of devices: passed to llama.cpp programs when set, because it was made on
#: purpose (a CPU-emulated Vulkan device such as llvmpipe is listed only when named here).
DEVICE_ENV = ("GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")

MAX_OUTPUT = 1 << 20  # bytes of each stream kept from the start (run) or the end (stream)
TAIL_OUTPUT = 64 << 10  # bytes kept from the other end: a crash message comes last, a build's first error first
DRAIN_S = 2.0  # after the child ended: how long its output may still take to arrive
REAP_S = 3.0  # after a kill: how long the child may take to go
GUARD_START_S = 5.0  # the most time of the guard's own start not counted against the child's time limit

_CHUNK = 1 << 16
_GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "proc_guard.py")


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


_counter = itertools.count(1)


# --------------------------------------------------------------------------- running


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
    """Start ``argv`` under the guard, pump its output until it ends or the deadline hits, and say how it went."""
    if stopping():
        raise Interrupted("SIGTERM")
    libc_prctl()
    marker = f"{os.getpid()}.{next(_counter)}"
    deadline = time.monotonic() + timeout
    started = _start(argv, {**env, MARKER: marker}, cwd, stdin_data is not None, merge)
    if isinstance(started, Completed):
        return started
    p, status_r = started
    register(p.pid, marker)
    caps = _captures(p, merge)
    lines = Lines(on_line) if on_line is not None else None
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
        unregister(p.pid)
    if lines is not None:
        lines.close()
    return _completed(argv, p, caps, timed_out, status_r, said)


def _start(
    argv: list[str], env: Mapping[str, str], cwd, with_stdin: bool, merge: bool
) -> tuple[subprocess.Popen, int | None] | Completed:
    """The child started in its own session (under the guard on Linux) and the guard's status pipe;
    or, when it could not start, the ``Completed`` that says why."""
    shown = argv
    status_r = status_w = None
    guarded = libc_prctl() is not None
    if guarded:
        # every child runs under the guard (proc_guard.py): the kernel's parent-death signal reaches only a
        # direct child, and a setsid() grandchild or ninja's jobs would outlive a SIGKILLed builddoctor
        status_r, status_w = os.pipe()
        os.set_inheritable(status_w, True)
        argv = [sys.executable, "-I", "-S", _GUARD, str(status_w), *argv]
    try:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            pass_fds=(status_w,) if status_w is not None else (),
            preexec_fn=parent_death_term if guarded else None,
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
    return p, status_r


def _captures(p: subprocess.Popen, merge: bool) -> dict[int, Capture]:
    """One bounded capture per output pipe: merged output keeps more of its end (a build's last lines)."""
    assert p.stdout is not None  # PIPE in _start
    caps = {p.stdout.fileno(): Capture(TAIL_OUTPUT, MAX_OUTPUT) if merge else Capture(MAX_OUTPUT, TAIL_OUTPUT)}
    if not merge:
        assert p.stderr is not None  # PIPE unless merged
        caps[p.stderr.fileno()] = Capture(MAX_OUTPUT, TAIL_OUTPUT)
    return caps


def _completed(
    shown: list[str], p: subprocess.Popen, caps: dict[int, Capture], timed_out: bool, status_r: int | None, said
) -> Completed:
    """The run's result: the guard's word when the child never started, else its output and end."""
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
    pump = _Pump(p, caps, lines, marker, deadline, status_fd, said)
    try:
        pump.watch(stdin_data)
        return pump.loop()
    finally:
        pump.sel.close()


@dataclass
class _Pump:
    """The state of one child's I/O loop: its pipes, what is left to write, and the deadline."""

    p: subprocess.Popen
    caps: dict[int, Capture]
    lines: Lines | None
    marker: str
    deadline: float
    status_fd: int | None
    said: bytearray | None
    begun: float = field(default_factory=time.monotonic)
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    pending: memoryview | None = None  # stdin not yet written

    def watch(self, stdin_data: str | None) -> None:
        for fd in self.caps:
            self.sel.register(fd, selectors.EVENT_READ)
        if self.status_fd is not None:
            self.sel.register(self.status_fd, selectors.EVENT_READ)
        self.pending = memoryview(stdin_data.encode()) if stdin_data is not None else None
        if self.p.stdin is not None:
            os.set_blocking(self.p.stdin.fileno(), False)
            self.sel.register(self.p.stdin.fileno(), selectors.EVENT_WRITE)

    def loop(self) -> bool:
        """Until the child ended and its output drained (False) or the deadline (True)."""
        ended_at = None
        while True:
            if stopping():
                raise Interrupted("SIGTERM")
            now = time.monotonic()
            if ended_at is None and _exited(self.p):
                ended_at = now
                _finish(self.p, self.marker, kill=False)  # leftovers (daemons, setsid grandchildren) go now
            readers = [k for k in self.sel.get_map().values() if k.events & selectors.EVENT_READ]
            if ended_at is not None and (not readers or now - ended_at > DRAIN_S):
                self.p.wait()
                return False
            if now >= self.deadline:
                _finish(self.p, self.marker, kill=True)
                return True
            if not self.sel.get_map():
                time.sleep(min(0.05, self.deadline - now))
                continue
            for key, _ in self.sel.select(timeout=min(0.1, max(0.0, self.deadline - now))):
                if key.fd == self.status_fd:
                    self._status(key.fd)
                elif key.events & selectors.EVENT_WRITE:
                    self._write(key.fd)
                else:
                    self._read(key.fd)

    def _status(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if data and self.said is not None:
            self.said += data[:4096]
        elif not data:
            self.sel.unregister(fd)
            # the child starts now: the guard's own start (a Python, slow on a loaded machine) is not the child's time
            self.deadline += min(GUARD_START_S, time.monotonic() - self.begun)

    def _write(self, fd: int) -> None:
        pending = self.pending
        try:
            n = os.write(fd, pending[:_CHUNK]) if pending else 0
        except BlockingIOError:
            return
        except OSError:  # the child closed its stdin
            pending = None
        if pending is not None:
            pending = pending[n:]
        self.pending = pending
        if not pending and self.p.stdin is not None:  # a PIPE whenever there is data to write
            self.sel.unregister(fd)
            self.p.stdin.close()

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(fd)
            return
        self.caps[fd].add(data)
        if self.lines is not None:
            self.lines.add(data)


def _finish(p: subprocess.Popen, marker: str, *, kill: bool) -> None:
    """End a run: kill the child (``kill``) and everything it left behind, within REAP_S."""
    if kill:
        killpg(p.pid)
        try:
            p.kill()
        except OSError:
            pass
    killpg(p.pid)
    kill_all(lambda t: members(p.pid, marker, t))
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
