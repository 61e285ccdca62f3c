"""Every tune candidate on this machine: build time, pp and tg with spread, ratio to the plain plan
and to llama.cpp's default build (cmake with no options), and the winner.

    .venv/bin/python benchmarks/tune_variants.py [--budget 15m] [--size-mb 60] [--max-rounds 3]
                                                 [--candidates native-no-amx,no-avx512] [--fresh]
    .venv/bin/python benchmarks/tune_variants.py --dry   # the candidates planned here, nothing built

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
    """A ratio with its spread; one paired run has none to show (not "± 0.00")."""
    if not stat:
        return f"{'':>13}"
    return f"{stat.mean:5.2f}x ± {stat.stddev:4.2f}" if stat.n > 1 else f"{stat.mean:5.2f}x (1 run)"


def _args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="15m")
    ap.add_argument("--size-mb", type=float, default=60.0)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--objective", default="generation", choices=tune.OBJECTIVES)
    ap.add_argument("--candidates", help="comma-separated names (default: all that apply here)")
    ap.add_argument("--fresh", action="store_true", help="measure again, ignoring tune's results cache")
    ap.add_argument("--dry", action="store_true", help="print the candidates planned here; build and run nothing")
    return ap.parse_args()


def dry(machine, source) -> int:
    """The candidates as tune plans them here, and what each changes in the plain plan."""
    from builddoctor.resolve import resolve

    base = resolve(machine, goal="native", backend="cpu", source=source, host=True)
    plain = {o.name: o.value for o in base.options}
    print(f"{'candidate':<14} {'scope':<5}  status: what it changes (or why not)")
    for c in tune.plan_candidates(machine, base, source=source):
        mine = {o.name: o.value for o in c.plan.options} if c.plan else {}
        moved = sorted(f"{k}={mine[k]}" for k in mine if plain.get(k) != mine[k])
        moved += sorted(f"-{k}" for k in plain if c.plan and k not in mine)
        moved += [f"env {k}={v}" for k, v in sorted(c.plan.env.items())] if c.plan else []
        print(f"{c.name:<14} {c.scope:<5}  {c.status}: {', '.join(moved) if c.plan else c.reason}"[:300])
    return 0


def main() -> int:
    args = _args()
    from builddoctor.probe import machine_profile
    from builddoctor.source import ensure_source

    machine = machine_profile()
    source = ensure_source()
    print(
        f"CPU: {machine.cpu.model} ({machine.cpu.cores} cores, {machine.cpu.threads} threads); "
        f"features: {' '.join(machine.cpu.features)}"
    )
    if args.dry:
        return dry(machine, source)
    model = smoke_model.ensure_model(int(args.size_mb * 1e6))
    print(
        f"model {model.name} ({model.stat().st_size / 1e6:.0f} MB); llama-bench -p {bench.DEFAULT_PP} "
        f"-n {bench.DEFAULT_TG} -r {args.reps}; objective {args.objective}",
        flush=True,
    )
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
        fresh=args.fresh,
        say=lambda msg: print(msg, flush=True),
    )
    print(f"tune: {time.monotonic() - t0:.0f} s, stopped: {res.stopped}", flush=True)
    vs_default = default_build(res, machine, source, model, args)
    table(res, vs_default)
    return 0


def default_build(res, machine, source, model, args):
    """llama.cpp's default build (no options at all), verified, then measured interleaved against
    the plain plan: its (pp, tg) ratios to the plain plan, or None where it does not compute."""
    default = BuildPlan(goal="native", backend="cpu", targets=["llama-bench"])
    d = build.build(default, source)
    print(f"llama.cpp default build: {d.status} in {d.duration_s:.0f} s", flush=True)
    plain = next(c for c in res.candidates if c.name == tune.BASELINE)
    if d.status not in ("ok", "cached"):
        print(f"llama.cpp default build: did not build: {(d.error or '').splitlines()[:1]}\n")
        return None
    ver = build.verify(d, machine)
    if not ver.ok:
        print(f"llama.cpp default build: does not compute here: {ver.message}\n")
        return None
    plain_lb = bench.find_llama_bench(Path(plain.build_dir) / "bin")
    default_lb = bench.find_llama_bench(Path(d.build_dir) / "bin")
    with build.build_lock():
        cmp = bench.compare([plain_lb, default_lb], model, rounds=args.max_rounds, reps=args.reps, threads=res.threads)
    print(f"llama.cpp default build: pp {_s(cmp.results[1].pp)} tg {_s(cmp.results[1].tg)} t/s\n")
    return cmp.pp_ratio[1], cmp.tg_ratio[1]


def _vs_default(ratio, default) -> str:
    """(candidate / plain) / (default / plain): the candidate's ratio to llama.cpp's default build."""
    if default is None or not default.mean:
        return ""
    return f"{(ratio.mean if ratio else 1.0) / default.mean:5.2f}x"


def table(res, vs_default) -> None:
    print(
        f"{'candidate':<14} {'scope':<5} {'build s':>8} {'pp t/s':>15} {'tg t/s':>15} {'pp vs plain':>13} "
        f"{'tg vs plain':>13} {'pp vs dflt':>10} {'tg vs dflt':>10}  status"
    )
    for c in sorted(res.candidates, key=tune.sort_key(res.objective)):
        is_plain = c.name == tune.BASELINE
        pr = None if is_plain else c.pp_ratio
        tr = None if is_plain else c.tg_ratio
        pp_def = _vs_default(pr, vs_default[0]) if vs_default and c.pp else ""
        tg_def = _vs_default(tr, vs_default[1]) if vs_default and c.tg else ""
        build_s = "" if c.build_s is None else f"{c.build_s:.0f}" + (" c" if c.build_status == "cached" else "")
        status = c.status + (f": {c.reason}" if c.reason and c.status not in ("measured", "winner") else "")
        print(
            f"{c.name:<14} {c.scope:<5} {build_s:>8} {_s(c.pp)} {_s(c.tg)} "
            f"{(_r(pr) if pr else ('1.00x' if is_plain else '')):>13} "
            f"{(_r(tr) if tr else ('1.00x' if is_plain else '')):>13} {pp_def:>10} {tg_def:>10}  {status[:120]}"
        )
    print(f"\nwinner: {res.winner} - {res.winner_reason}")


if __name__ == "__main__":
    sys.exit(main())
