"""The flags view: what ``builddoctor flags`` found in a cmake command line."""

from __future__ import annotations

from builddoctor.console import Console
from builddoctor.profiles import Finding


def report(findings: list[Finding], out: Console) -> None:
    """Each finding with its code, the option's words and the fix; one ok line when there is none."""
    if not findings:
        out.echo(f"{out.symbol('ok')} No problems found in these options.")
    for f in findings:
        out.echo(f"{out.symbol(f.severity)} {f.code} {f.title}")
        if f.evidence:
            out.echo(f"    {f.evidence}")
        if f.fix:
            out.echo(f"    fix: {f.fix}")
