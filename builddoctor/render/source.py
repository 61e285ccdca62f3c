"""The source view: which llama.cpp tree ``builddoctor source status`` found, and how it differs."""

from __future__ import annotations

from builddoctor.console import Console
from builddoctor.source import SourceStatus

_SEVERITY = {"verified": "ok", "unverified": "info", "modified": "warning", "missing": "error"}
#: files named per kind of change (changed, added, removed)
MAX_CHANGES = 10


def status(st: SourceStatus, out: Console) -> None:
    out.echo(f"{out.symbol(_SEVERITY[st.state])} llama.cpp source: {st.state}")
    out.echo(f"    path:    {st.path}")
    if st.version or st.commit:
        out.echo(f"    version: {st.version or '?'}  commit: {st.commit or '?'}")
    if st.pin is not None and st.kind == "pinned":
        out.echo(f"    pin:     {st.pin.package} {st.pin.version} (llama.cpp {st.pin.short_commit}, {st.pin.date})")
    out.echo(f"    {st.message}")
    for label, items in (("changed", st.changed), ("added", st.added), ("removed", st.removed)):
        for item in items[:MAX_CHANGES]:
            out.echo(f"      {label}: {item}")
