"""Which objects a tune candidate recompiles: build the plain plan, then a candidate, with ccache
warm, and count ccache's hits and misses per folder of each build (ccache's stats_log).

    .venv/bin/python benchmarks/tune_scope_ccache.py [--candidate no-avx512] [--cpuinfo FILE] [--jobs 2]

A candidate of scope "cpu" (data/tune_candidates.toml) should miss only in ggml-cpu. A candidate
already compiled into ccache hits everywhere: pick one planned for another CPU (``--cpuinfo`` a
recorded one, e.g. tests/fixtures/cpuinfo/zen4-ryzen9-7950x.txt with ``--candidate explicit``),
which compiles here though it would not run. Builds go to a throw-away cache folder and take their
own build lock, so a long build holding builddoctor's machine-wide lock does not stall this.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builddoctor import build, proc, tune  # noqa: E402
from builddoctor.probe import machine_profile  # noqa: E402
from builddoctor.resolve import resolve  # noqa: E402
from builddoctor.source import resolve_source  # noqa: E402


def counts(stats_log: Path) -> dict[str, collections.Counter]:
    """ccache's stats_log -> counter name -> folder (ggml-cpu, ggml, src, common...) -> files."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    source = ""
    for line in stats_log.read_text().splitlines() if stats_log.exists() else []:
        if line.startswith("# "):
            rel = line[2:].split("/llama.cpp/")[-1]
            source = "ggml-cpu" if "/ggml-cpu/" in rel else rel.split("/")[0]
        elif source:
            out[line][source] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidate", default="no-avx512")
    ap.add_argument("--cpuinfo", type=Path, help="plan the candidate for this recorded CPU")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    src = resolve_source(None)
    here = machine_profile()
    plain = resolve(here, goal="native", backend="cpu", source=src, host=True)
    other = machine_profile(cpuinfo=args.cpuinfo) if args.cpuinfo else here
    base = resolve(other, goal="native", backend="cpu", source=src, host=True) if args.cpuinfo else plain
    cand = {c.name: c for c in tune.plan_candidates(other, base, source=src)}[args.candidate]
    if cand.plan is None:
        print(f"{cand.name}: {cand.status}: {cand.reason}")
        return 1
    moved = sorted({(o.name, o.value) for o in cand.plan.options} - {(o.name, o.value) for o in plain.options})
    print(f"{cand.name} (scope {cand.scope}) sets, over the plain plan: {moved}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bd-scope-") as tmp:
        for name, plan in (("plain", plain), (cand.name, cand.plan)):
            plan.targets = ["llama-bench"]
            log = Path(tmp) / f"{name}.stats"
            env = proc.clean_env()
            env.update(CCACHE_DIR=os.environ.get("CCACHE_DIR", str(Path.home() / ".cache" / "ccache")))
            env["CCACHE_STATSLOG"] = str(log)
            r = build.build(
                plan, src, jobs=args.jobs, cache_root=Path(tmp) / "builds", env=env, lock_path=Path(tmp) / "lock"
            )
            print(f"== {name}: {r.status} in {r.duration_s:.0f} s", flush=True)
            for counter in ("direct_cache_hit", "preprocessed_cache_hit", "cache_miss"):
                got = counts(log).get(counter, collections.Counter())
                print(f"  {counter}: {sum(got.values())} {dict(got)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
