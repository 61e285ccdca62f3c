"""Every tune candidate on this machine: build time, pp and tg with spread, ratio to the plain plan
and to llama.cpp's default build (cmake with no options), and the winner.

    .venv/bin/python benchmarks/tune_variants.py [--budget 15m] [--size-mb 60] [--max-rounds 3]
                                                 [--candidates native-no-amx,no-avx512]

Runs ``builddoctor.tune.tune`` (llama-bench only, nothing installed, no run-time sweep), then builds
llama.cpp's default build, verifies it with the compute probe and, where it computes, measures it
interleaved against the plain plan: a candidate's ratio to it is (candidate / plain) / (default /
plain). Results are kept in tune's results cache: a second run prints the same table in seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builddoctor import bench, build, smoke_model, tune  # noqa: E402
from builddoctor.profiles import BuildPlan  # noqa: E402


def _s(stat) -> str:
    return f"{stat.mean:7.1f} ± {stat.stddev:5.1f}" if stat else f"{'n/a':>15}"


def _r(stat) -> str:
    return f"{stat.mean:5.2f}x ± {stat.stddev:4.2f}" if stat else f"{'':>13}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="15m")
    ap.add_argument("--size-mb", type=float, default=60.0)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--objective", default="generation", choices=tune.OBJECTIVES)
    ap.add_argument("--candidates", help="comma-separated names (default: all that apply here)")
    args = ap.parse_args()

    from builddoctor.probe import machine_profile
    from builddoctor.source import ensure_source

    machine = machine_profile()
    source = ensure_source()
    model = smoke_model.ensure_model(int(args.size_mb * 1e6))
    print(
        f"CPU: {machine.cpu.model} ({machine.cpu.cores} cores, {machine.cpu.threads} threads); "
        f"features: {' '.join(machine.cpu.features)}"
    )
    print(
        f"model {model.name} ({model.stat().st_size / 1e6:.0f} MB); llama-bench -p {bench.DEFAULT_PP} "
        f"-n {bench.DEFAULT_TG} -r {args.reps}; objective {args.objective}",
        flush=True,
    )

    def said(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.monotonic()
    res = tune.tune(
        machine,
        source=source,
        objective=args.objective,
        budget_s=tune.parse_budget(args.budget),
        model=model,
        only=args.candidates.split(",") if args.candidates else None,
        targets=["llama-bench"],
        max_rounds=args.max_rounds,
        reps=args.reps,
        install=False,
        settings=False,
        say=said,
    )
    print(f"tune: {time.monotonic() - t0:.0f} s, stopped: {res.stopped}", flush=True)

    # llama.cpp's default build: no options at all
    default = BuildPlan(goal="native", backend="cpu", targets=["llama-bench"])
    d = build.build(default, source)
    print(f"llama.cpp default build: {d.status} in {d.duration_s:.0f} s", flush=True)
    vs_default = None
    default_note = ""
    plain = next(c for c in res.candidates if c.name == tune.BASELINE)
    if d.status in ("ok", "cached"):
        ver = build.verify(d, machine)
        if not ver.ok:
            default_note = f"does not compute here: {ver.message}"
        else:
            plain_lb = bench.find_llama_bench(Path(plain.build_dir) / "bin")
            default_lb = bench.find_llama_bench(Path(d.build_dir) / "bin")
            with build.build_lock():
                cmp = bench.compare(
                    [plain_lb, default_lb], model, rounds=args.max_rounds, reps=args.reps, threads=res.threads
                )
            vs_default = (cmp.pp_ratio[1], cmp.tg_ratio[1], cmp.results[1])
            default_note = f"pp {_s(cmp.results[1].pp)} tg {_s(cmp.results[1].tg)} t/s"
    else:
        default_note = f"did not build: {(d.error or '').splitlines()[:1]}"
    print(f"llama.cpp default build: {default_note}\n")

    print(
        f"{'candidate':<14} {'build s':>8} {'pp t/s':>15} {'tg t/s':>15} {'pp vs plain':>13} {'tg vs plain':>13} "
        f"{'tg vs default':>13}  status"
    )
    for c in sorted(res.candidates, key=tune.sort_key(res.objective)):
        tg_def = ""
        if vs_default and vs_default[1] and c.tg:
            ratio = (c.tg_ratio.mean if c.tg_ratio else 1.0) / vs_default[1].mean
            tg_def = f"{ratio:5.2f}x"
        build_s = "" if c.build_s is None else f"{c.build_s:.0f}" + (" c" if c.build_status == "cached" else "")
        pr = c.pp_ratio if c.name != tune.BASELINE else None
        tr = c.tg_ratio if c.name != tune.BASELINE else None
        status = c.status + (f": {c.reason}" if c.reason and c.status not in ("measured", "winner") else "")
        print(
            f"{c.name:<14} {build_s:>8} {_s(c.pp)} {_s(c.tg)} {(_r(pr) if pr else ('1.00x' if c.name == 'plain' else '')):>13} "
            f"{(_r(tr) if tr else ('1.00x' if c.name == 'plain' else '')):>13} {tg_def:>13}  {status[:120]}"
        )
    print(f"\nwinner: {res.winner} - {res.winner_reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
