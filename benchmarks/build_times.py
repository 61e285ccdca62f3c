"""Time builddoctor's build of the four targets: cold, with ccache warm, and a repeat.

    .venv/bin/python benchmarks/build_times.py [--goal native] [--skip-cold]

cold: an empty ccache (a fresh CCACHE_DIR) and an empty build cache, as a new user has;
warm: an empty build cache but the ccache the cold build filled (a rebuild after a change
of plan that keeps most compile flags, or after `rm -rf ~/.cache/builddoctor/builds`);
repeat: the identical request again (answered from the build cache).
Reference on this machine (2 cores): the cold build of the four targets ~6 minutes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builddoctor import build, proc  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--goal", default="native")
    ap.add_argument("--skip-cold", action="store_true")
    args = ap.parse_args()

    from builddoctor.probe import machine_profile
    from builddoctor.resolve import resolve
    from builddoctor.source import ensure_source

    machine = machine_profile()
    plan = resolve(machine, goal=args.goal, backend="cpu")
    source = ensure_source()
    work = Path(tempfile.mkdtemp(prefix="bd-build-times-"))
    env = proc.clean_env({"CCACHE_DIR": str(work / "ccache")})
    print(f"targets: {' '.join(build.targets_of(plan))}; jobs {build.choose_jobs(plan)}", flush=True)
    try:
        rows = []
        for label, cache in (("cold (empty ccache)", work / "c1"), ("warm ccache", work / "c2")):
            if args.skip_cold and label.startswith("cold"):
                continue
            t0 = time.monotonic()
            res = build.build(plan, source, cache_root=cache, env=env)
            rows.append((label, res.status, time.monotonic() - t0))
            print(f"{label:<22} {res.status:<8} {rows[-1][2]:7.1f} s", flush=True)
            if res.status != "ok":
                print(res.error, file=sys.stderr)
                return 1
        t0 = time.monotonic()
        res = build.build(plan, source, cache_root=work / "c2", env=env)
        print(f"{'identical repeat':<22} {res.status:<8} {time.monotonic() - t0:7.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
