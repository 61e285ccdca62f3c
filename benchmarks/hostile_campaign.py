"""The bad-input and fault campaign of issue 14, counted: runs the hostile tier (tests/hostile) under the
campaign plugin (tests/hostile/campaign.py) with a HOME of its own, and prints

    cases, passed, skipped, crashes (exit 70), hangs, wrong exit codes, files touched, leftover processes

all of which but the first two (and skipped) must be 0. Files touched: failed cases whose failure names a
file check, plus anything written in the campaign's HOME. Leftover processes: cases that left a process
of their own running when they ended.

    .venv/bin/python benchmarks/hostile_campaign.py [-k EXPR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from builddoctor import proc  # noqa: E402
from tests.hostile.campaign import _snapshot  # noqa: E402

ORDER = [
    "cases",
    "passed",
    "skipped",
    "crashes",
    "hangs",
    "wrong_exit_codes",
    "files_touched",
    "leftover_processes",
    "other_failures",
    "builddoctor_runs",
]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default=None, help="only the cases pytest's -k selects")
    ap.add_argument("--json", action="store_true", help="print the whole record (failures included) as JSON")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bd-campaign-") as tmp:
        home = Path(tmp, "home")
        for d in (".config", ".cache", ".local/share"):  # what a user's HOME has
            (home / d).mkdir(parents=True)
        (home / ".bashrc").write_text("# the user's own file\n")
        (home / ".config" / "keep.txt").write_text("the user's settings\n")
        (home / ".campaign-before.json").write_text(json.dumps(_snapshot(home)))
        out = Path(tmp, "campaign.json")
        env = dict(
            os.environ,
            HOME=str(home),
            BUILDDOCTOR_CAMPAIGN_HOME=str(home),
            BUILDDOCTOR_CAMPAIGN_OUT=str(out),
            PYTHONPATH=str(REPO),
        )
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.hostile.campaign",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp}/bt",
            "tests/hostile",
        ] + (["-k", args.k] if args.k else [])
        t0 = time.monotonic()
        done = proc.stream(
            argv,
            timeout=args.timeout,
            env=env,
            cwd=REPO,
            on_line=lambda line: print(line, file=sys.stderr) if line.startswith(("FAILED", "ERROR")) else None,
        )
        took = time.monotonic() - t0
        if done.timed_out or not out.exists():
            print(f"the campaign did not finish ({'timed out' if done.timed_out else done.output[-2000:]})")
            return 1
        record = json.loads(out.read_text())
    counts = record["counts"]
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        print(f"hostile campaign on {cpu_name()}, {os.cpu_count()} CPUs: {took:.0f} s")
        for k in ORDER:
            print(f"  {k.replace('_', ' '):<20} {counts.get(k, 0)}")
        for f in record["failures"]:
            print(f"  - {f['class']}: {f['case']}")
        for line in record["leftovers"] + [f"written in HOME: {p}" for p in record["home_touched"]]:
            print(f"  - {line}")
    bad = sum(counts.get(k, 0) for k in ORDER[3:9])
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
