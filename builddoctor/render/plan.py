"""The plan view: a BuildPlan as ``builddoctor recipe`` prints it, each option with its reason, then the
commands ``build`` runs for it."""

from __future__ import annotations

from pathlib import Path

from builddoctor.build import KEY_PLACEHOLDER, DryRun
from builddoctor.console import Console
from builddoctor.profiles import BuildPlan, Prerequisite
from builddoctor.resolve import shell_line


def report(plan: BuildPlan, dry: DryRun, con: Console, *, keyed: bool, saved_to: Path | None) -> None:
    """``dry``: the commands of the plan; ``keyed``: its build folder is the cache's <key> one."""
    _header(plan, con)
    _options(plan, con)
    _prerequisites(plan, con)
    _section(con, "Not chosen", [f"  {con.symbol('info')} {s.what}: {s.reason}" for s in plan.skipped])
    _section(con, "Notes", [f"  {con.symbol('warning')} {n}" for n in plan.notes])
    _commands(plan, dry, con, keyed)
    if not plan.ready:
        con.echo()
        con.echo(con.symbol("error") + " Install the missing prerequisites above before building.")
    if saved_to is not None:
        con.echo(con.style(f"plan saved to {saved_to}", "dim"))


def _section(con: Console, title: str, lines: list[str]) -> None:
    """A titled block after a blank line; nothing at all when it has no lines."""
    if not lines:
        return
    con.echo()
    con.echo(con.style(title, bold=True))
    for line in lines:
        con.echo(line)


def _header(plan: BuildPlan, con: Console) -> None:
    m = plan.machine
    where = (
        f"{m.cpu.model or m.cpu.arch} ({m.cpu.microarch or m.cpu.variant or m.arch}), {m.os_version or m.os}"
        if m
        else "?"
    )
    backend = plan.backend.upper() if plan.backend != "cpu" else "CPU"
    con.echo(con.style(f"Plan: {plan.goal} build, {backend} backend", bold=True) + f"  for {where}")
    con.echo(con.style(f"recipes: {', '.join(plan.recipes)}", "dim"))


def _options(plan: BuildPlan, con: Console) -> None:
    con.echo()
    con.echo(con.style("Options", bold=True))
    width = max((len(f"{o.name}={o.value}") for o in plan.options), default=0)
    for o in plan.options:
        con.echo(f"  {f'{o.name}={o.value}':<{width}}  {con.style(o.reason, 'dim')}")


def prerequisite_line(p: Prerequisite) -> str:
    """One prerequisite after its symbol: name, version found, the bounds wanted, what is wrong."""
    bounds: list[str] = []
    if p.min_version:
        bounds.append(f">= {p.min_version}")
    if p.max_version:
        bounds.append(f"< {p.max_version}")
    want = f" (needs {', '.join(bounds)})" if bounds else ""
    have = f" {p.found_version}" if p.found_version else ""
    status = (
        ""
        if p.status == "found"
        else f": {p.status}" + ("" if p.required else " (optional: the build goes ahead without it)")
    )
    return f"{p.name}{have}{want}{status}"


def _prerequisites(plan: BuildPlan, con: Console) -> None:
    lines: list[str] = []
    for p in plan.prerequisites:
        sev = "ok" if p.status == "found" else ("error" if p.required else "warning")
        lines.append(f"  {con.symbol(sev)} {prerequisite_line(p)}")
        if p.status != "found":
            if p.reason:
                lines.append(f"      {p.reason}")
            lines += [f"      install ({key}): {cmd}" for key, cmd in p.install.items()]
    _section(con, "Prerequisites", lines)


def _commands(plan: BuildPlan, dry: DryRun, con: Console, keyed: bool) -> None:
    """The commands ``build`` runs (its one builder), with the plan's environment in front."""
    _section(con, "Configure and build", ["  " + shell_line(argv, plan.env) for argv in dry.commands])
    if keyed:
        con.echo(
            con.style(
                f"  ({KEY_PLACEHOLDER}: the cache key `builddoctor build` computes from the "
                "compilers and the source tree)",
                "dim",
            )
        )
