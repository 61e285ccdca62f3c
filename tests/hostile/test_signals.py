"""SIGINT/SIGTERM during a command: every descendant stops, temp folders go, exit 6, one line.

The real `builddoctor` in a subprocess, real signals, /proc to see what survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from builddoctor import errors, proc
from tests.hostile import programs

REPO = Path(__file__).resolve().parents[2]


def start(*args, tmp: Path, env=None) -> subprocess.Popen:
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "builddoctor", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmpdir), **(env or {})},
    )


def stopped(p: subprocess.Popen, timeout: float = 15) -> tuple[int, str, float]:
    t0 = time.monotonic()
    _out, err = p.communicate(timeout=timeout)
    return p.returncode, err, time.monotonic() - t0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_check_stops_the_child_and_exits_6(den, tmp_path, sig):
    exe = programs.make(den, "HANG_TREE")
    p = start("check", "--timeout", "60", exe, tmp=tmp_path)
    try:
        programs.wait_for(str(den), count=3)  # the program, its child in its own group, the one in its session
        p.send_signal(sig)
        rc, err, took = stopped(p)
    finally:
        p.kill()
    assert not programs.survivors(str(den)), "every descendant was stopped"
    assert rc == errors.INTERRUPTED, err
    assert took < 8, f"it did not wait for the child's 60 s timeout ({took:.1f} s)"
    assert f"Interrupted ({sig.name})" in err and len(err.strip().splitlines()) == 1, err
    assert not list((tmp_path / "tmpdir").iterdir()), "its temp folders were removed"


def test_sigkill_of_check_leaves_no_process(den, tmp_path):
    """SIGKILL cannot be handled: the guard every child runs under (proc_guard.py) ends the tree, a
    grandchild in a session of its own and one in a group of its own included."""
    exe = programs.make(den, "HANG_TREE")
    args = [exe]
    p = start("check", "--timeout", "60", *args, tmp=tmp_path)
    try:
        programs.wait_for(str(den), count=3)
        time.sleep(0.3)
        p.kill()
        p.wait(timeout=10)
    finally:
        p.kill()
    assert p.returncode == -signal.SIGKILL
    assert not programs.survivors(str(den), wait=5), "a child of the SIGKILLed builddoctor survived it"


def test_second_ctrl_c_still_stops_everything(den, tmp_path):
    exe = programs.make(den, "HANG_TREE")
    p = start("check", "--timeout", "60", exe, tmp=tmp_path)
    try:
        programs.wait_for(str(den), count=3)
        p.send_signal(signal.SIGINT)
        time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        rc, err, took = stopped(p)
    finally:
        p.kill()
    assert rc == errors.INTERRUPTED, err
    assert "Traceback" not in err and "interrupted" in err.lower()
    assert not programs.survivors(str(den))


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    """A cache holding the 1 MB smoke model already (generating it takes seconds)."""
    from builddoctor import smoke_model

    cache = tmp_path_factory.mktemp("cache")
    try:
        smoke_model.ensure_model(1_000_000, cache_root=cache / "models")
    except errors.UserError as exc:
        pytest.skip(str(exc))
    return cache


def test_sigterm_during_bench_stops_llama_bench(den, tmp_path, smoke_cache):
    exe = programs.make(den, "HANG_TREE", "llama-bench")
    env = {"BUILDDOCTOR_CACHE": str(smoke_cache), "BUILDDOCTOR_BUILD_LOCK": str(tmp_path / "lock")}  # no queueing
    p = start("bench", "--no-bandwidth", "--size", "1", exe, tmp=tmp_path, env=env)
    try:
        programs.wait_for(str(den), count=3, timeout=60)
        p.send_signal(signal.SIGTERM)
        rc, err, took = stopped(p)
    finally:
        p.kill()
    assert not programs.survivors(str(den))
    assert rc == errors.INTERRUPTED, err
    assert took < 8


CMAKE_PROJECT = """
cmake_minimum_required(VERSION 3.14)
project(hostile NONE)
foreach(t llama-cli llama-server llama-bench llama-quantize)
  add_custom_target(${{t}} COMMAND {exe} VERBATIM)
endforeach()
"""

BUILD_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from builddoctor import build
    from builddoctor.profiles import BuildPlan
    plan = BuildPlan(goal="native", backend="cpu", options=[])
    res = build.build(plan, Path(sys.argv[1]), cache_root=Path(sys.argv[2]), lock_path=Path(sys.argv[3]), jobs=2)
    print("STATUS", res.status, flush=True)
""")


def test_sigterm_during_a_build_leaves_no_job_behind(den, tmp_path):
    """ninja runs each job in a process group of its own; a SIGTERM to the build stops them all."""
    import shutil

    if not (shutil.which("cmake") and shutil.which("ninja")):
        pytest.skip("cmake and ninja are needed")
    exe = programs.make(den, "HANG_TREE")
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CMAKE_PROJECT.format(exe=exe))
    p = subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(src), str(tmp_path / "cache"), str(tmp_path / "lock")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        programs.wait_for(str(den), count=3, timeout=60)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=20)
    finally:
        p.kill()
    assert "STATUS interrupted" in out, out[-2000:]
    assert not programs.survivors(str(den)), "no job of the build survived it"
    assert not [x for x in (tmp_path / "cache").iterdir() if x.name.startswith(".tmp-")]


def test_a_library_caller_gets_its_handlers_back(den):
    """build.build's guard restores the caller's handlers and lets children start again afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    with proc.signals_raise():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    assert proc.run([sys.executable, "-c", "pass"], timeout=30).ok
