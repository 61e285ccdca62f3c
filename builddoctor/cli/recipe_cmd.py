"""``builddoctor recipe`` (the plan for a machine) and ``builddoctor flags`` (check a cmake line)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.options import describes_this_cpu, json_option, load_machine, machine_options
from builddoctor.readinput import write_text

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
    from builddoctor import build
    from builddoctor.paths import vendor_dir
    from builddoctor.render import plan as plan_view
    from builddoctor.resolve import resolve

    machine = _machine(profile_path, cpuinfo_path, nvidia_smi_path)
    plan = resolve(
        machine, goal=goal, backend=backend, source=source_dir, host=describes_this_cpu(profile_path, cpuinfo_path)
    )
    if save_path is not None:
        _save(plan, save_path, source_dir)
    con = console(ctx)
    if as_json:
        con.json(plan)
        return
    # the commands `build` runs (its one builder); a recipe for another machine is checked where it builds
    dry = build.commands(plan, source_dir or vendor_dir(), jobs=jobs, build_dir=build_dir, policy=False)
    plan_view.report(plan, dry, con, keyed=build_dir is None, saved_to=save_path)


def _save(plan, save_path: Path, source_dir: Path | None) -> None:
    """Write the plan for `build --plan`. A saved plan is built elsewhere: its form is checked here
    (values a --profile put into it included), its paths on the machine that builds it."""
    from builddoctor import plan_policy

    plan_policy.enforce(plan.to_dict(), where="The plan resolved for this profile", source=source_dir, here=False)
    try:
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
    from builddoctor.findings.flags import check_flags
    from builddoctor.render import flags as flags_view

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
        flags_view.report(findings, con)
    if bad:
        sys.exit(errors.PROBLEMS)


COMMANDS = [recipe, flags]
