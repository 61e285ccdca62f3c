"""The ``builddoctor`` command group: parse, call one stage function, render.

Each sub-command lives in its own module beside this one. Errors a user can act on
(``UserError``) end as one paragraph on stderr and their own exit code; nothing else
should escape, and if it does it ends as an internal error (exit 70), with the
traceback only under ``-v``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

import click

from builddoctor import __version__, errors
from builddoctor.cli import commands
from builddoctor.cli.options import verbosity_levels
from builddoctor.console import Console, safe_text


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except errors.UserError as exc:
            _fail(exc.message + (f"\n{exc.hint}" if exc.hint else ""), exc.exit_code)
        except KeyboardInterrupt as exc:
            name = getattr(exc, "signame", "SIGINT")
            _fail(
                f"Interrupted ({name}); every program builddoctor started was stopped and its temporary files removed.",
                errors.INTERRUPTED,
            )
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # the reader went away (`builddoctor check | head`): stop quietly, as cat does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(errors.OK)
        except OSError as exc:
            mapped = errors.from_os_error(exc)
            if mapped is None:
                _internal(ctx)
            _fail(mapped.message, mapped.exit_code)
        except Exception:  # noqa: BLE001 - last line of defence, reported as a bug
            _internal(ctx)


def _fail(message: str, code: int) -> NoReturn:
    message = safe_text(message)  # it may quote a file's or a program's text
    click.echo(
        click.style("error: ", fg="red", bold=True) + message if sys.stderr.isatty() else "error: " + message, err=True
    )
    sys.exit(code)


def _internal(ctx: click.Context) -> NoReturn:
    verbose = (ctx.obj or {}).get("verbose", 0) if isinstance(ctx.obj, dict) else 0
    if verbose:
        traceback.print_exc()
    exc = sys.exc_info()[1]
    _fail(
        f"internal error in builddoctor ({type(exc).__name__}: {exc}). This is a bug; "
        "run again with -v for the traceback and report it.",
        errors.INTERNAL,
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="builddoctor")
@click.option("-v", "--verbose", count=True, help="Say more (repeat for more); -v and -q cancel out, as in pip.")
@click.option(
    "-q",
    "--quiet",
    count=True,
    help="Say less: -q prints no report text or progress (--json output and errors stay), -qq no status lines either.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Find out why llama.cpp is slow on this machine, and fix the build."""
    verbose, quiet = verbosity_levels(verbose, quiet)
    ctx.obj = {"verbose": verbose, "quiet": quiet, "console": Console(verbose=verbose, quiet=quiet)}


def console(ctx: click.Context) -> Console:
    return ctx.find_root().obj["console"]


def _register() -> None:
    for command in commands.all_commands():
        cli.add_command(command)


def _streams() -> None:
    """Make the standard streams safe to write: a closed one is refused or sent to /dev/null, and an
    ASCII (or Latin-1...) terminal gets '?' for a character it cannot show instead of a crash."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - the stream for the whole run
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - the stream for the whole run
        if sys.argv[1:2] not in (["run"], ["-h"], ["--help"], ["-V"], ["--version"]):
            _fail(
                "standard output is closed (`>&-`), so there is nowhere to write the result. Redirect it to a "
                "file or to /dev/null instead.",
                errors.USAGE,
            )
    for stream in (sys.stdout, sys.stderr):
        enc = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if not enc.startswith("utf") and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def main() -> None:
    _streams()
    from builddoctor import proc  # here: `import builddoctor.cli` (CliRunner tests, tools) stays without it, ~13 ms

    # one way for every command: the first SIGINT/SIGTERM/SIGHUP stops all descendants and
    # unwinds (temp folders go), exit 6; nothing builddoctor started outlives it
    proc.install_signal_handlers(errors.INTERRUPTED)
    _register()
    try:
        cli(prog_name="builddoctor")
    finally:
        proc.kill_leftovers()
