"""A pytest plugin that counts the hostile tier as a campaign (``-p tests.hostile.campaign``): cases,
crashes (exit 70), hangs, wrong exit codes, files touched, leftover processes; written as JSON to
$BUILDDOCTOR_CAMPAIGN_OUT at the end. benchmarks/hostile_campaign.py runs it and prints the counts.

A failing case is put in the first class its failure report names (the assertion that failed); on top
of that, every case is checked for processes of its own left running (a program under the test's tmp
folder still alive when the test ends, before its fixtures kill it) and for files written in the HOME
the campaign gives the whole run (builddoctor's own folders are redirected per test).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

#: failure report text -> class, first match wins
CLASSES = [
    ("crashes", re.compile(r"exit 70|internal error|This is a bug|Traceback \(most recent")),
    ("hangs", re.compile(r"hung \(|timed_out|TimeoutExpired|was not reached in")),
    ("leftover_processes", re.compile(r"surviv|processes\(|leftover")),
    ("files_touched", re.compile(r"tree\(|touched|marker|read_bytes\(\)|byte-identical|bystander|executed")),
    ("wrong_exit_codes", re.compile(r"returncode|exit_code|\brc\b ==")),
]
HANG_S = 120.0  # a case slower than this is counted as a hang even when it passed

_counts = {
    "cases": 0,
    "passed": 0,
    "skipped": 0,
    "failed": 0,
    "crashes": 0,
    "hangs": 0,
    "wrong_exit_codes": 0,
    "files_touched": 0,
    "leftover_processes": 0,
    "other_failures": 0,
    "builddoctor_runs": 0,
}
_failures: list[dict] = []
_leftovers: list[str] = []


def _own_processes(folder: str) -> list[int]:
    from tests.hostile import programs

    return programs.survivors(folder, wait=2.0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    tmp = item.funcargs.get("tmp_path") if hasattr(item, "funcargs") else None
    if tmp is not None:
        left = _own_processes(str(tmp))
        if left:
            _counts["leftover_processes"] += 1
            _leftovers.append(f"{item.nodeid}: {len(left)} process(es)")
    yield


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if report.when == "call" or report.skipped:
            _counts["cases"] += 1
        if report.skipped:
            _counts["skipped"] += 1
            return
        if report.passed:
            _counts["passed"] += 1
            if report.duration > HANG_S:
                _counts["hangs"] += 1
                _failures.append({"case": report.nodeid, "class": "hangs", "why": f"{report.duration:.0f} s"})
            return
        if report.when == "setup":
            _counts["cases"] += 1
        _counts["failed"] += 1
        text = report.longreprtext
        cls = next((name for name, rx in CLASSES if rx.search(text)), "other_failures")
        _counts[cls] += 1
        _failures.append({"case": report.nodeid, "class": cls, "why": (report.longreprtext or "")[-600:]})


def pytest_sessionfinish(session):
    try:
        from tests.hostile import conftest

        _counts["builddoctor_runs"] = conftest.RUNS["runs"]
    except (ImportError, AttributeError, KeyError):
        pass
    home = os.environ.get("BUILDDOCTOR_CAMPAIGN_HOME")
    touched = []
    if home:
        seen = json.loads(Path(home, ".campaign-before.json").read_text())
        now = _snapshot(Path(home))
        touched = sorted(k for k in set(seen) | set(now) if seen.get(k) != now.get(k))
        _counts["files_touched"] += len(touched)
    out = os.environ.get("BUILDDOCTOR_CAMPAIGN_OUT")
    if out:
        Path(out).write_text(
            json.dumps(
                {"counts": _counts, "failures": _failures, "leftovers": _leftovers, "home_touched": touched}, indent=1
            )
        )


#: builddoctor's own folders under HOME (its cache and data): writing there is its job, not a file touched
OWN = (".cache/builddoctor", ".local/share/builddoctor")


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its size and mtime (the campaign's own record and builddoctor's own
    folders left out)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) not in OWN]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p.name == ".campaign-before.json":
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            # a folder's mtime moves when builddoctor makes its own folder in it: folders count by being there
            out[str(p.relative_to(root))] = "dir" if stat.S_ISDIR(st.st_mode) else f"{st.st_size} {st.st_mtime_ns}"
    return out
