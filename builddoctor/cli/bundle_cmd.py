"""`builddoctor which` and `builddoctor run`: the llama.cpp bundled in the installed package."""

from __future__ import annotations

import click

from builddoctor.cli import console
from builddoctor.cli.options import json_option


def _describe() -> dict:
    from builddoctor import bundled
    from builddoctor.run_settings import installed_settings

    folder = bundled.bundled_dir()
    if folder is None:
        raise bundled.NotBundledError(
            "this builddoctor has no bundled llama.cpp: it was installed without the binaries "
            "(BUILDDOCTOR_BINARY=skip, or a pure-Python wheel). `pip install .` from a checkout (or "
            "`pip install --force-reinstall --no-binary builddoctor builddoctor`) compiles one for this machine; "
            "`builddoctor build` builds one outside the package."
        )
    plan = bundled.plan()
    info = bundled.info()
    return {
        "schema_version": 1,
        "dir": str(folder),
        "binaries": {name: str(path) for name, path in bundled.binaries().items()},
        "libraries": [p.name for p in bundled.libraries()],
        "info": info.to_dict() if info else None,
        "plan": plan.to_dict() if plan else None,
        "tuned": installed_settings(),
    }


@click.command("which")
@json_option
@click.pass_context
def which_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show the llama.cpp bundled with builddoctor: its binaries and the plan it was built with.

    Exit code 14 when this builddoctor was installed without binaries.
    """
    from builddoctor import bundled
    from builddoctor.render import bundle as bundle_view
    from builddoctor.run_settings import installed_settings

    out = console(ctx)
    try:
        data = _describe()
    except bundled.NotBundledError:
        tuned = installed_settings()  # `tune`'s build is shown even where no llama.cpp is bundled
        if tuned is not None and not as_json:
            bundle_view.tuned(tuned, out)
        raise
    if as_json:
        out.json(data)
    else:
        bundle_view.which(data, out)


@click.command(
    "run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False, "help_option_names": []}
)
@click.argument("tool")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(ctx: click.Context, tool: str, args: tuple[str, ...]) -> None:
    """Run a bundled llama.cpp tool: TOOL is llama-server, llama-cli, llama-bench or llama-quantize
    (or server, cli, bench, quantize); ARGS go to it unchanged (`--help` included).

    The tool replaces builddoctor (same process, same environment): no time limit, its exit code.
    After `builddoctor tune`, llama-cli and llama-server are the tuned build's, started with the
    measured settings (`builddoctor which` shows them) except those ARGS set themselves.
    """
    from builddoctor import bundled, run_settings

    if tool in ("-h", "--help"):  # `run TOOL --help` is the tool's help, `run --help` is this one
        click.echo(ctx.get_help())
        return
    tuned = run_settings.tuned_argv(tool, list(args))  # `tune`'s winner with its settings, the user's args win
    if tuned is not None:
        bundled.exec_argv(tuned)
    bundled.exec_tool(tool, list(args))


COMMANDS = [which_cmd, run_cmd]
