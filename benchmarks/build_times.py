"""Time builddoctor's build of the four targets: cold, with ccache warm, and a repeat.

    .venv/bin/python benchmarks/build_times.py [--goal native] [--skip-cold] [--reference]

cold: an empty ccache (a fresh CCACHE_DIR) and an empty build cache, as a new user has;
warm: an empty build cache but the ccache the cold build filled (a rebuild after a change
of plan that keeps most compile flags, or after `rm -rf ~/.cache/builddoctor/builds`);
repeat: the identical request again (answered from the build cache).
--reference first times llama.cpp's own plain build of the same four targets on this machine
(`cmake -B build -DCMAKE_BUILD_TYPE=Release` + `cmake --build build --target ... -j CORES`, no
ccache): builddoctor's cold build must not be slower than that. (The figure recorded for the
project's machine kind, ~6 minutes, was taken on a Zen 4 host; compile speed differs by host.)
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
    ap.add_argument("--reference", action="store_true", help="Also time llama.cpp's plain build of the targets.")
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
        if args.reference:
            ref = _reference_build(source, work / "plain", build.targets_of(plan), build.cpu_count())
            if ref is None:
                return 1
            print(f"{'llama.cpp plain build':<22} {'ok':<8} {ref:7.1f} s", flush=True)
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


def _reference_build(source: Path, bdir: Path, targets: list[str], jobs: int) -> float | None:
    """llama.cpp's README build of ``targets``, cold (its automatic ccache turned off)."""
    env = proc.clean_env({"CCACHE_DISABLE": "1"})
    t0 = time.monotonic()
    for argv in (
        [
            "cmake",
            "-S",
            str(source),
            "-B",
            str(bdir),
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DGGML_CCACHE=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        ],
        ["cmake", "--build", str(bdir), "--target", *targets, "-j", str(jobs)],
    ):
        res = proc.run(argv, timeout=3600, env=env)
        if not res.ok:
            print(f"plain build failed: {' '.join(argv)}\n{res.output[-2000:]}", file=sys.stderr)
            return None
    return time.monotonic() - t0


if __name__ == "__main__":
    sys.exit(main())
