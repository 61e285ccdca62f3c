"""One validator per report area (flutter doctor's DoctorValidator): it owns the checks of its area
(checks.toml's [[check]] tables with that `area`) and its ok line.

A validator runs its checks' rules, turns their hits into findings with the catalogue's words, and
when none of them is a problem says its ok line ([areas.NAME].ok, filled by its ``ok`` function).
A rule or an ok line that raises costs the area one "did not complete" line; the other areas and
the other checks of the area still report. Each area's module in findings/rules/ registers its
rules (``@rule``) and its ok line (``@validator``); adding a check is one rule and one [[check]] table.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor.console import safe_text
from builddoctor.findings.catalogue import Hit, fill, render
from builddoctor.profiles import BuildProfile, Finding, MachineProfile

#: what a rule returns: nothing (passes, or does not apply), or its hits; a dict is a Hit's values
Evidence = Hit | dict[str, Any] | list[Hit] | list[dict[str, Any]] | None


@dataclass
class Context:
    """What every rule may need besides the build and the machine."""

    catalogue: dict[str, Any]
    live: bool  # the machine profile is this machine (libraries can be looked up here)
    pin_short_commit: str = ""
    pin_version: str = ""
    source: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: every rule a check may name, by function name (findings/rules/ and platform_gate register theirs)
RULES: dict[str, Callable[[BuildProfile, MachineProfile, Context], Evidence]] = {}


def rule(func):
    RULES[func.__name__] = func
    return func


OkLine = Callable[[BuildProfile, MachineProfile, Context], dict[str, Any] | None]


@dataclass(frozen=True)
class Validator:
    """An area of the report: its name (checks.toml's [areas] key) and the values of its ok line."""

    area: str
    ok: OkLine

    def validate(
        self,
        build: BuildProfile,
        view: BuildProfile,
        machine: MachineProfile,
        ctx: Context,
        checks: list[dict[str, Any]],
        gated: Callable[[dict[str, Any]], bool],
        ok_line: bool,
    ) -> list[Finding]:
        """The findings of this area's ``checks`` on ``build`` (``view``: its files that run here, for
        the ``gated`` checks), then its ok line when ``ok_line`` and nothing in the area is a problem."""
        found: list[Finding] = []
        broken: list[tuple[str, BaseException]] = []
        for rule, group in _by_rule(checks):
            try:
                found += [
                    render(_check_of(group, hit), hit, {"root": build.root})
                    for hit in _hits(RULES[rule](view if gated(group[0]) else build, machine, ctx))
                ]
            except Exception as exc:  # noqa: BLE001 - a rule that fails on odd input costs one line, not the report
                broken.append((f"{', '.join(c['code'] for c in group)} ({rule})", exc))
        if ok_line and not broken and not any(f.severity in ("error", "warning") for f in found):
            try:
                values = self.ok(view, machine, ctx)
                if values is not None:
                    found.append(
                        Finding(
                            code=f"ok:{self.area}",
                            severity="ok",
                            area=self.area,
                            title=fill(ctx.catalogue["areas"][self.area]["ok"], values),
                        )
                    )
            except Exception as exc:  # noqa: BLE001 - as for a rule: one line, the findings stay
                broken.append(("its ok line", exc))
        if broken:
            found.append(_incomplete(self.area, ctx.catalogue["areas"][self.area].get("label", self.area), broken))
        return found


def _by_rule(checks: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The checks grouped by the rule that fires them (one call of a rule serves all its codes)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        groups.setdefault(c["rule"], []).append(c)
    return list(groups.items())


def _hits(evidence: Any) -> list[Hit]:
    """A rule's answer as hits: None, a Hit, a dict (a Hit's values), or a list of them."""
    if evidence is None:
        return []
    items = evidence if isinstance(evidence, list) else [evidence]
    out = []
    for ev in items:
        if isinstance(ev, Hit):
            out.append(ev)
        elif isinstance(ev, dict):
            out.append(Hit(ev))
        else:
            raise TypeError(f"a rule returned {type(ev).__name__}, not a Hit or a dict of values")
    return out


def _check_of(group: list[dict[str, Any]], hit: Hit) -> dict[str, Any]:
    """The check a hit belongs to: the one its code names, or the rule's only check."""
    if not hit.code:
        if len(group) > 1:
            raise ValueError(f"rule {group[0]['rule']} serves {len(group)} codes: its hits must name one")
        return group[0]
    for c in group:
        if c["code"] == hit.code:
            return c
    raise ValueError(f"rule {group[0]['rule']} fired {hit.code}, which no check of this rule declares")


def _incomplete(area: str, label: str, broken: list[tuple[str, BaseException]]) -> Finding:
    """The one line an area costs when a check of it raises: which checks, what they raised (the
    traceback for -v), and that the rest of the report stands."""
    what = "; ".join(safe_text(f"{who}: {type(exc).__name__}: {exc}")[:300] for who, exc in broken)
    trace = "\n".join(
        safe_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))) for _who, exc in broken
    )
    return Finding(
        code=f"internal:{area}",
        severity="warning",
        area=area,
        title=f"the {label.lower()} check did not complete: {what}",
        evidence="a bug in builddoctor on this input; every other check ran",
        fix="report it with `builddoctor check -v --json` output attached",
        trace=trace,
    )


VALIDATORS: dict[str, Validator] = {}


def validator(area: str) -> Callable[[OkLine], OkLine]:
    """Register ``func`` as the ok line of ``area``."""

    def register(func: OkLine) -> OkLine:
        VALIDATORS[area] = Validator(area, func)
        return func

    return register
