"""`builddoctor build | bench | fix | rollback`: make, measure and install llama.cpp builds."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.options import FiniteFloatRange, describes_this_cpu, json_option, load_machine, machine_options
from builddoctor.render.progress import ProgressView


def plan_options(func):
    func = click.option(
        "--backend",
        default="auto",
        show_default=True,
        help="cpu, cuda, vulkan, hip, metal, sycl, or auto (what this machine has).",
    )(func)
    func = click.option(
        "--goal",
        type=click.Choice(["native", "portable"]),
        default="native",
        show_default=True,
        help="native: fastest here; portable: runs on any CPU of this architecture.",
    )(func)
    func = click.option(
        "--plan",
        "plan_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="A build plan JSON (from `builddoctor recipe --save`) instead of resolving one.",
    )(func)
    func = click.option(
        "--source",
        "source_path",
        type=click.Path(path_type=Path, file_okay=False),
        help="A llama.cpp checkout to build instead of the pinned tree.",
    )(func)
    func = click.option(
        "--allow-path",
        "allowed_paths",
        multiple=True,
        metavar="PATH",
        help="Let the plan use this absolute compiler or toolkit path (a file, or a folder and "
        "what is in it), which builddoctor did not find itself. Repeatable.",
    )(func)
    return func


def _plan(
    plan_path: Path | None,
    machine,
    goal: str,
    backend: str,
    source: Path,
    host: bool = True,
    allowed_paths=(),
    recheck: bool = True,
):
    """The plan from --plan (its content checked against the plan policy before anything runs),
    or resolved for ``machine``. ``recheck``: probe this machine's toolchain for the plan's
    prerequisites (a dry run runs no tool, so it skips that)."""

    from builddoctor import build, plan_policy
    from builddoctor.profiles import BuildPlan, SchemaError

    if plan_path is not None:
        from builddoctor.readinput import read_json

        data = read_json(plan_path, "build plan", remedy="Write one with `builddoctor recipe --save plan.json`.")
        try:
            plan = BuildPlan.from_dict(data)
        except (SchemaError, ValueError) as exc:
            raise errors.InputError(f"{plan_path} is not a builddoctor build plan: {exc}") from None
        env = build.environment(plan, source, build.default_cache_root())
        plan_policy.enforce(
            data, where=f"The plan {plan_path}", source=source, allowed_paths=allowed_paths, search_path=env.get("PATH")
        )
        if recheck:
            # The plan says where its tools were found when it was saved (maybe on another machine):
            # what this build needs is this machine's toolchain.
            from builddoctor.probe import machine_profile
            from builddoctor.resolve import recheck_prerequisites

            recheck_prerequisites(plan, machine_profile())
        return plan
    from builddoctor.resolve import resolve

    return resolve(machine, goal=goal, backend=backend, source=source, host=host)


def _source(source_path: Path | None, dry_run: bool = False) -> tuple[Path, str]:
    """(tree, note). A dry run never fetches: a missing pinned tree is named, with what the real
    build would do about it."""
    from builddoctor import paths
    from builddoctor.source import load_pin, looks_like_llama_cpp, resolve_source

    if dry_run and source_path is None:
        root = paths.vendor_dir()
        if not looks_like_llama_cpp(root):
            pin = load_pin()
            return root, (
                f"the pinned llama.cpp source is not at {root}: the real build would first fetch "
                f"{pin.package} {pin.version} (llama.cpp {pin.short_commit}, sha256-verified) and "
                "unpack it there"
            )
        return root, ""
    return resolve_source(source_path), ""


# --------------------------------------------------------------------------- build


@click.command("build")
@plan_options
@machine_options
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 512), help="Parallel compile jobs (default: from cores and memory)."
)
@click.option("--dry-run", is_flag=True, help="Print the cmake commands without running them.")
@click.option(
    "--cuda-from-pip",
    is_flag=True,
    help="Download the pinned NVIDIA cuBLAS wheels from PyPI into builddoctor's cache (sha256-checked), "
    "merge them with this machine's CUDA toolkit there, and build against that.",
)
@json_option
@click.pass_context
def build_cmd(
    ctx,
    source_path,
    plan_path,
    goal,
    backend,
    allowed_paths,
    profile_path,
    cpuinfo_path,
    nvidia_smi_path,
    jobs,
    dry_run,
    cuda_from_pip,
    as_json,
):
    """Configure and compile llama.cpp with the resolved plan (cached: a repeat is instant)."""
    from builddoctor import build
    from builddoctor.render import build as build_view

    out = console(ctx)
    source, note = _source(source_path, dry_run)
    machine = None if plan_path else load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    if cuda_from_pip:
        if plan_path is not None:
            raise errors.UserError("--cuda-from-pip resolves the plan itself: use it without --plan")
        _use_cuda_from_pip(machine, dry_run, out)
    here = describes_this_cpu(profile_path, cpuinfo_path)
    plan = _plan(plan_path, machine, goal, backend, source, here, allowed_paths, recheck=not dry_run)
    if dry_run:
        dry = build.commands(plan, source, jobs=jobs, allowed_paths=allowed_paths)
        build_view.dry_run(dry, source, note, out, as_json=as_json)
        return
    if not as_json:
        out.echo(f"Building llama.cpp ({plan.goal}, {plan.backend}) from {source}", err=True)
    view = ProgressView(enabled=not as_json and not out.quiet)
    result = build.build(plan, source, jobs=jobs, progress=view, allowed_paths=allowed_paths)
    ver = _verify(result, machine) if result.status in ("ok", "cached") and here else None
    failure = _failure(result, ver)
    if as_json:
        out.json(result)
    elif result.status in ("ok", "cached"):
        build_view.built(result, ver, out)
    _exit(ctx, failure, as_json)


def _verify(result, machine):
    """The verification that runs: a build for this CPU counts only once its compute probe passes here
    (a plan for another machine's CPU is not run here: `check --profile` reads it statically)."""
    from builddoctor import build
    from builddoctor.probe import machine_profile

    return build.verify(result, machine or machine_profile())


def _failure(result, ver) -> errors.UserError | None:
    """Why the command fails, if it does: the build did not finish, or it does not pass verification."""
    from builddoctor.fix import build_error

    if result.status not in ("ok", "cached"):
        return build_error(result)
    if ver is None or ver.ok:
        return None
    bin_dir = Path(result.build_dir) / "bin"
    return errors.UserError(
        f"The build finished but does not pass verification on this machine: {ver.message}. "
        f"It stays at {bin_dir}; nothing was installed. `builddoctor check {bin_dir}` shows why.",
        exit_code=errors.VERIFY_FAILED,
    )


def _exit(ctx: click.Context, failure: errors.UserError | None, as_json: bool) -> None:
    """The one way out of a failed command: with --json the document was printed and only the exit
    code tells; in text the error paragraph says why."""
    if failure is None:
        return
    if as_json:
        ctx.exit(failure.exit_code)
    raise failure


def _use_cuda_from_pip(machine, dry_run: bool, out) -> None:
    """Point ``machine``'s cuBLAS at the toolkit merged with the pinned PyPI cuBLAS (made now, the one
    network step; a dry run only names what it would fetch)."""
    from builddoctor import cuda_pip

    if dry_run and cuda_pip.use_for(machine, offline=True) is None:
        wheels = cuda_pip.choose(machine.tool("nvcc").version)
        out.echo(
            f"# --cuda-from-pip: the real build would first download "
            f"{', '.join(w.requirement for w in wheels.wheels) if wheels else 'nothing (no pinned set)'} "
            "and merge it with the toolkit in builddoctor's cache.",
            err=True,
        )
    elif not dry_run:
        cuda_pip.use_for(machine, say=lambda s: out.echo(s, err=True))


# --------------------------------------------------------------------------- bench


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
    from contextlib import nullcontext

    from builddoctor import bandwidth
    from builddoctor.build import build_lock

    with nullcontext() if no_bandwidth else build_lock():
        return bandwidth.plan_smoke(
            int(size_mb * 1e6) if size_mb else None, threads=machine.cpu.threads or None, measure=not no_bandwidth
        )


# --------------------------------------------------------------------------- fix / rollback


@click.command("fix")
@click.argument("path", required=False, type=click.Path(path_type=Path, exists=True))
@click.option("--rebuild", is_flag=True, help="Rebuild llama.cpp for this machine (the fix this command makes).")
@click.option("--replace", is_flag=True, help="Write the new build over the found one (backed up first).")
@click.option("--dry-run", is_flag=True, help="Print every step and command without doing it.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before replacing files.")
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Interleaved benchmark rounds, old vs new.",
)
@plan_options
@machine_options
@json_option
@click.pass_context
def fix_cmd(
    ctx,
    path,
    rebuild,
    replace,
    dry_run,
    yes,
    rounds,
    source_path,
    plan_path,
    goal,
    backend,
    allowed_paths,
    profile_path,
    cpuinfo_path,
    nvidia_smi_path,
    as_json,
):
    """Check a build, rebuild it right, verify, benchmark old vs new, and install.

    Installs into builddoctor's own prefix (a stable path it prints) unless --replace.
    Refuses to install when the new build fails verification or is slower.
    """
    from builddoctor import fix
    from builddoctor.render import fix as fix_view

    out = console(ctx)
    _refuse_fix(rebuild, replace and not yes and not dry_run)
    machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    source, note = _source(source_path, dry_run)
    host = describes_this_cpu(profile_path, cpuinfo_path)
    plan = (
        _plan(plan_path, machine, goal, backend, source, host, allowed_paths, recheck=not dry_run)
        if plan_path
        else None
    )
    say = (lambda m: None) if as_json else (lambda m: out.echo(("would " if dry_run else "") + m))
    if note:
        say(f"fetch: {note}")
    rep = fix.fix(
        machine,
        path,
        source=source,
        goal=goal,
        backend=backend,
        plan=plan,
        replace=replace,
        host=host,
        dry_run=dry_run,
        rounds=rounds,
        say=say,
        confirm=_confirmer(yes),
        progress=ProgressView(enabled=not as_json and not out.quiet),
        allowed_paths=allowed_paths,
    )
    if as_json:
        out.json(rep)
    else:
        fix_view.fixed(rep, out)


def _refuse_fix(rebuild: bool, will_ask: bool) -> None:
    """Refusals before step 1: no --rebuild, or a --replace question with no terminal to ask on (it
    would come after building and benchmarking, minutes later)."""
    if not rebuild:
        raise errors.InputError(
            "`builddoctor fix` needs --rebuild (the one fix it makes: rebuilding llama.cpp "
            "for this machine). Add --dry-run to see the steps first."
        )
    if will_ask and not sys.stdin.isatty():
        raise errors.InputError(
            "--replace asks before writing over files, and there is no terminal to ask on; "
            "add --yes to run it unattended. Nothing was built or changed."
        )


def _confirmer(yes: bool):
    """The question ``fix`` asks before writing over files: yes with --yes, else asked on the terminal."""

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise errors.InputError("--replace asks before writing over files; add --yes to run it unattended.")
        return click.confirm(question, default=False)

    return confirm


@click.command("rollback")
@click.option(
    "--force",
    is_flag=True,
    help="Restore even files changed since the replace (what is there now is kept in the backup).",
)
@json_option
@click.pass_context
def rollback_cmd(ctx, force, as_json):
    """Put back the files the last `fix --replace` replaced, byte for byte, all or nothing."""
    from builddoctor import install
    from builddoctor.render import fix as fix_view

    out = console(ctx)
    got = install.rollback(force=force)
    if as_json:
        out.json(got)
    else:
        fix_view.rolled_back(got, out)


COMMANDS = [build_cmd, bench_cmd, fix_cmd, rollback_cmd]
