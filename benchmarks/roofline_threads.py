"""Is generation bound by memory bandwidth or by the cores here? Thread scaling of both, side by side.

    .venv/bin/python benchmarks/roofline_threads.py [BUILD_DIR_OR_LLAMA_BENCH] [--reps 3] [--size-mb N]

The roofline figure (`builddoctor bench`) divides generation speed x bytes per token by the memory read
bandwidth. That ratio can only approach 1 when generation is bandwidth-bound. This script measures, with
1 thread and with all physical cores: the read bandwidth (builddoctor's kernel) and llama-bench tg/pp on the
roofline-sized smoke model. If tg doubles from 1 to 2 threads while bandwidth does not, the cores (the
quantized dot products), not memory, set the speed: the gap to the roofline is compute, not the build.
Default build: builddoctor's native build of the pinned tree (built first if needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builddoctor import bench, build, smoke_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", nargs="?", type=Path)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size-mb", type=float)
    args = ap.parse_args()

    from builddoctor.probe import machine_profile

    machine = machine_profile()
    if args.binary:
        lb = bench.find_llama_bench(args.binary)
    else:
        from builddoctor.resolve import resolve
        from builddoctor.source import ensure_source

        source = ensure_source()
        plan = resolve(machine, goal="native", backend="cpu", source=source)
        res = build.build(plan, source)
        if res.status not in ("ok", "cached"):
            print(res.error, file=sys.stderr)
            return 1
        lb = Path(res.build_dir) / "bin" / "llama-bench"
    if lb is None:
        print(f"no llama-bench at {args.binary}", file=sys.stderr)
        return 2
    from builddoctor import bandwidth

    smoke = bandwidth.plan_smoke(int(args.size_mb * 1e6) if args.size_mb else None, threads=machine.cpu.threads)
    print(
        f"roofline: {smoke.why}; read speed by working set: "
        + ", ".join(f"{p.bytes >> 20} MiB {p.gbs:.1f}" for p in (smoke.sweep.points if smoke.sweep else []))
    )
    model = smoke_model.ensure_model(smoke.model_bytes)
    cores = bench.physical_cores(machine)
    l3 = machine.cpu.l3_cache_bytes
    print(
        f"{machine.cpu.model} ({machine.cpu.microarch or '?'}), {cores} physical cores, "
        f"L3 {(l3 or 0) >> 20} MiB; model {model.stat().st_size / 2**20:.0f} MiB "
        f"({smoke_model.bytes_per_token(model) / 2**20:.0f} MiB read per token); {lb}"
    )
    print("| threads | read bandwidth GB/s | pp t/s | tg t/s | tg x bytes/token GB/s | of bandwidth |")
    print("|---|---|---|---|---|---|")
    rows = {}
    with build.build_lock():
        for t in sorted({1, cores}):
            bw = bench.memory_bandwidth(threads=t, l3_bytes=l3)
            r = bench.run_bench(lb, model, threads=t, reps=args.reps, bandwidth_gbs=bw)
            if r.error:
                print(f"| {t} | {bw:.1f} | error: {r.error} | | | |")
                return 1
            eff = r.roofline_fraction * bw  # tg x bytes per token, in GB/s: bench's own count
            rows[t] = (bw, r.tg.mean)
            print(
                f"| {t} | {bw:.1f} | {r.pp.mean:.0f} ± {r.pp.stddev:.0f} | {r.tg.mean:.1f} ± {r.tg.stddev:.1f} "
                f"| {eff:.1f} | {r.roofline_fraction:.0%} |",
                flush=True,
            )
    if len(rows) == 2:
        (bw1, tg1), (bwn, tgn) = rows[1], rows[cores]
        print(f"\n1 -> {cores} threads: bandwidth x{bwn / bw1:.2f}, generation x{tgn / tg1:.2f}")
        if tgn / tg1 > 1.5 * bwn / bw1 or (tgn / tg1) > 0.8 * cores and (bwn / bw1) < 0.8 * cores:
            print(
                "generation scales with cores faster than bandwidth does: it is bound by the cores "
                "(the quantized dot products), not by memory, on this machine"
            )
        else:
            print("generation scales like bandwidth: it is memory-bound here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
