"""`builddoctor fix | rollback`: rebuild a build right and install it, and undo a replace."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.build_cmd import plan_for, plan_options, read_plan_file, source_tree
from builddoctor.cli.options import describes_this_cpu, json_option, load_machine, machine_options
from builddoctor.render.progress import ProgressView


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
    from builddoctor.render import fix as fix_view

    out = console(ctx)
    _refuse_fix(rebuild, replace and not yes and not dry_run)
    machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    saved = read_plan_file(plan_path)  # a file that is no plan is refused before any fetch
    source, note = source_tree(source_path, dry_run)
    host = describes_this_cpu(profile_path, cpuinfo_path)
    plan = plan_for(saved, machine, goal, backend, source, host, allowed_paths, recheck=not dry_run) if saved else None
    say = (lambda m: None) if as_json else (lambda m: out.echo(("would " if dry_run else "") + m))
    if note:
        say(f"fetch: {note}")
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
        confirm=_confirmer(yes),
        progress=ProgressView(enabled=not as_json and not out.quiet),
        allowed_paths=allowed_paths,
    )
    if as_json:
        out.json(rep)
    else:
        fix_view.fixed(rep, out)


def _refuse_fix(rebuild: bool, will_ask: bool) -> None:
    """Refusals before step 1: no --rebuild, or a --replace question with no terminal to ask on (it
    would come after building and benchmarking, minutes later)."""
    if not rebuild:
        raise errors.InputError(
            "`builddoctor fix` needs --rebuild (the one fix it makes: rebuilding llama.cpp "
            "for this machine). Add --dry-run to see the steps first."
        )
    if will_ask and not sys.stdin.isatty():
        raise errors.InputError(
            "--replace asks before writing over files, and there is no terminal to ask on; "
            "add --yes to run it unattended. Nothing was built or changed."
        )


def _confirmer(yes: bool):
    """The question ``fix`` asks before writing over files: yes with --yes, else asked on the terminal."""

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise errors.InputError("--replace asks before writing over files; add --yes to run it unattended.")
        return click.confirm(question, default=False)

    return confirm


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
    from builddoctor.render import fix as fix_view

    out = console(ctx)
    got = install.rollback(force=force)
    if as_json:
        out.json(got)
    else:
        fix_view.rolled_back(got, out)


COMMANDS = [fix_cmd, rollback_cmd]
