"""`builddoctor build | bench | fix | rollback`: make, measure and install llama.cpp builds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.options import FiniteFloatRange, describes_this_cpu, json_option, load_machine, machine_options


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


def _dry_run_lines(dry, note: str) -> list[str]:
    """Comment lines, then each command as a line to paste into a POSIX shell: ``env -i`` with the
    exact environment the build would use, every word shell-quoted."""
    from builddoctor.build import KEY_PLACEHOLDER
    from builddoctor.resolve import shell_line

    lines = ["# builddoctor build --dry-run: nothing was run or written."]
    if note:
        lines.append(f"# {note}.")
    lines.append(
        f"# {KEY_PLACEHOLDER}: the cache key, which hashes the compilers' --version output (not run in a dry run)."
    )
    lines += [shell_line(argv, dry.env, exact=True) for argv in dry.commands]
    return lines


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressView:
    """ninja progress as one rewritten line on a terminal, or a line every ~10% otherwise."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.last_pct = -100
        self.last_t = 0.0
        self.drawn = False

    def __call__(self, ev) -> None:
        if not self.enabled:
            return
        if ev.stage in ("configure", "waiting"):
            self._line(ev.message)
        elif ev.stage == "compile" and ev.total:
            pct = 100 * ev.done // ev.total
            eta = f" ETA {_fmt_time(ev.eta_s)}" if ev.eta_s is not None else ""
            if self.tty:
                width = 30
                fill = width * ev.done // ev.total
                text = (
                    f"\r[{'#' * fill}{'-' * (width - fill)}] {ev.done}/{ev.total} {pct:3d}%"
                    f" {_fmt_time(ev.elapsed_s)}{eta}"
                )
                self.stream.write(text.ljust(72))
                self.stream.flush()
                self.drawn = True
            elif pct >= self.last_pct + 10 or ev.done == ev.total or time.monotonic() - self.last_t > 60:
                self.last_pct, self.last_t = pct, time.monotonic()
                self._line(f"[{ev.done}/{ev.total}] {pct}% elapsed {_fmt_time(ev.elapsed_s)}{eta}")
        elif ev.stage in ("done", "failed") and self.drawn:
            self.stream.write("\n")
            self.drawn = False

    def _line(self, text: str) -> None:
        from builddoctor.console import safe_text

        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.stream.write(safe_text(text) + "\n")  # configure's words are foreign text: no raw escapes
        self.stream.flush()


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
    from builddoctor.fix import build_error

    out = console(ctx)
    source, note = _source(source_path, dry_run)
    machine = None if plan_path else load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    if cuda_from_pip:
        if plan_path is not None:
            raise errors.UserError("--cuda-from-pip resolves the plan itself: use it without --plan")
        _use_cuda_from_pip(machine, dry_run, out)
    plan = _plan(
        plan_path,
        machine,
        goal,
        backend,
        source,
        describes_this_cpu(profile_path, cpuinfo_path),
        allowed_paths,
        recheck=not dry_run,
    )
    if dry_run:
        dry = build.commands(plan, source, jobs=jobs, allowed_paths=allowed_paths)
        if as_json:
            out.json(
                {
                    "commands": dry.commands,
                    "env": dry.env,
                    "build_dir": dry.build_dir,
                    "source": str(source),
                    "notes": [note] if note else [],
                }
            )
        else:
            for line in _dry_run_lines(dry, note):
                out.echo(line)
        return
    view = ProgressView(enabled=not as_json and not out.quiet)
    if not as_json:
        out.echo(f"Building llama.cpp ({plan.goal}, {plan.backend}) from {source}", err=True)
    result = build.build(plan, source, jobs=jobs, progress=view, allowed_paths=allowed_paths)
    ok = result.status in ("ok", "cached")
    # verification that runs: a build for this CPU counts only once its compute probe passes here
    # (a plan for another machine's CPU is not run here: `check --profile` reads it statically)
    ver = None
    if ok and describes_this_cpu(profile_path, cpuinfo_path):
        from builddoctor.probe import machine_profile

        ver = build.verify(result, machine or machine_profile())
    if as_json:
        out.json(result)
        if not ok:
            ctx.exit(build_error(result).exit_code)
        if ver is not None and not ver.ok:
            ctx.exit(errors.VERIFY_FAILED)
        return
    if not ok:
        raise build_error(result)
    how = "cached, built before" if result.status == "cached" else f"built in {_fmt_time(result.duration_s)}"
    out.echo(f"{out.symbol('ok')} {Path(result.build_dir) / 'bin'} ({how})")
    for b in result.binaries:
        out.echo(f"    {b}")
    out.echo(f"    log: {result.log_path}")
    if ver is None:
        out.echo(
            "    not run here: the plan is for another machine's CPU "
            "(`builddoctor check --profile FILE <bin>` reads the build against it)"
        )
    elif not ver.ok:
        raise errors.UserError(
            f"The build finished but does not pass verification on this machine: {ver.message}. "
            f"It stays at {Path(result.build_dir) / 'bin'}; nothing was installed. "
            f"`builddoctor check {Path(result.build_dir) / 'bin'}` shows why.",
            exit_code=errors.VERIFY_FAILED,
        )
    else:
        ran = next((f.title for f in ver.findings if f.code in ("ok:runtime", "BD113")), ver.message)
        out.echo(f"    verified: {ran}")


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


def _stat(s) -> str:
    return f"{s.mean:8.1f} ± {s.stddev:5.1f}" if s else "       n/a     "


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
    from builddoctor import bandwidth, bench, paths, smoke_model
    from builddoctor.build import build_lock

    out = console(ctx)
    machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
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
    from contextlib import nullcontext

    with nullcontext() if no_bandwidth else build_lock():  # no builddoctor compile on the cores while measuring
        smoke = bandwidth.plan_smoke(
            int(size_mb * 1e6) if size_mb else None, threads=machine.cpu.threads or None, measure=not no_bandwidth
        )
    size = smoke.model_bytes
    if not as_json:
        out.echo(f"Smoke model: about {size / 1e6:.0f} MB (Q4_0, random weights)...", err=True)
    model = smoke_model.ensure_model(size)
    bw = smoke.bandwidth_gbs if smoke.roofline else None
    threads = bench.physical_cores(machine)
    if not as_json:
        out.echo(
            f"Model {model} ({model.stat().st_size / 1e6:.0f} MB, "
            f"{smoke_model.bytes_per_token(model) / 1e6:.0f} MB read per generated token); threads {threads}"
            + (f"; memory read bandwidth {bw:.1f} GB/s" if bw else ""),
            err=True,
        )

    def on_run(r, i, res):
        if not as_json:
            out.echo(
                f"  round {r + 1}/{rounds}: {Path(res.binary).parent}: "
                + (
                    res.error or f"pp {res.pp.mean if res.pp else 0:.1f} t/s, tg {res.tg.mean if res.tg else 0:.1f} t/s"
                ),
                err=True,
            )

    # no builddoctor compile on the cores while measuring
    with build_lock(on_wait=lambda: out.echo("waiting for a llama.cpp build to finish first...", err=True)):
        cmp = bench.compare(
            found,
            model,
            rounds=rounds if len(found) > 1 else 1,
            reps=reps,
            threads=threads,
            bandwidth_gbs=bw,
            on_run=on_run,
        )
    cmp.roofline_note = smoke.why
    if as_json:
        out.json(cmp)
    else:
        out.echo(
            f"{'build':<50} {'pp' + str(bench.DEFAULT_PP) + ' t/s':>16} {'tg' + str(bench.DEFAULT_TG) + ' t/s':>16}"
            f" {'of bw limit':>11}"
        )
        for i, res in enumerate(cmp.results):
            name = str(Path(res.binary).parent)
            name = name if len(name) <= 50 else "..." + name[-47:]
            if res.error:
                out.echo(f"{name:<50} {out.symbol('error')} {res.error}")
                continue
            frac = f"{res.roofline_fraction:10.0%}" if res.roofline_fraction is not None else "        n/a"
            out.echo(f"{name:<50} {_stat(res.pp):>16} {_stat(res.tg):>16} {frac:>11}")
            if res.gpu_info:
                out.echo(f"    ran on {res.backends or 'a GPU'}: {res.gpu_info}")
            if i > 0 and (cmp.pp_ratio[i] or cmp.tg_ratio[i]):
                pr, tr = cmp.pp_ratio[i], cmp.tg_ratio[i]
                out.echo(
                    f"{'  vs first':<50} {(f'{pr.mean:.2f}x ± {pr.stddev:.2f}' if pr else 'n/a'):>16}"
                    f" {(f'{tr.mean:.2f}x ± {tr.stddev:.2f}' if tr else 'n/a'):>16}"
                )
        out.echo(f"roofline: {smoke.why}")
    if any(r.error for r in cmp.results):
        ctx.exit(errors.BENCH_FAILED)


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

    out = console(ctx)
    if not rebuild:
        raise errors.InputError(
            "`builddoctor fix` needs --rebuild (the one fix it makes: rebuilding llama.cpp "
            "for this machine). Add --dry-run to see the steps first."
        )
    if replace and not yes and not dry_run and not sys.stdin.isatty():
        # refused before step 1: the question comes after building and benchmarking (minutes)
        raise errors.InputError(
            "--replace asks before writing over files, and there is no terminal to ask on; "
            "add --yes to run it unattended. Nothing was built or changed."
        )
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

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise errors.InputError("--replace asks before writing over files; add --yes to run it unattended.")
        return click.confirm(question, default=False)

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
        confirm=confirm,
        progress=ProgressView(enabled=not as_json and not out.quiet),
        allowed_paths=allowed_paths,
    )
    if as_json:
        out.json(rep)
        return
    if rep.outcome == "fixed":
        out.echo(f"{out.symbol('ok')} fixed: {rep.bin_dir}")
        if rep.backup:
            out.echo(f"    undo with: builddoctor rollback   (backup: {rep.backup})")
        else:
            out.echo(f"    run it as: {Path(rep.bin_dir) / 'llama-cli'}")
    elif rep.outcome == "healthy":
        out.echo(f"{out.symbol('ok')} nothing to fix")


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

    out = console(ctx)
    got = install.rollback(force=force)
    if as_json:
        out.json(got)
        return
    for said in got.recovered:  # a replace or rollback killed half-way, undone first
        out.echo(f"{out.symbol('warning')} {said}")
    out.echo(f"{out.symbol('ok')} restored {len(got.restored)} file(s) in {got.dest_dir} from {got.backup}:")
    for p in got.restored:
        out.echo(f"    {p}")
    if got.kept:
        out.echo(f"{out.symbol('warning')} kept {len(got.kept)} file(s) changed since the replace:")
        for k in got.kept:
            out.echo(f"    {k}")


COMMANDS = [build_cmd, bench_cmd, fix_cmd, rollback_cmd]
