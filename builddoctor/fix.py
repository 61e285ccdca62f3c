"""`fix --rebuild`: check -> plan -> build -> verify -> benchmark old vs new -> install.

A plain function over the stage functions; the CLI only renders what it says. Nothing is
installed unless every step before succeeded, and ``--replace`` is refused when the new
build does not cure what it was built for or is slower than the old one.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor import bench, build, errors, install, known_bad, smoke_model
from builddoctor.errors import UserError
from builddoctor.findings import diagnose
from builddoctor.findings.rules import closed_features
from builddoctor.profiles import BuildPlan, BuildResult, Serializable
from builddoctor.resolve import resolve, shell_line

#: a build counts as slower when pp or tg falls below this fraction of the old one
SLOWER_BELOW = 0.95

STATUS_EXIT = {
    "failed": errors.BUILD_FAILED,
    "interrupted": errors.INTERRUPTED,
    "missing-toolchain": errors.TOOLCHAIN,
    "no-space": errors.NO_SPACE,
}


@dataclass
class FixReport(Serializable):
    target: str = ""
    problems: list[str] = field(default_factory=list)  # codes that motivated the rebuild
    plan: BuildPlan | None = None
    build: BuildResult | None = None
    verified: bool | None = None
    verify_message: str = ""
    comparison: dict | None = None  # bench.Comparison.to_dict()
    installed: list[str] = field(default_factory=list)
    bin_dir: str = ""
    backup: str | None = None
    steps: list[str] = field(default_factory=list)  # what was (or, with --dry-run, would be) done
    outcome: str = ""  # fixed, healthy, dry-run
    replanned: list[str] = field(default_factory=list)  # features left out after the first build crashed


def build_error(result: BuildResult) -> UserError:
    code = STATUS_EXIT.get(result.status, errors.BUILD_FAILED)
    what = {
        "failed": "The build failed.",
        "interrupted": "The build was interrupted.",
        "missing-toolchain": "Something the build needs is not installed.",
        "no-space": "There is not enough disk space for the build.",
    }.get(result.status, "The build failed.")
    msg = f"{what} {result.error or ''}".strip()
    if result.log_path:
        msg += f"\nFull log: {result.log_path}"
    if result.status != "missing-toolchain":
        msg += "\nNothing was installed or replaced; the old binaries are untouched."
    return UserError(msg, exit_code=code)


def executables_dir(build_profile) -> Path:
    """The folder holding a found build's programs (what --replace writes into)."""
    progs = [Path(f.path) for f in build_profile.files if f.role == "executable"]
    if progs:
        return progs[0].parent
    root = Path(build_profile.root)
    return root if root.is_dir() else root.parent


@dataclass
class _Fix:
    """One fix's settings and its report so far, carried between the steps."""

    machine: Any
    source: Path
    rep: FixReport
    say: Callable[[str], None]
    progress: Any = None
    cache_root: Path | None = None
    host: bool = True
    allowed_paths: Any = ()

    def step(self, text: str) -> None:
        self.rep.steps.append(text)
        self.say(text)


def fix(
    machine,
    path: Path | None,
    *,
    source: Path,
    goal: str = "native",
    backend: str = "auto",
    plan: BuildPlan | None = None,
    replace: bool = False,
    dry_run: bool = False,
    rounds: int = 3,
    model_bytes: int | None = None,
    say: Callable[[str], None] = lambda _m: None,
    progress=None,
    confirm: Callable[[str], bool] = lambda _m: True,
    cache_root: Path | None = None,
    host: bool = True,
    allowed_paths=(),
) -> FixReport:
    """``host``: ``machine`` is this machine's CPU (not --profile/--cpuinfo): -march=native may be planned.
    ``allowed_paths``: absolute compiler/toolkit paths the user confirmed for the plan (plan_policy)."""
    run = _Fix(machine, source, FixReport(target=str(path or "")), say, progress, cache_root, host, allowed_paths)
    old = _check(run, path, dry_run)
    if old is None:
        return run.rep
    plan = _plan(run, plan, goal, backend)
    old_bench = bench.find_llama_bench(Path(old.build.root))
    dest_dir = executables_dir(old.build)
    if dry_run:
        _dry_run(run, plan, old_bench, dest_dir, rounds=rounds, replace=replace)
        run.rep.outcome = "dry-run"
        return run.rep
    result = _build_and_cure(run, plan)
    _benchmark(run, result, old_bench, rounds=rounds, model_bytes=model_bytes)
    _install(run, result, dest_dir, replace=replace, confirm=confirm)
    run.rep.outcome = "fixed"
    return run.rep


def _check(run: _Fix, path: Path | None, dry_run: bool):
    """1. check: the first found build with problems (its report), or None (outcome "healthy")."""
    run.step(f"check: inspect {path or 'the llama.cpp builds found on this machine'}")
    diag = diagnose(run.machine, [Path(path)] if path else None, run=not dry_run, host=run.host)
    reports = [r for r in diag.builds if build.problem_codes(r)]
    if not diag.builds:
        raise errors.InputError(
            "No llama.cpp build found to fix" + (f" at {path}" if path else "") + ". " + " ".join(diag.messages)
        )
    if not reports:
        run.rep.outcome = "healthy"
        run.step("check: the build is healthy; nothing to rebuild")
        return None
    old = reports[0]
    run.rep.problems = build.problem_codes(old)
    run.rep.target = old.build.root
    for f in old.findings:
        if f.code in run.rep.problems:
            run.step(f"  {f.code} {f.severity}: {f.title}")
    return old


def _plan(run: _Fix, plan: BuildPlan | None, goal: str, backend: str) -> BuildPlan:
    """2. plan: the given plan, or the resolver's for this machine."""
    if plan is None:
        plan = resolve(run.machine, goal=goal, backend=backend, source=run.source, host=run.host)
    run.rep.plan = plan
    run.step(f"plan: {plan.goal} {plan.backend}: " + shlex.join(plan.cmake_args()))
    return plan


def _dry_run(run: _Fix, plan: BuildPlan, old_bench, dest_dir: Path, *, rounds: int, replace: bool) -> None:
    """What the steps after the plan would do, said without doing any of it."""
    dry = build.commands(plan, run.source, cache_root=run.cache_root, allowed_paths=run.allowed_paths)
    for argv in dry.commands:
        run.step("build: " + shlex.join(argv))
    run.step(
        "build: in the environment "
        + shell_line([], dry.env, exact=True)
        + f" ({build.KEY_PLACEHOLDER}: the cache key, from the compilers' --version output)"
    )
    run.step("verify: builddoctor check <new build>/bin; must no longer report " + ", ".join(run.rep.problems))
    run.step(
        f"bench: llama-bench on a smoke model, old ({old_bench or 'no llama-bench beside the old build'}) "
        f"and new interleaved, {rounds} rounds: "
        + " ".join(
            bench.bench_command(
                Path("<new>/bin/llama-bench"), Path("<model>.gguf"), threads=bench.physical_cores(run.machine)
            )
        )
    )
    if replace:
        run.step(
            f"install: back up the old files in {dest_dir} to {install.backups_dir()}/<time>/, "
            "then replace them (undo with `builddoctor rollback`)"
        )
    else:
        run.step(
            f"install: copy the new build to {install.paths.data_home()}/installs/<key>/bin and link "
            f"{install.paths.data_home()}/bin to it"
        )


def _build_and_verify(run: _Fix, plan: BuildPlan) -> tuple[BuildResult, build.Verification]:
    """3. build, 4. verify (the compute probe included: a build that crashes when it computes is not built)."""
    run.step("build: " + " ".join(build.compile_command(plan, Path("<cache>"), build.choose_jobs(plan))[3:]))
    result = build.build(
        plan, run.source, progress=run.progress, cache_root=run.cache_root, allowed_paths=run.allowed_paths
    )
    run.rep.build = result
    if result.status not in ("ok", "cached"):
        raise build_error(result)
    run.step(f"build: {result.status} ({result.duration_s:.0f} s): {result.build_dir}/bin")
    ver = build.verify(result, run.machine, run.rep.problems)
    run.rep.verified, run.rep.verify_message = ver.ok, ver.message
    run.step(f"verify: {ver.message}")
    return result, ver


def _build_and_cure(run: _Fix, plan: BuildPlan) -> BuildResult:
    """Build and verify; once, when the new build crashed in its compute probe for a known reason, plan
    again without what the crash points at. Raises (exit VERIFY_FAILED) when it still does not cure."""
    result, ver = _build_and_verify(run, plan)
    avoid, why = crash_cause(ver, run.machine) if not ver.ok else ([], "")
    if avoid:
        run.step(
            f"replan: the new build crashed in its compute probe; {why}: planning the CPU code without "
            f"{', '.join(avoid)}"
        )
        targets = list(plan.targets)
        plan = resolve(
            run.machine, goal=plan.goal, backend=plan.backend, source=run.source, host=run.host, avoid=tuple(avoid)
        )
        plan.targets = targets or plan.targets  # the programs asked for stay the same
        run.rep.plan, run.rep.replanned = plan, sorted(avoid)
        run.step(f"plan: {plan.goal} {plan.backend}: " + shlex.join(plan.cmake_args()))
        result, ver = _build_and_verify(run, plan)
    if not ver.ok:
        raise UserError(
            f"The new build does not cure what it was built for: {ver.message}. Nothing was "
            f"installed or replaced; the old build is as it was. The new build is at "
            f"{result.build_dir}/bin, its log at {result.log_path or '(none)'}. To try: "
            f"`builddoctor check {result.build_dir}/bin` shows the crash; "
            "`builddoctor fix --rebuild --goal portable` builds CPU variants that the loader picks "
            "by what this CPU runs.",
            exit_code=errors.VERIFY_FAILED,
        )
    return result


def _benchmark(run: _Fix, result: BuildResult, old_bench, *, rounds: int, model_bytes: int | None) -> None:
    """5. benchmark old vs new, interleaved; raises when the new build's run fails or it is slower."""
    new_bench = bench.find_llama_bench(Path(result.build_dir) / "bin")
    if new_bench is None:
        raise UserError(
            f"The new build has no llama-bench to measure it with ({result.build_dir}/bin). Nothing was installed.",
            exit_code=errors.BENCH_FAILED,
        )
    machine = run.machine
    size = model_bytes or smoke_model.roofline_bytes(machine.cpu.l3_cache_bytes)
    model = smoke_model.ensure_model(size)
    with build.build_lock():
        bw = bench.memory_bandwidth(threads=machine.cpu.threads or None, l3_bytes=machine.cpu.l3_cache_bytes)
    pair = [old_bench, new_bench] if old_bench else [new_bench]
    run.step(
        f"bench: {len(pair)} build(s), {rounds} interleaved rounds on {model.name} "
        f"({model.stat().st_size / 1e6:.0f} MB); memory read bandwidth {bw:.1f} GB/s"
    )
    # holding the build lock keeps builddoctor's own compiles off the cores while measuring
    with build.build_lock(on_wait=lambda: run.say("bench: waiting for a llama.cpp build to finish first")):
        cmp = bench.compare(pair, model, rounds=rounds, threads=bench.physical_cores(machine), bandwidth_gbs=bw)
    run.rep.comparison = cmp.to_dict()
    new_res = cmp.results[-1]
    if new_res.error:
        raise UserError(
            f"The new build's benchmark failed: {new_res.error}. Nothing was installed or replaced.",
            exit_code=errors.BENCH_FAILED,
        )
    _judge_speed(run, result, cmp, has_old=bool(old_bench))


def _judge_speed(run: _Fix, result: BuildResult, cmp, *, has_old: bool) -> None:
    """New against old: raises (exit NOT_FASTER) when pp or tg fell below SLOWER_BELOW of the old build."""
    new_res = cmp.results[-1]
    if has_old and not cmp.results[0].error:
        pp, tg = cmp.pp_ratio[-1], cmp.tg_ratio[-1]
        run.step(f"bench: new/old prompt processing {_fmt_ratio(pp)}, generation {_fmt_ratio(tg)}")
        slower = [n for n, r in (("prompt processing", pp), ("generation", tg)) if r and r.mean < SLOWER_BELOW]
        if slower:
            raise UserError(
                f"The new build is slower than the old one ({' and '.join(slower)}: "
                f"{_fmt_ratio(pp)} / {_fmt_ratio(tg)}); nothing was installed or replaced. "
                f"It is at {result.build_dir}/bin if you want to look.",
                exit_code=errors.NOT_FASTER,
            )
    elif has_old:
        new_pp, new_tg = new_res.pp, new_res.tg
        after = ", ".join(
            f"{k} {v.mean:.1f} t/s" for k, v in (("prompt processing", new_pp), ("generation", new_tg)) if v is not None
        )
        run.step(f"bench: before: crashed ({cmp.results[0].error}); after: {after or 'ran'}")
    else:
        run.step("bench: no llama-bench beside the old build, so no before/after ratio")


def _install(run: _Fix, result: BuildResult, dest_dir: Path, *, replace: bool, confirm: Callable[[str], bool]) -> None:
    """6. install: replace the old files (after asking; a backup is kept), or install into the prefix."""
    if replace:
        if not confirm(f"Replace the files in {dest_dir} (a backup is kept; `builddoctor rollback` restores it)?"):
            raise UserError(
                "Not replaced (declined). The new build is in " + result.build_dir + "/bin.", exit_code=errors.PROBLEMS
            )
        got = install.replace(result, dest_dir)
        run.rep.backup = got.backup
        run.step(f"install: replaced {len(got.files)} file(s) in {dest_dir}; backup in {got.backup}")
    else:
        got = install.install_prefix(result)
        run.step(f"install: {got.bin_dir}/ (stable path) -> {len(got.files)} file(s)")
    run.rep.installed, run.rep.bin_dir = got.files, got.bin_dir


def crash_cause(ver, machine) -> tuple[list[str], str]:
    """What to leave out of the CPU code when the new build died in its compute probe: the
    features of a known-bad row whose code the build carries, whose symptom the crash is, and
    whose CPU feature this machine has; or, where no row's version range covers the build (a row
    ended too early), those of a row the crash otherwise matches. ([], "") when nothing explains it."""
    for b in ver.builds:
        c = b.compute
        if c is None or not c.signal:
            continue
        rows = known_bad.explaining(
            closed_features(b.isa, machine), machine.cpu.features, b.version, b.build_number, c.signal, any_version=True
        )
        if rows:
            r = rows[0]
            return list(r.avoid), f"died with {c.signal}, which matches known-bad row {r.id} ({r.short or r.title})"
    return [], ""


def _fmt_ratio(s) -> str:
    if s is None:
        return "n/a"
    return f"{s.mean:.2f}x ± {s.stddev:.2f}"
