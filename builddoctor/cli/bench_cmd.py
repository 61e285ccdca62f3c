"""`builddoctor bench`: measure llama.cpp builds on a smoke model, compared in interleaved rounds."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.options import FiniteFloatRange, json_option, load_machine, machine_options


@click.command("bench")
@click.argument("binaries", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--size",
    "size_mb",
    type=FiniteFloatRange(1, 100000),
    help="Smoke model size in MB (default: past the measured cache knee, at most 600; else 100).",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Interleaved rounds when comparing builds.",
)
@click.option(
    "-r", "--reps", type=click.IntRange(1, 50), default=3, show_default=True, help="llama-bench repetitions per run."
)
@click.option("--no-bandwidth", is_flag=True, help="Skip the memory bandwidth measurement (no roofline figure).")
@machine_options
@json_option
@click.pass_context
def bench_cmd(ctx, binaries, size_mb, rounds, reps, no_bandwidth, profile_path, cpuinfo_path, nvidia_smi_path, as_json):
    """Measure llama.cpp builds on a small random-weight model: tokens/s and the bandwidth limit.

    BINARIES are llama-bench programs or build folders (default: builddoctor's installed
    build). With two or more, runs are interleaved and each is compared with the first.
    """
    from builddoctor import bench, smoke_model
    from builddoctor.build import build_lock
    from builddoctor.render import bench as bench_view

    out = console(ctx)
    machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    found = _llama_benches(binaries)
    smoke = _smoke_plan(size_mb, machine, no_bandwidth)
    say = (lambda line: None) if as_json else (lambda line: out.echo(line, err=True))
    say(bench_view.smoke_line(smoke.model_bytes))
    model = smoke_model.ensure_model(smoke.model_bytes)
    bw = smoke.bandwidth_gbs if smoke.roofline else None
    threads = bench.physical_cores(machine)
    if not as_json:
        per_token = smoke_model.bytes_per_token(model)
        say(bench_view.model_line(model, model.stat().st_size, per_token, threads, bw))
    # no builddoctor compile on the cores while measuring
    with build_lock(on_wait=lambda: out.echo("waiting for a llama.cpp build to finish first...", err=True)):
        cmp = bench.compare(
            found,
            model,
            rounds=rounds if len(found) > 1 else 1,
            reps=reps,
            threads=threads,
            bandwidth_gbs=bw,
            on_run=lambda r, i, res: say(bench_view.run_line(r, rounds, res)),
        )
    cmp.roofline_note = smoke.why
    if as_json:
        out.json(cmp)
    else:
        bench_view.report(cmp, out)
    if any(r.error for r in cmp.results):
        ctx.exit(errors.BENCH_FAILED)


def _llama_benches(binaries) -> list[Path]:
    """The llama-bench of each named program or build folder (none named: builddoctor's installed build)."""
    from builddoctor import bench, paths

    if not binaries:
        default = paths.data_home() / "bin"
        if not (default / "llama-bench").exists():
            raise errors.InputError(
                "Name the llama-bench to measure (or a build folder): builddoctor has not "
                "installed a build yet (`builddoctor fix --rebuild` does)."
            )
        binaries = (default,)
    found = []
    for b in binaries:
        lb = bench.find_llama_bench(b)
        if lb is None:
            raise errors.InputError(
                f"No llama-bench at or beside {b}; llama.cpp builds it as the target "
                "llama-bench (`builddoctor build` does)."
            )
        found.append(lb)
    return found


def _smoke_plan(size_mb: float | None, machine, no_bandwidth: bool):
    """The smoke model's size and the bandwidth its roofline uses (measured unless --no-bandwidth,
    with no builddoctor compile on the cores meanwhile)."""
    from builddoctor import bandwidth
    from builddoctor.build import build_lock

    with nullcontext() if no_bandwidth else build_lock():
        return bandwidth.plan_smoke(
            int(size_mb * 1e6) if size_mb else None, threads=machine.cpu.threads or None, measure=not no_bandwidth
        )


COMMANDS = [bench_cmd]
