"""``builddoctor recipe`` (the plan for a machine) and ``builddoctor flags`` (check a cmake line)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli.options import describes_this_cpu, json_option, load_machine, machine_options

BACKENDS = ("auto", "cpu", "cuda", "hip", "metal", "sycl", "vulkan")


def _machine(profile_path: Path | None, cpuinfo_path: Path | None, nvidia_smi_path: Path | None):
    """The machine to plan for: a saved profile, or this one probed (with --cpuinfo/--nvidia-smi stand-ins)."""
    if profile_path is not None and cpuinfo_path is None and nvidia_smi_path is None:
        from builddoctor.probe import load_profile

        return load_profile(profile_path)  # the one bounded reader `probe` and `check` use
    return load_machine(profile_path, cpuinfo_path, nvidia_smi_path)


@click.command("recipe")
@machine_options
@click.option(
    "--goal",
    type=click.Choice(["native", "portable"]),
    default="native",
    show_default=True,
    help="native: this exact CPU; portable: binaries to copy to other machines (all CPU variants).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="The GPU backend; auto picks CUDA > HIP > Metal > SYCL > Vulkan > CPU from what is there.",
)
@click.option(
    "--source",
    "source_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="llama.cpp source folder for the command line (default: the pinned tree).",
)
@click.option(
    "--build-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Build folder for the command line (default: the cache folder `builddoctor build` uses).",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 512), help="Parallel compile jobs (default: from cores and memory)."
)
@click.option(
    "--save",
    "save_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the plan as JSON to FILE (input for `builddoctor build --plan FILE`).",
)
@json_option
@click.pass_context
def recipe(
    ctx, profile_path, cpuinfo_path, nvidia_smi_path, goal, backend, source_dir, build_dir, jobs, save_path, as_json
):
    """The cmake options for this machine (or --profile's), each with its reason."""
    from builddoctor.cli import console
    from builddoctor.resolve import resolve

    machine = _machine(profile_path, cpuinfo_path, nvidia_smi_path)
    plan = resolve(
        machine, goal=goal, backend=backend, source=source_dir, host=describes_this_cpu(profile_path, cpuinfo_path)
    )
    if save_path is not None:
        # a saved plan is built elsewhere: its form is checked here (values a --profile put into it
        # included), its paths on the machine that builds it
        from builddoctor import plan_policy

        plan_policy.enforce(plan.to_dict(), where="The plan resolved for this profile", source=source_dir, here=False)
        try:
            from builddoctor.readinput import write_text

            write_text(save_path, plan.to_json() + "\n", "plan")
        except OSError as exc:
            mapped = errors.from_os_error(exc)
            if mapped is not None and mapped.exit_code == errors.NO_SPACE:
                raise errors.UserError(
                    f"Cannot write the plan to {save_path}: no space left on the device. Free "
                    "some space, or save it elsewhere.",
                    exit_code=errors.NO_SPACE,
                ) from None
            raise errors.InputError(f"Cannot write the plan to {save_path}: {exc.strerror or exc}.") from None
    con = console(ctx)
    if as_json:
        con.json(plan)
        return
    _render_plan(con, plan, source_dir, build_dir, jobs, save_path)


def _render_plan(con, plan, source_dir, build_dir, jobs, save_path) -> None:
    from builddoctor import build
    from builddoctor.paths import vendor_dir
    from builddoctor.resolve import shell_line

    m = plan.machine
    where = (
        f"{m.cpu.model or m.cpu.arch} ({m.cpu.microarch or m.cpu.variant or m.arch}), {m.os_version or m.os}"
        if m
        else "?"
    )
    con.echo(
        con.style(
            f"Plan: {plan.goal} build, {plan.backend.upper() if plan.backend != 'cpu' else 'CPU'} backend", bold=True
        )
        + f"  for {where}"
    )
    con.echo(con.style(f"recipes: {', '.join(plan.recipes)}", "dim"))
    con.echo()
    con.echo(con.style("Options", bold=True))
    width = max((len(f"{o.name}={o.value}") for o in plan.options), default=0)
    for o in plan.options:
        con.echo(f"  {f'{o.name}={o.value}':<{width}}  {con.style(o.reason, 'dim')}")
    if plan.prerequisites:
        con.echo()
        con.echo(con.style("Prerequisites", bold=True))
        for p in plan.prerequisites:
            sev = "ok" if p.status == "found" else ("error" if p.required else "warning")
            bounds = []
            if p.min_version:
                bounds.append(f">= {p.min_version}")
            if p.max_version:
                bounds.append(f"< {p.max_version}")
            want = f" (needs {', '.join(bounds)})" if bounds else ""
            have = f" {p.found_version}" if p.found_version else ""
            status = (
                ""
                if p.status == "found"
                else f": {p.status}" + ("" if p.required else " (optional: the build goes ahead without it)")
            )
            con.echo(f"  {con.symbol(sev)} {p.name}{have}{want}{status}")
            if p.status != "found":
                if p.reason:
                    con.echo(f"      {p.reason}")
                for key, cmd in p.install.items():
                    con.echo(f"      install ({key}): {cmd}")
    if plan.skipped:
        con.echo()
        con.echo(con.style("Not chosen", bold=True))
        for s in plan.skipped:
            con.echo(f"  {con.symbol('info')} {s.what}: {s.reason}")
    if plan.notes:
        con.echo()
        con.echo(con.style("Notes", bold=True))
        for n in plan.notes:
            con.echo(f"  {con.symbol('warning')} {n}")
    # the commands `build` runs (its one builder), with the plan's environment in front
    dry = build.commands(plan, source_dir or vendor_dir(), jobs=jobs, build_dir=build_dir, policy=False)
    con.echo()
    con.echo(con.style("Configure and build", bold=True))
    for argv in dry.commands:
        con.echo("  " + shell_line(argv, plan.env))
    if build_dir is None:
        con.echo(
            con.style(
                f"  ({build.KEY_PLACEHOLDER}: the cache key `builddoctor build` computes from the "
                "compilers and the source tree)",
                "dim",
            )
        )
    if not plan.ready:
        con.echo()
        con.echo(con.symbol("error") + " Install the missing prerequisites above before building.")
    if save_path is not None:
        con.echo(con.style(f"plan saved to {save_path}", "dim"))


@click.command("flags", context_settings={"ignore_unknown_options": True})
@click.argument("command_line", nargs=-1, required=True)
@machine_options
@click.option("--no-machine", is_flag=True, help="Check names only; do not compare with this machine.")
@click.option(
    "--source",
    "source_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Read known options from this llama.cpp tree instead of the shipped snapshot.",
)
@json_option
@click.pass_context
def flags(ctx, command_line, profile_path, cpuinfo_path, nvidia_smi_path, no_machine, source_dir, as_json):
    """Check a cmake command line: unknown, deprecated, and machine-contradicting options.

    \b
    builddoctor flags "cmake -B build -DLLAMA_CUDA=ON"
    Exit status: 0 nothing to fix, 1 warnings or errors, 2 bad usage.
    """
    from builddoctor.cli import console
    from builddoctor.findings.flags import check_flags

    text = " ".join(command_line)
    machine = None if no_machine else _machine(profile_path, cpuinfo_path, nvidia_smi_path)
    findings = check_flags(text, machine, source=source_dir)
    con = console(ctx)
    bad = [f for f in findings if f.severity in ("error", "warning")]
    if as_json:
        con.json(
            {
                "schema_version": 1,
                "command": text,
                "findings": [f.to_dict() for f in findings],
                "machine_checked": machine is not None,
            }
        )
    else:
        if not findings:
            con.echo(f"{con.symbol('ok')} No problems found in these options.")
        for f in findings:
            con.echo(f"{con.symbol(f.severity)} {f.code} {f.title}")
            if f.evidence:
                con.echo(f"    {f.evidence}")
            if f.fix:
                con.echo(f"    fix: {f.fix}")
    if bad:
        sys.exit(errors.PROBLEMS)


COMMANDS = [recipe, flags]
