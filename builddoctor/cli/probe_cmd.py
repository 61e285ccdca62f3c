"""``builddoctor probe``: what this machine (or a recorded one) is, as llama.cpp sees it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from builddoctor.cli import console
from builddoctor.cli.options import json_option, load_machine, machine_options
from builddoctor.console import json_text, safe_text


@click.command("probe")
@json_option
@machine_options
@click.pass_context
def probe(
    ctx: click.Context,
    as_json: bool,
    profile_path: Path | None,
    cpuinfo_path: Path | None,
    nvidia_smi_path: Path | None,
) -> None:
    """Show this machine's CPU features, llama.cpp CPU variant, GPUs and build tools.

    With --profile, --cpuinfo or --nvidia-smi, describe another machine from recorded files.
    """
    from builddoctor.render import machine as machine_view

    machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    con = console(ctx)
    # JSON escapes control characters itself (and bounds every list); text from a recorded profile is foreign
    text = (
        json_text(machine) if as_json else safe_text("\n".join(machine_view.lines(machine, con)), keep_style=con.color)
    )
    try:
        click.echo(text, file=con.stream)
        con.stream.flush()
    except BrokenPipeError:  # `builddoctor probe | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


COMMANDS = [probe]
