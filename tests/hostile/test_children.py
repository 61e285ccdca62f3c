"""How builddoctor runs a child that misbehaves: no hang, bounded memory, nothing left running.

Real programs (tests/hostile/programs.py), the real `builddoctor check` in a subprocess, and
/proc to see which processes survive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from builddoctor import proc
from tests.hostile import programs

REPO = Path(__file__).resolve().parents[2]


def builddoctor(*args, env=None, timeout=60, wrap_rss=False) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "builddoctor", *map(str, args)]
    if wrap_rss:  # report the peak memory of builddoctor (and its children) on the last stderr line
        argv = [
            sys.executable,
            "-c",
            "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)",
            *argv,
        ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}
    )


def test_setsid_grandchild_keeping_stdout_does_not_hang_check(den):
    exe = programs.make(den, "SETSID_HOLD")
    t0 = time.monotonic()
    done = builddoctor("check", "--json", "--timeout", "2", exe)
    assert time.monotonic() - t0 < 30, "check returns, well before its callers give up"
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["builds"], done.stdout[:500]
    assert not programs.survivors(str(den)), "the grandchild in its own session was killed"


def test_setsid_grandchild_run_returns_at_once_and_is_killed(den):
    exe = programs.make(den, "SETSID_HOLD")
    t0 = time.monotonic()
    c = proc.run([exe, "--version"], timeout=30)
    assert time.monotonic() - t0 < 5, "the child's exit ends the run; the pipe its grandchild holds does not"
    assert c.returncode == 0 and "version: 1" in c.stdout
    assert not programs.survivors(str(den))


def test_daemons_do_not_survive_their_run(den):
    for mode, extra in (("DAEMON", ()), ("DAEMON", ("-DNOENV",))):
        folder = den / ("noenv" if extra else "env")
        exe = programs.make(folder, mode, "llama-cli", *extra)
        c = proc.run([exe, "--version"], timeout=30)
        assert c.ok and "version: 1" in c.stdout, c
        assert not programs.survivors(str(folder)), f"the daemon ({mode} {extra}) was killed after its run"


def test_daemon_started_by_check_is_killed(den):
    exe = programs.make(den, "DAEMON")
    done = builddoctor("check", "--json", "--timeout", "5", exe)
    assert done.returncode in (0, 1), done.stderr
    assert not programs.survivors(str(den))


def test_timeout_kills_a_tree_that_ignores_sigterm(den):
    exe = programs.make(den, "HANG_TREE")
    t0 = time.monotonic()
    c = proc.run([exe], timeout=1)
    took = time.monotonic() - t0
    assert c.timed_out and c.returncode is None and "started" in c.stdout
    assert took < 6, f"the whole run, cleanup included, ends by its deadline ({took:.1f} s)"
    assert not programs.survivors(str(den)), "its child in its own group and the one in its own session are gone"


def test_stream_kills_jobs_in_their_own_groups_on_timeout(den):
    exe = programs.make(den, "HANG_TREE")
    lines = []
    c = proc.stream([exe], timeout=1, on_line=lines.append)
    assert c.timed_out and lines == ["started"]
    assert not programs.survivors(str(den))


def test_500_mb_of_output_is_read_in_bounded_memory(den):
    exe = programs.make(den, "FLOOD")
    code = (
        "import resource, sys; from builddoctor import proc; c = proc.run(sys.argv[1:], timeout=60); "
        "print(c.returncode, len(c.stdout), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(exe), "--version"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    rc, kept, maxrss_kib = map(int, out.stdout.split())
    assert rc == 0
    assert kept <= proc.MAX_OUTPUT + (64 << 10) + 100, "the first MB and a 64 KiB tail are kept"
    assert maxrss_kib < 150 * 1024, f"{maxrss_kib / 1024:.0f} MiB for 500 MB of output"


def test_check_on_500_mb_of_version_output(den):
    exe = programs.make(den, "FLOOD")
    done = builddoctor("check", "--json", "--timeout", "20", exe, wrap_rss=True)
    assert done.returncode in (0, 1), done.stderr
    maxrss_kib = int(done.stderr.strip().splitlines()[-1].split()[1])
    assert maxrss_kib < 300 * 1024, f"check took {maxrss_kib / 1024:.0f} MiB"
    assert len(done.stdout) < 2 * 1024 * 1024, "the report holds a cut of the output, not all of it"


def test_programs_run_by_check_get_a_temporary_home(den, tmp_path):
    exe = programs.make(den, "HOME_TOUCH")
    home = tmp_path / "home"
    home.mkdir()
    done = builddoctor("check", "--json", "--timeout", "5", exe, env={"HOME": str(home)})
    assert done.returncode in (0, 1), done.stderr
    runs = json.loads(done.stdout)["builds"][0]["build"]["runtime"]
    said = [ln for r in runs for ln in r["output"].splitlines() if ln.startswith("HOME=")]
    assert said and all(ln != f"HOME={home}" for ln in said), said
    assert not (home / ".touched-by-program").exists(), "the user's HOME was not written to"
    assert not any(Path(ln[5:]).exists() for ln in said), "its temporary HOME was removed"


def test_output_keeps_head_and_tail_and_says_what_was_cut(den):
    # a crash message comes last: it must survive the cut
    c = proc.run([sys.executable, "-c", "import sys; sys.stdout.write('a' * 3_000_000 + 'THE END')"], timeout=30)
    assert c.ok and c.stdout.startswith("a" * 1000) and c.stdout.endswith("THE END")
    assert "bytes of output cut" in c.stdout and len(c.stdout) < proc.MAX_OUTPUT + (64 << 10) + 100


def test_stream_cuts_a_line_without_end(den):
    lines = []
    c = proc.stream(
        [sys.executable, "-c", "import sys; sys.stdout.write('b' * 5_000_000 + '\\nlast\\n')"],
        timeout=30,
        on_line=lines.append,
    )
    assert c.ok and lines[-1] == "last" and len(lines) == 2
    assert len(lines[0]) < (64 << 10) + 100 and lines[0].endswith("[... line cut ...]")
