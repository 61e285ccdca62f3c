"""Turns builds and a machine into findings, following the catalogue in checks.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builddoctor import errors
from builddoctor.findings import platform_gate
from builddoctor.findings.areas import VALIDATORS
from builddoctor.findings.catalogue import CATALOGUE, SEVERITIES
from builddoctor.findings.catalogue import catalogue as _catalogue
from builddoctor.findings.rules import RULES, Context
from builddoctor.inspect import inspect_paths
from builddoctor.profiles import BuildProfile, BuildReport, Diagnosis, Finding, MachineProfile
from builddoctor.source import load_pin

COMPUTE_TIMEOUT_FACTOR = 6  # the compute probe's time limit, in --timeout units (5 s -> 30 s)


def catalogue() -> dict[str, Any]:
    """checks.toml, each check naming a known rule and each area a validator (else a bug: exit 70)."""
    data = _catalogue()
    for check in data["check"]:
        if check["rule"] not in RULES:
            raise errors.UserError(
                f"{CATALOGUE}: check {check['code']} names an unknown rule '{check['rule']}'", exit_code=errors.INTERNAL
            )
    if set(data["areas"]) != set(VALIDATORS):
        raise errors.UserError(
            f"{CATALOGUE}: areas {sorted(data['areas'])} and validators {sorted(VALIDATORS)} differ",
            exit_code=errors.INTERNAL,
        )
    return data


def _context(
    machine: MachineProfile, run_timeout: float, source: Path | None, here: bool = True, host: bool | None = None
) -> Context:
    pin = load_pin()
    return Context(
        catalogue=catalogue(),
        live=here,
        pin_short_commit=pin.short_commit,
        pin_version=pin.llama_version,
        source=source,
        extra={"timeout": run_timeout, "host": here if host is None else host},
    )


def findings_for(build: BuildProfile, machine: MachineProfile, ctx: Context | None = None) -> list[Finding]:
    """Every area's validator on one build: problems first, then one ok line per clean area."""
    ctx = ctx or _context(machine, 5.0, None)
    cat = ctx.catalogue
    checks = cat["check"]
    readable = build.is_llama_cpp and any(f.format for f in build.files)
    if not readable:
        checks = [c for c in checks if c["rule"] in ("not_llama_cpp", "unreadable")]
    gate = platform_gate.assess(build, machine)
    foreign = gate.foreign_build
    if foreign:  # built for another OS or CPU: no verdict about loading or running it here
        checks = [c for c in checks if not platform_gate.gated(c, cat)]
    # some files for another platform: loading, CPU code, GPU and running are judged on the others
    view = platform_gate.runnable_view(build, gate)
    gated_areas = cat.get("platform_gate", {}).get("areas", [])
    found: list[Finding] = []
    for area in cat["areas"]:
        found += VALIDATORS[area].validate(
            build,
            view,
            machine,
            ctx,
            [c for c in checks if c["area"] == area],
            lambda c: platform_gate.gated(c, cat),
            ok_line=readable and not (foreign and area in gated_areas),
        )
    order = {s: i for i, s in enumerate(SEVERITIES)}
    area_order = {a: i for i, a in enumerate(cat["areas"])}
    found.sort(key=lambda f: (order.get(f.severity, 9), area_order.get(f.area, 99)))
    return found


def diagnose(
    machine: MachineProfile,
    paths_: list[Path] | None = None,
    *,
    run: bool = True,
    timeout: float = 5.0,
    source: Path | None = None,
    here: bool = True,
    host: bool | None = None,
) -> Diagnosis:
    """Find (or take) builds, inspect them, and check each against ``machine``.

    ``here``: the machine is this one (not a profile from a file), so missing libraries
    can be judged by looking them up on this system. ``host``: its CPU is this one's (default:
    ``here``), so builddoctor's own plan for it, which builds are compared with, is -march=native.
    """
    if paths_:
        missing = [p for p in paths_ if not p.exists() and not p.is_symlink()]
        if missing and len(missing) == len(paths_):
            raise errors.InputError(f"no such file or folder: {', '.join(str(p) for p in missing)}.")
    # the compute probe (a real inference) may take longer than --version: six times the limit
    builds, messages = inspect_paths(
        list(paths_) if paths_ else None,
        run=run,
        timeout=timeout,
        compute_timeout=COMPUTE_TIMEOUT_FACTOR * timeout,
        prefer_arch=machine.arch or machine.cpu.arch,
        may_run=lambda b: platform_gate.may_run(b, machine),
    )
    ctx = _context(machine, timeout, source, here, host)
    reports = [BuildReport(build=b, findings=findings_for(b, machine, ctx)) for b in builds]
    return Diagnosis(machine=machine, builds=reports, messages=list(messages))
