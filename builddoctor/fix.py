"""`fix --rebuild`: check -> plan -> build -> verify -> benchmark old vs new -> install.

A plain function over the stage functions; the CLI only renders what it says. Nothing is
installed unless every step before succeeded, and ``--replace`` is refused when the new
build does not cure what it was built for or is slower than the old one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import errors
from builddoctor.errors import UserError
from builddoctor.profiles import BuildPlan, BuildResult, Serializable

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
    import shlex

    from builddoctor import bench, build, install, smoke_model
    from builddoctor.findings import diagnose

    rep = FixReport(target=str(path or ""))

    def step(text: str) -> None:
        rep.steps.append(text)
        say(text)

    # 1. check
    step(f"check: inspect {path or 'the llama.cpp builds found on this machine'}")
    diag = diagnose(machine, [Path(path)] if path else None, run=not dry_run, host=host)
    reports = [r for r in diag.builds if build.problem_codes(r)]
    if not diag.builds:
        raise errors.InputError(
            "No llama.cpp build found to fix" + (f" at {path}" if path else "") + ". " + " ".join(diag.messages)
        )
    if not reports:
        rep.outcome = "healthy"
        step("check: the build is healthy; nothing to rebuild")
        return rep
    old = reports[0]
    rep.problems = build.problem_codes(old)
    rep.target = old.build.root
    for f in old.findings:
        if f.code in rep.problems:
            step(f"  {f.code} {f.severity}: {f.title}")

    # 2. plan
    if plan is None:
        from builddoctor.resolve import resolve

        plan = resolve(machine, goal=goal, backend=backend, source=source, host=host)
    rep.plan = plan
    step(f"plan: {plan.goal} {plan.backend}: " + shlex.join(plan.cmake_args()))

    old_bench = bench.find_llama_bench(Path(old.build.root))
    dest_dir = executables_dir(old.build)
    if dry_run:
        dry = build.commands(plan, source, cache_root=cache_root, allowed_paths=allowed_paths)
        for argv in dry.commands:
            step("build: " + shlex.join(argv))
        from builddoctor.resolve import shell_line

        step(
            "build: in the environment "
            + shell_line([], dry.env, exact=True)
            + f" ({build.KEY_PLACEHOLDER}: the cache key, from the compilers' --version output)"
        )
        step("verify: builddoctor check <new build>/bin; must no longer report " + ", ".join(rep.problems))
        step(
            f"bench: llama-bench on a smoke model, old ({old_bench or 'no llama-bench beside the old build'}) "
            f"and new interleaved, {rounds} rounds: "
            + " ".join(
                bench.bench_command(
                    Path("<new>/bin/llama-bench"), Path("<model>.gguf"), threads=bench.physical_cores(machine)
                )
            )
        )
        if replace:
            step(
                f"install: back up the old files in {dest_dir} to {install.backups_dir()}/<time>/, "
                "then replace them (undo with `builddoctor rollback`)"
            )
        else:
            step(
                f"install: copy the new build to {install.paths.data_home()}/installs/<key>/bin and link "
                f"{install.paths.data_home()}/bin to it"
            )
        rep.outcome = "dry-run"
        return rep

    # 3. build, 4. verify (the compute probe included: a build that crashes when it computes is not built)
    def build_and_verify(plan: BuildPlan):
        step("build: " + " ".join(build.compile_command(plan, Path("<cache>"), build.choose_jobs(plan))[3:]))
        result = build.build(plan, source, progress=progress, cache_root=cache_root, allowed_paths=allowed_paths)
        rep.build = result
        if result.status not in ("ok", "cached"):
            raise build_error(result)
        step(f"build: {result.status} ({result.duration_s:.0f} s): {result.build_dir}/bin")
        ver = build.verify(result, machine, rep.problems)
        rep.verified, rep.verify_message = ver.ok, ver.message
        step(f"verify: {ver.message}")
        return result, ver

    result, ver = build_and_verify(plan)
    avoid, why = crash_cause(ver, machine) if not ver.ok else ([], "")
    if avoid:
        # once: plan again without what the crash points at, build, verify again
        step(
            f"replan: the new build crashed in its compute probe; {why}: planning the CPU code without "
            f"{', '.join(avoid)}"
        )
        from builddoctor.resolve import resolve

        targets = list(plan.targets)
        plan = resolve(machine, goal=plan.goal, backend=plan.backend, source=source, host=host, avoid=tuple(avoid))
        plan.targets = targets or plan.targets  # the programs asked for stay the same
        rep.plan, rep.replanned = plan, sorted(avoid)
        step(f"plan: {plan.goal} {plan.backend}: " + shlex.join(plan.cmake_args()))
        result, ver = build_and_verify(plan)
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

    # 5. benchmark old vs new
    new_bench = bench.find_llama_bench(Path(result.build_dir) / "bin")
    if new_bench is None:
        raise UserError(
            f"The new build has no llama-bench to measure it with ({result.build_dir}/bin). Nothing was installed.",
            exit_code=errors.BENCH_FAILED,
        )
    size = model_bytes or smoke_model.roofline_bytes(machine.cpu.l3_cache_bytes)
    model = smoke_model.ensure_model(size)
    with build.build_lock():
        bw = bench.memory_bandwidth(threads=machine.cpu.threads or None, l3_bytes=machine.cpu.l3_cache_bytes)
    pair = [old_bench, new_bench] if old_bench else [new_bench]
    step(
        f"bench: {len(pair)} build(s), {rounds} interleaved rounds on {model.name} "
        f"({model.stat().st_size / 1e6:.0f} MB); memory read bandwidth {bw:.1f} GB/s"
    )
    # holding the build lock keeps builddoctor's own compiles off the cores while measuring
    with build.build_lock(on_wait=lambda: say("bench: waiting for a llama.cpp build to finish first")):
        cmp = bench.compare(pair, model, rounds=rounds, threads=bench.physical_cores(machine), bandwidth_gbs=bw)
    rep.comparison = cmp.to_dict()
    new_res = cmp.results[-1]
    if new_res.error:
        raise UserError(
            f"The new build's benchmark failed: {new_res.error}. Nothing was installed or replaced.",
            exit_code=errors.BENCH_FAILED,
        )
    if old_bench and not cmp.results[0].error:
        pp, tg = cmp.pp_ratio[-1], cmp.tg_ratio[-1]
        step(f"bench: new/old prompt processing {_fmt_ratio(pp)}, generation {_fmt_ratio(tg)}")
        slower = [n for n, r in (("prompt processing", pp), ("generation", tg)) if r and r.mean < SLOWER_BELOW]
        if slower:
            raise UserError(
                f"The new build is slower than the old one ({' and '.join(slower)}: "
                f"{_fmt_ratio(pp)} / {_fmt_ratio(tg)}); nothing was installed or replaced. "
                f"It is at {result.build_dir}/bin if you want to look.",
                exit_code=errors.NOT_FASTER,
            )
    elif old_bench:
        new_pp, new_tg = new_res.pp, new_res.tg
        after = ", ".join(
            f"{k} {v.mean:.1f} t/s" for k, v in (("prompt processing", new_pp), ("generation", new_tg)) if v is not None
        )
        step(f"bench: before: crashed ({cmp.results[0].error}); after: {after or 'ran'}")
    else:
        step("bench: no llama-bench beside the old build, so no before/after ratio")

    # 6. install
    if replace:
        if not confirm(f"Replace the files in {dest_dir} (a backup is kept; `builddoctor rollback` restores it)?"):
            raise UserError(
                "Not replaced (declined). The new build is in " + result.build_dir + "/bin.", exit_code=errors.PROBLEMS
            )
        got = install.replace(result, dest_dir)
        rep.backup = got.backup
        step(f"install: replaced {len(got.files)} file(s) in {dest_dir}; backup in {got.backup}")
    else:
        got = install.install_prefix(result)
        step(f"install: {got.bin_dir}/ (stable path) -> {len(got.files)} file(s)")
    rep.installed, rep.bin_dir = got.files, got.bin_dir

    # 7. the installed build, checked once more where it now lives
    rep.outcome = "fixed"
    return rep


def crash_cause(ver, machine) -> tuple[list[str], str]:
    """What to leave out of the CPU code when the new build died in its compute probe: the
    features of a known-bad row whose code the build carries, whose symptom the crash is, and
    whose CPU feature this machine has; or, where no row's version range covers the build (a row
    ended too early), those of a row the crash otherwise matches. ([], "") when nothing explains it."""
    from builddoctor import known_bad
    from builddoctor.findings.rules import closed_features

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
