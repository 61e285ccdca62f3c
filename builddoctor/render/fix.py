"""The install views: what ``fix`` ended with, and what ``rollback`` put back."""

from __future__ import annotations

from pathlib import Path

from builddoctor.console import Console
from builddoctor.fix import FixReport
from builddoctor.install import RollbackResult


def fixed(rep: FixReport, out: Console) -> None:
    """The outcome line of ``fix`` (its steps were said as they ran); a dry run ends with its steps."""
    if rep.outcome == "fixed":
        out.echo(f"{out.symbol('ok')} fixed: {rep.bin_dir}")
        if rep.backup:
            out.echo(f"    undo with: builddoctor rollback   (backup: {rep.backup})")
        else:
            out.echo(f"    run it as: {Path(rep.bin_dir) / 'llama-cli'}")
    elif rep.outcome == "healthy":
        out.echo(f"{out.symbol('ok')} nothing to fix")


def rolled_back(got: RollbackResult, out: Console) -> None:
    for said in got.recovered:  # a replace or rollback killed half-way, undone first
        out.echo(f"{out.symbol('warning')} {said}")
    out.echo(f"{out.symbol('ok')} restored {len(got.restored)} file(s) in {got.dest_dir} from {got.backup}:")
    for p in got.restored:
        out.echo(f"    {p}")
    if got.kept:
        out.echo(f"{out.symbol('warning')} kept {len(got.kept)} file(s) changed since the replace:")
        for k in got.kept:
            out.echo(f"    {k}")
