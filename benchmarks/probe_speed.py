#!/usr/bin/env python3
"""How long `builddoctor probe` takes, warm: the wall time a user waits, start to exit.

Runs the installed entry point (the `builddoctor` next to this Python, else `python -m builddoctor`)
several times after one untimed warm-up run, for `probe` and `probe --json`, and prints
median / min / max. Goal: median under 0.5 s.

    .venv/bin/python benchmarks/probe_speed.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 0.5


def command() -> list[str]:
    exe = Path(sys.executable).with_name("builddoctor")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("builddoctor")
    return [found] if found else [sys.executable, "-m", "builddoctor"]


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, env={**os.environ, "NO_COLOR": "1"}
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    base = command()
    print(f"builddoctor: {' '.join(base)}   runs: {args.runs} (after 1 warm-up)   cpus: {os.cpu_count()}")
    worst = 0.0
    for extra in ([], ["--json"]):
        argv = [*base, "probe", *extra]
        timed(argv)  # warm-up: page cache, .pyc files
        times = [timed(argv) for _ in range(args.runs)]
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"{' '.join(['probe', *extra]):<14} median {med:.3f} s   min {min(times):.3f} s   max {max(times):.3f} s")
    verdict = "ok" if worst < GOAL_S else "SLOWER THAN GOAL"
    print(f"goal: median < {GOAL_S} s -> {verdict}")
    return 0 if worst < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
