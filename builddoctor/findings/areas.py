"""One validator per report area (flutter doctor's DoctorValidator): it owns the checks of its area
(checks.toml's [[check]] tables with that `area`) and its ok line.

A validator runs its checks' rules, turns their hits into findings with the catalogue's words, and
when none of them is a problem says its ok line ([areas.NAME].ok, filled by its ``ok`` function).
A rule or an ok line that raises costs the area one "did not complete" line; the other areas and
the other checks of the area still report. Adding a check: one rule, one [[check]] table.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builddoctor.findings.catalogue import Hit, fill, render
from builddoctor.findings.rules import RULES
from builddoctor.findings.rules.base import Context, _cpu_files, _level_of, _name, links_openmp
from builddoctor.profiles import BuildProfile, Finding, MachineProfile
from builddoctor.versions import sort_key

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
    from builddoctor.console import safe_text

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


# --------------------------------------------------------------------------- the ok lines


@validator("load")
def load_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    """For a build all of whose linked libraries are here (one that is not is the GPU line's or
    the load area's error, and gets no ✓ beside it)."""
    readable = [f for f in build.files if f.format]
    if not readable or not ctx.live or any(f.missing_needed for f in readable):
        return None
    needs = sorted({lib for f in readable for lib in f.needed})
    glibc = [v for f in readable if (v := f.symbol_versions.get("GLIBC"))]
    text = f"all {len(needs)} linked libraries found" if needs else "links no shared libraries"
    if glibc:
        text += f"; needs glibc {max(glibc, key=sort_key)} (this machine: {machine.libc_version or '?'})"
    return {"load_ok": text}


@validator("cpu")
def cpu_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    cpu_best = machine.cpu.variant or _level_of(machine.cpu.features).upper()
    if build.cpu_variants:
        return {"cpu_code": f"CPU variants {', '.join(build.cpu_variants)}", "cpu_best": f"the loader picks {cpu_best}"}
    if build.isa and "CPU" in build.backends:
        level = build.isa_level or _level_of(build.isa)
        return {"cpu_code": f"{level.upper()} code ({', '.join(sorted(build.isa))})", "cpu_best": cpu_best}
    return None


@validator("gpu")
def gpu_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    gpus = machine.usable_gpus()
    if not gpus:
        emulated = [g.name for g in machine.emulated_gpus()]
        extra = f" ({', '.join(emulated)} is CPU-emulated)" if emulated else ""
        return {"gpu_ok": f"no GPU on this machine{extra}: the CPU backend is the right one"}
    gpu_backends = [b for b in build.backends if b not in ("CPU", "BLAS", "RPC")]
    archs = f" ({', '.join(build.cuda_archs)})" if build.cuda_archs else ""
    return {"gpu_ok": f"{', '.join(gpu_backends) or 'GPU'} backend{archs} for {gpus[0].name}"}


@validator("build")
def build_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    if not build.build_type:
        return None
    return {"build_type": build.build_type, "openmp_ok": ", with OpenMP" if links_openmp(_cpu_files(build)) else ""}


@validator("options")
def options_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    if not build.cmake_options:
        return None
    return {
        "options_ok": f"{len(build.cmake_options)} options in {_name(build.cmake_cache or 'CMakeCache.txt')}, "
        "none deprecated or unknown"
    }


@validator("version")
def version_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    numbered = build.build_number if build.build_number and build.build_number > 1 else None
    if not (build.version or build.commit or numbered):
        return None
    bits = [f"llama.cpp {build.version or (f'b{numbered}' if numbered else 'of unknown version')}"]
    if build.commit:
        bits.append(f"commit {build.commit}")
    if build.compiler:
        bits.append(f"built with {build.compiler}")
    return {"version_ok": ", ".join(bits)}


@validator("runtime")
def runtime_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    c = build.compute
    if build.runtime and all(r.returncode == 0 for r in build.runtime) and (c is None or c.ok):
        names = ", ".join(" ".join([_name(r.argv[0])] + r.argv[1:]) for r in build.runtime)
        devices = f"; devices: {', '.join(build.devices)}" if build.devices else ""
        text = f"{names} answered{devices}"
        if c is not None and c.kind == "inference":
            text = f"{_compute_line(c)}; {text}"
        return {"runtime_ok": text}
    if c is not None and c.ok:
        return {"runtime_ok": _compute_line(c)}
    return None


def _compute_line(c) -> str:
    """The ok line of a compute probe that ran: what ran where, and its tokens/s (information)."""
    if c.kind == "dlopen":
        return f"{_name(c.argv[0])} loads (dlopen in a child process, {c.seconds:.2f} s)"
    speeds = [f"{label} {v:.0f} t/s" for label, v in (("prompt", c.pp_tps), ("generation", c.tg_tps)) if v]
    on = f"{c.backend} on {c.device}" if c.backend and c.device else c.backend
    where = ", ".join(x for x in (on or "", f"{c.threads} threads" if c.threads else "") if x)
    return (
        f"a real inference ran ({_name(c.argv[0])} on the probe model{', ' + where if where else ''}"
        f"{': ' + ', '.join(speeds) if speeds else ''})"
    )
