"""The diagnosis view: `check`'s report as `flutter doctor` words it, a line per check, a fix under each."""

from __future__ import annotations

from builddoctor.console import MAX_ITEMS, Console, bounded, listing
from builddoctor.profiles import BuildReport, Diagnosis, MachineProfile

_HEADER = {"ok": "ok", "info": "ok", "warning": "warning", "error": "error"}
#: entries shown of the longer lists of a text report (--json keeps up to console.MAX_JSON_ITEMS)
MAX_FINDINGS = 100
MAX_FEATURES = 200  # a real CPU has up to about 150 flags


def machine_line(m: MachineProfile) -> str:
    cpu = m.cpu
    bits = [cpu.model or cpu.arch]
    tags = [t for t in (cpu.microarch, f"variant {cpu.variant}" if cpu.variant else "") if t]
    if tags:
        bits[0] += f" ({', '.join(tags)})"
    if cpu.cores or cpu.threads:
        bits.append(f"{cpu.cores or '?'} cores / {cpu.threads or '?'} threads")
    if m.memory_bytes:
        bits.append(f"{m.memory_bytes / 2**30:.0f} GiB")
    bits.append(m.os_version or m.os)
    names = [g.name + (" (CPU-emulated)" if g.cpu_emulated else "") for g in m.gpus]
    bits.append("GPUs: " + (listing(names, MAX_ITEMS) if names else "none"))
    if m.source != "live":
        bits.append(f"profile from {m.source}")
    return "; ".join(bits)


def build_title(r: BuildReport) -> str:
    b = r.build
    name = b.name or "build"
    facts = []
    if b.version or b.commit:
        facts.append(" ".join(x for x in (f"llama.cpp {b.version}" if b.version else "llama.cpp", b.commit or "") if x))
    if b.backends:
        facts.append("+".join(b.backends))
    if b.build_type:
        facts.append(b.build_type)
    tail = f"  ({', '.join(facts)})" if facts else ""
    return f"{name} — {b.root}{tail}"


def report(d: Diagnosis, out: Console) -> None:
    out.echo(out.style("Machine: ", bold=True) + machine_line(d.machine))
    if d.machine.cpu.features:
        out.echo(out.style("    CPU features: ", "dim") + listing(d.machine.cpu.features, MAX_FEATURES))
    out.echo()
    if not d.builds:
        out.echo(
            f"{out.symbol('warning')} no llama.cpp build found. Give a path (builddoctor check PATH), or build one: "
            "builddoctor fix --rebuild"
        )
    for r in d.builds:
        sev = _HEADER[r.worst]
        out.echo(f"[{out.symbol(sev)}] " + out.style(build_title(r), bold=True))
        findings, more_findings = bounded(r.findings, MAX_FINDINGS)
        for f in findings:
            out.echo(f"    {out.symbol(f.severity)} {f.title}")
            if f.severity in ("error", "warning") or (f.severity == "info" and out.verbose):
                if f.evidence:
                    out.echo(out.style(f"        {f.evidence}", "dim"))
                if f.speedup:
                    out.echo(f"        expected gain: {f.speedup}")
                if f.fix:
                    out.echo(f"        fix: {f.fix}")
                if out.verbose and f.code:
                    out.echo(out.style(f"        [{f.code}]", "dim"))
                if out.verbose and f.trace:  # a check that did not complete: where it raised
                    for line in f.trace.rstrip().splitlines():
                        out.echo(out.style(f"        {line}", "dim"))
        if more_findings:
            out.echo(f"    {out.symbol('info')} ... and {more_findings:,} more findings")
        # what inspection could not read (a CMakeCache cut at the cap...) when no finding already says it
        shown = " ".join(f"{f.title} {f.evidence}" for f in r.findings)
        errors, more_errors = bounded(r.build.errors, MAX_ITEMS)
        for e in errors:
            if e not in shown:
                out.echo(f"    {out.symbol('warning')} {e}")
        if more_errors:
            out.echo(f"    {out.symbol('warning')} ... and {more_errors:,} more read errors")
        out.echo()
    if d.messages:
        out.echo(out.style("Skipped:", bold=True))
        messages, more_messages = bounded(d.messages, MAX_FINDINGS)
        for m in messages:
            out.echo(f"    {out.symbol('info')} {m}")
        if more_messages:
            out.echo(f"    {out.symbol('info')} ... and {more_messages:,} more")
        out.echo()
    out.echo(summary_line(d))


def summary_line(d: Diagnosis) -> str:
    n = len(d.builds)
    errors = sum(1 for r in d.builds for f in r.findings if f.severity == "error")
    warnings = sum(1 for r in d.builds for f in r.findings if f.severity == "warning")
    sick = sum(1 for r in d.builds if r.worst in ("error", "warning"))
    if n == 0:
        return "No build checked."
    if not sick:
        return f"{n} build{'s' if n != 1 else ''} checked: healthy."
    return (
        f"{n} build{'s' if n != 1 else ''} checked: {sick} with problems ({errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}). `builddoctor fix --rebuild PATH` builds a fixed one."
    )
