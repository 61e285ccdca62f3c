"""The build views: ``build --dry-run``'s commands, and a finished build with its verification."""

from __future__ import annotations

from pathlib import Path

from builddoctor.build import KEY_PLACEHOLDER, DryRun, Verification
from builddoctor.console import Console
from builddoctor.profiles import BuildResult
from builddoctor.render.progress import fmt_time
from builddoctor.resolve import shell_line


def dry_run(dry: DryRun, source: Path, note: str, out: Console, *, as_json: bool) -> None:
    """What the build would run: a JSON document, or lines to paste into a shell."""
    if as_json:
        out.json(
            {
                "commands": dry.commands,
                "env": dry.env,
                "build_dir": dry.build_dir,
                "source": str(source),
                "notes": [note] if note else [],
            }
        )
        return
    for line in dry_run_lines(dry, note):
        out.echo(line)


def dry_run_lines(dry: DryRun, note: str) -> list[str]:
    """Comment lines, then each command as a line to paste into a POSIX shell: ``env -i`` with the
    exact environment the build would use, every word shell-quoted."""
    lines = ["# builddoctor build --dry-run: nothing was run or written."]
    if note:
        lines.append(f"# {note}.")
    lines.append(
        f"# {KEY_PLACEHOLDER}: the cache key, which hashes the compilers' --version output (not run in a dry run)."
    )
    lines += [shell_line(argv, dry.env, exact=True) for argv in dry.commands]
    return lines


def built(result: BuildResult, ver: Verification | None, out: Console) -> None:
    """A build that finished: where its programs are, its log, and what its verification here said
    (``ver`` None: the plan is for another machine's CPU, so nothing ran here)."""
    how = "cached, built before" if result.status == "cached" else f"built in {fmt_time(result.duration_s)}"
    out.echo(f"{out.symbol('ok')} {Path(result.build_dir) / 'bin'} ({how})")
    for b in result.binaries:
        out.echo(f"    {b}")
    out.echo(f"    log: {result.log_path}")
    if ver is None:
        out.echo(
            "    not run here: the plan is for another machine's CPU "
            "(`builddoctor check --profile FILE <bin>` reads the build against it)"
        )
    elif ver.ok:
        ran = next((f.title for f in ver.findings if f.code in ("ok:runtime", "BD113")), ver.message)
        out.echo(f"    verified: {ran}")
