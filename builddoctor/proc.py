"""The one way builddoctor runs another program.

Always an argument list (never a shell string), always a time limit, always a clean
environment, output captured and bounded. A program that is missing, hangs, or dies
from a signal is a result to report, never an exception that escapes.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Mapping, Sequence

#: variables passed through to children: enough to find tools and write temp files,
#: nothing that changes how a llama.cpp binary or a compiler behaves behind our back.
_KEEP = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "SYSTEMROOT", "USER", "LOGNAME")

#: the user's choice of devices: passed to llama.cpp programs when set, because it was made on
#: purpose (a CPU-emulated Vulkan device such as llvmpipe is listed only when named here).
DEVICE_ENV = ("GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")

MAX_OUTPUT = 1 << 20  # bytes of each stream kept


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


def program_env() -> dict[str, str]:
    """The environment a llama.cpp program under test runs with: clean, plus the user's own library
    path and device choice (LD_LIBRARY_PATH decides which libraries load; DEVICE_ENV, which devices)."""
    return clean_env(from_user(("LD_LIBRARY_PATH", *DEVICE_ENV)))


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin_data: str | None = None,
) -> Completed:
    """Run ``argv`` with a hard time limit; the whole process group is killed on timeout."""
    argv = [str(a) for a in argv]
    if env is None:
        env = clean_env(extra_env)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        return Completed(argv, None, error="not found")
    except PermissionError:
        return Completed(argv, None, error="permission denied")
    except OSError as exc:
        return Completed(argv, None, error=exc.strerror or str(exc))
    try:
        out, err = proc.communicate(stdin_data.encode() if stdin_data is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return Completed(argv, None, _text(out), _text(err), timed_out=True)
    rc = proc.returncode
    sig = None
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
    return Completed(argv, rc, _text(out), _text(err), signal=sig)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _text(data: bytes | None) -> str:
    if not data:
        return ""
    return data[:MAX_OUTPUT].decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- streaming (added for build.py)


def _parent_death_signal() -> None:  # runs in the child between fork and exec
    """Linux: the child gets SIGKILL when builddoctor dies, even from SIGKILL (no orphan compiles)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, never fail the exec
        pass


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
    ``on_line`` as it comes; for long builds that report progress.

    Same rules as ``run``: argument list, clean environment, hard time limit, own process
    group (killed whole on timeout, on an exception in ``on_line`` and on
    KeyboardInterrupt, which is then re-raised). On Linux the child also dies if this
    process is killed. ``Completed.stdout`` holds the last MAX_OUTPUT bytes of output.
    """
    import queue
    import sys
    import threading
    import time

    argv = [str(a) for a in argv]
    if env is None:
        env = clean_env(extra_env)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_parent_death_signal if sys.platform.startswith("linux") else None,
        )
    except FileNotFoundError:
        return Completed(argv, None, error="not found")
    except PermissionError:
        return Completed(argv, None, error="permission denied")
    except OSError as exc:
        return Completed(argv, None, error=exc.strerror or str(exc))

    lines: queue.Queue = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    tail: list[bytes] = []
    kept = 0
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                _kill_group(proc)
                break
            try:
                raw = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if raw is None:
                break
            tail.append(raw)
            kept += len(raw)
            while kept > MAX_OUTPUT and len(tail) > 1:
                kept -= len(tail.pop(0))
            if on_line is not None:
                on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    proc.wait()
    thread.join(timeout=5)
    out = b"".join(tail).decode("utf-8", errors="replace")
    if timed_out:
        return Completed(argv, None, out, "", timed_out=True)
    rc = proc.returncode
    sig = None
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
    return Completed(argv, rc, out, "", signal=sig)
