"""`builddoctor check`: diagnose llama.cpp builds against this (or a recorded) machine."""

from __future__ import annotations

from pathlib import Path

import click

from builddoctor import errors, render
from builddoctor.cli import console
from builddoctor.cli.options import FiniteFloatRange, describes_this_cpu, json_option, load_machine, machine_options


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--run/--no-run",
    "run",
    default=None,
    help="Run the builds: `--version`, `--list-devices`, and the compute probe, a real inference on a "
    "tiny generated model (or a dlopen of a library-only build); time-limited, clean environment. "
    "Default: on for this machine, off with a profile from elsewhere.",
)
@click.option(
    "--timeout",
    type=FiniteFloatRange(0.1, 600),
    default=5.0,
    show_default=True,
    help="Seconds each run may take before it is stopped (the compute probe: six times as long).",
)
@click.option(
    "--source",
    "source_path",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="llama.cpp checkout whose options the CMake options are compared with (default: the pinned one).",
)
@machine_options
@json_option
@click.pass_context
def check_cmd(
    ctx: click.Context,
    paths: tuple[Path, ...],
    run: bool | None,
    timeout: float,
    source_path: Path | None,
    profile_path,
    cpuinfo_path,
    nvidia_smi_path,
    as_json: bool,
) -> None:
    """Find llama.cpp builds (or check PATHS) and say what slows them down here.

    Exit code: 0 when every build is healthy, 1 when problems were found, 2 for bad usage
    or when none of the PATHS could be read, 12 when no build was found where it looked.
    """
    from builddoctor.findings import diagnose

    out = console(ctx)
    machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    # A machine described by a file is not this one: its libraries cannot be looked up here and
    # running the programs here would say nothing about it.
    here = profile_path is None and cpuinfo_path is None and nvidia_smi_path is None
    if run is None:
        run = here
    diagnosis = diagnose(
        machine,
        list(paths) or None,
        run=run,
        timeout=timeout,
        source=source_path,
        here=here,
        host=describes_this_cpu(profile_path, cpuinfo_path),
    )
    from builddoctor.inspect.discover import NOTHING_FOUND

    if not diagnosis.builds and any(m.startswith(NOTHING_FOUND) for m in diagnosis.messages):
        raise errors.NotFoundError(
            " ".join(diagnosis.messages), hint="Give the folder that holds the build: builddoctor check PATH."
        )
    if paths and not diagnosis.builds:
        raise errors.InputError(
            "nothing to check: " + " ".join(diagnosis.messages or ["none of the paths holds a llama.cpp build"])
        )
    if as_json:
        out.json(diagnosis)
    else:
        render.report(diagnosis, out)
    if not diagnosis.healthy:
        ctx.exit(errors.PROBLEMS)


COMMANDS = [check_cmd]
