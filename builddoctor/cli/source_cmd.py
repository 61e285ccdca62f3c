"""`builddoctor source fetch|status`: the pinned llama.cpp tree."""

from __future__ import annotations

from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.options import json_option


@click.group("source")
def source_group() -> None:
    """The pinned llama.cpp source that builddoctor builds."""


@source_group.command("fetch")
@click.option(
    "--sdist",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Use this already-downloaded sdist instead of downloading (it is verified all the same).",
)
@click.option("--force", is_flag=True, help="Fetch again even if a verified tree is there.")
@click.option(
    "--dest",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to put the tree (default: vendor/llama.cpp of this checkout).",
)
@json_option
@click.pass_context
def fetch_cmd(ctx: click.Context, sdist: Path | None, force: bool, dest: Path | None, as_json: bool) -> None:
    """Download, verify (sha256) and unpack the pinned llama.cpp into vendor/llama.cpp."""
    from builddoctor import source

    out = console(ctx)
    result = source.fetch(dest, sdist=sdist, force=force, echo=None if as_json else lambda m: out.echo(m, err=True))
    if as_json:
        out.json(result)
        return
    out.echo(f"{out.symbol('ok')} {result.path}: {result.message}")


@source_group.command("status")
@click.option(
    "--source",
    "source_path",
    type=click.Path(path_type=Path, file_okay=False),
    help="A llama.cpp checkout to describe instead of the pinned tree.",
)
@json_option
@click.pass_context
def status_cmd(ctx: click.Context, source_path: Path | None, as_json: bool) -> None:
    """Say which llama.cpp tree is there: version, commit, path, verified or not.

    Exit code 0 when the tree is verified (or a user checkout), 1 when it is missing or
    differs from the pin.
    """
    from builddoctor import source
    from builddoctor.render import source as source_view

    out = console(ctx)
    st = source.status(source_path)
    if as_json:
        out.json(st)
    else:
        source_view.status(st, out)
    if st.state in ("missing", "modified"):
        ctx.exit(errors.PROBLEMS)


COMMANDS = [source_group]
