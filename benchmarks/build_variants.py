"""Build native, portable (all CPU variants) and AVX2-only llama.cpp side by side and compare them
(and, where a known-bad row spells the native plan's ISA out, native-mno: -march=native with -mno-<feature>).

    .venv/bin/python benchmarks/build_variants.py --builds avx2-only native native-mno --targets llama-bench

    .venv/bin/python benchmarks/build_variants.py [--rounds 3] [--targets llama-bench] [--size-mb N]

Builds with builddoctor.build (cache, ccache, the build lock), makes the smoke model sized
for the roofline figure (4x the last-level cache, at least 100 MB), measures memory read
bandwidth with all cores, and runs llama-bench on the three builds in interleaved rounds.
Prints each build's time and the table of pp/tg tokens/s (mean ± spread over rounds), the
fraction of the bandwidth limit, and the ratios to the AVX2-only build.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builddoctor import bench, build, smoke_model  # noqa: E402
from builddoctor.profiles import PlanOption  # noqa: E402

AVX2_ONLY = {  # GGML_NATIVE=OFF picks its ISA from these; AVX-512 off
    "GGML_NATIVE": "OFF",
    "GGML_AVX": "ON",
    "GGML_AVX2": "ON",
    "GGML_FMA": "ON",
    "GGML_F16C": "ON",
    "GGML_BMI2": "ON",
    "GGML_AVX512": "OFF",
    "GGML_AVX_VNNI": "OFF",
}


def plans(machine, targets: list[str] | None):
    from builddoctor.resolve import resolve

    native = resolve(machine, goal="native", backend="cpu")
    portable = resolve(machine, goal="portable", backend="cpu")
    avx2 = resolve(machine, goal="native", backend="cpu")
    avx2.options = [o for o in avx2.options if o.name not in AVX2_ONLY]
    avx2.options += [PlanOption(k, v, "AVX2-only comparison build", "benchmark") for k, v in AVX2_ONLY.items()]
    out = {"avx2-only": avx2, "portable": portable, "native": native}
    minus = native_minus_avoided(machine, native)
    if minus is not None:
        out["native-mno"] = minus
    if targets:
        for p in out.values():
            p.targets = list(targets)
    return out


def native_minus_avoided(machine, planned):
    """Where a known-bad row spells the plan's ISA out (AMX hosts), the other way to keep those
    features out: GGML_NATIVE=ON with -mno-<feature> in the C/C++ flags (GCC lets an explicit
    -mno-X win over -march=native). None where the plan is -march=native already."""
    from builddoctor import known_bad
    from builddoctor.findings import catalogue
    from builddoctor.llama_options import isa_table
    from builddoctor.source import load_pin

    rows = known_bad.applying(machine.cpu.features, load_pin().llama_version)
    avoided = [f for r in rows for f in r.avoid if f in machine.cpu.features]
    if not avoided:
        return None
    flags = " ".join(catalogue()["no_flags"][f] for f in avoided)
    plan = copy.deepcopy(planned)
    plan.options = [o for o in plan.options if o.name != "GGML_NATIVE" and o.name not in isa_table()]
    plan.options += [
        PlanOption("GGML_NATIVE", "ON", "comparison: -march=native less the known-bad features", "benchmark"),
        PlanOption("CMAKE_C_FLAGS", flags, "comparison", "benchmark"),
        PlanOption("CMAKE_CXX_FLAGS", flags, "comparison", "benchmark"),
    ]
    return plan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--targets",
        nargs="+",
        help="default: the plan's (llama-cli, llama-server, llama-bench, "
        "llama-quantize), so that the native build is the one `fix` makes",
    )
    ap.add_argument("--size-mb", type=float)
    ap.add_argument(
        "--builds", nargs="+", help="which of avx2-only, portable, native, native-mno (default: all that apply here)"
    )
    args = ap.parse_args()

    from builddoctor.probe import machine_profile
    from builddoctor.source import ensure_source

    machine = machine_profile()
    source = ensure_source()
    builds = {}
    for name, plan in plans(machine, args.targets).items():
        if args.builds and name not in args.builds:
            continue
        t0 = time.monotonic()
        res = build.build(plan, source)
        took = time.monotonic() - t0
        print(f"build {name:<10} {res.status:<8} {took:7.1f} s  {res.build_dir}", flush=True)
        if res.status not in ("ok", "cached"):
            print(res.error, file=sys.stderr)
            return 1
        t0 = time.monotonic()
        again = build.build(plan, source)
        print(f"      {name:<10} again: {again.status} in {time.monotonic() - t0:.2f} s", flush=True)
        builds[name] = Path(res.build_dir) / "bin" / "llama-bench"

    lock = build.build_lock(on_wait=lambda: print("waiting for a llama.cpp build to finish...", flush=True))
    lock.__enter__()  # no builddoctor compile on the cores while measuring
    size = int(args.size_mb * 1e6) if args.size_mb else smoke_model.roofline_bytes(machine.cpu.l3_cache_bytes)
    model = smoke_model.ensure_model(size)
    bw = bench.memory_bandwidth(threads=machine.cpu.threads, l3_bytes=machine.cpu.l3_cache_bytes)
    bw1 = bench.memory_bandwidth(threads=1, l3_bytes=machine.cpu.l3_cache_bytes)
    threads = bench.physical_cores(machine)
    model_bytes = smoke_model.tensor_bytes(model)
    print(
        f"\nmodel {model.name}: {model_bytes / 2**20:.0f} MiB of tensors, "
        f"{smoke_model.bytes_per_token(model) / 2**20:.0f} MiB read per generated token "
        f"(L3 {(machine.cpu.l3_cache_bytes or 0) >> 20} MiB)"
    )
    print(f"memory read bandwidth: {bw:.1f} GB/s with {machine.cpu.threads} threads, {bw1:.1f} GB/s with 1")
    print(
        f"llama-bench -p {bench.DEFAULT_PP} -n {bench.DEFAULT_TG} -r {args.reps} -t {threads}, "
        f"{args.rounds} interleaved rounds\n"
    )
    names = list(builds)
    cmp = bench.compare(
        [builds[n] for n in names], model, rounds=args.rounds, reps=args.reps, threads=threads, bandwidth_gbs=bw
    )
    print(
        f"| build | pp{bench.DEFAULT_PP} t/s | tg{bench.DEFAULT_TG} t/s | tg of bandwidth limit "
        f"| pp vs AVX2-only | tg vs AVX2-only |"
    )
    print("|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        r = cmp.results[i]
        if r.error:
            print(f"| {name} | error: {r.error} | | | | |")
            continue
        pr, tr = cmp.pp_ratio[i], cmp.tg_ratio[i]
        print(
            f"| {name} | {r.pp.mean:.0f} ± {r.pp.stddev:.0f} | {r.tg.mean:.1f} ± {r.tg.stddev:.1f} "
            f"| {r.roofline_fraction:.0%} | {pr.mean:.2f}x ± {pr.stddev:.2f} | {tr.mean:.2f}x ± {tr.stddev:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
