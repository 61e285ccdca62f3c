"""Turns builds and a machine into findings, following the catalogue in checks.toml."""

from __future__ import annotations

import functools
import string
from pathlib import Path
from typing import Any

from builddoctor import errors, paths
from builddoctor.findings import platform_gate
from builddoctor.findings.rules import RULES, Context, _cpu_files, _level_of, _name, links_openmp
from builddoctor.profiles import BuildProfile, BuildReport, Diagnosis, Finding, MachineProfile
from builddoctor.tomlload import load_toml

CATALOGUE = Path(__file__).with_name("checks.toml")
SEVERITIES = ("error", "warning", "info", "ok")
COMPUTE_TIMEOUT_FACTOR = 6  # the compute probe's time limit, in --timeout units (5 s -> 30 s)


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, Any]:
    data = load_toml(CATALOGUE)
    codes = set()
    for check in data["check"]:
        if check["rule"] not in RULES:
            raise errors.UserError(f"{CATALOGUE}: check {check['code']} names an unknown rule '{check['rule']}'",
                                   exit_code=errors.INTERNAL)
        if check["code"] in codes or check["severity"] not in SEVERITIES or check["area"] not in data["areas"]:
            raise errors.UserError(f"{CATALOGUE}: check {check['code']} is duplicated or malformed",
                                   exit_code=errors.INTERNAL)
        codes.add(check["code"])
    return data


@functools.lru_cache(maxsize=8)
def _variant_tables() -> dict[str, Any]:
    return load_toml(paths.DATA_DIR / "cpu_variants.toml")


def variant_table(machine: MachineProfile) -> tuple[dict[str, int], list[tuple[str, list[str]]]] | None:
    """llama.cpp's CPU variants for the machine's architecture and OS: (tag weights, [(name, tags)])."""
    for table in _variant_tables().values():
        if not isinstance(table, dict) or "variants" not in table:
            continue
        if machine.cpu.arch in table.get("arch", []) and (machine.os in table.get("os", []) or not table.get("os")):
            return table.get("weights", {}), [(v[0], list(v[1:])) for v in table["variants"]]
    return None


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _fill(template: str, values: dict[str, Any]) -> str:
    try:
        return string.Formatter().vformat(template, (), _Values(values))
    except (ValueError, IndexError, KeyError):
        return template


def _context(machine: MachineProfile, run_timeout: float, source: Path | None, here: bool = True,
             host: bool | None = None) -> Context:
    from builddoctor.source import load_pin

    pin = load_pin()
    return Context(catalogue=catalogue(), live=here, pin_short_commit=pin.short_commit,
                   pin_version=pin.llama_version, source=source,
                   extra={"timeout": run_timeout, "host": here if host is None else host})


def findings_for(build: BuildProfile, machine: MachineProfile, ctx: Context | None = None) -> list[Finding]:
    """Every check of the catalogue on one build: problems first, then one ok line per clean area."""
    ctx = ctx or _context(machine, 5.0, None)
    cat = ctx.catalogue
    found: list[Finding] = []
    checks = cat["check"]
    if not build.is_llama_cpp or not any(f.format for f in build.files):
        checks = [c for c in checks if c["rule"] in ("not_llama_cpp", "unreadable")]
    gate = platform_gate.assess(build, machine)
    foreign = gate.foreign_build
    if foreign:  # built for another OS or CPU: no verdict about loading or running it here
        checks = [c for c in checks if not platform_gate.gated(c, cat)]
    # some files for another platform: loading, CPU code, GPU and running are judged on the others
    view = platform_gate.runnable_view(build, gate)
    for check in checks:
        try:
            evidence = RULES[check["rule"]](view if platform_gate.gated(check, cat) else build, machine, ctx)
        except Exception as exc:  # noqa: BLE001 - a rule that fails on odd input costs one line, not the report
            found.append(_broken_check(check, exc))
            continue
        if evidence is None:
            continue
        for ev in evidence if isinstance(evidence, list) else [evidence]:
            values = {"root": build.root, **ev}
            found.append(Finding(
                code=ev.get("_code", check["code"]),
                severity=ev.get("_severity", check["severity"]),
                title=_fill(check["title"], values),
                evidence=_fill(check.get("evidence", ""), values),
                fix=_fill(check.get("fix", ""), values),
                speedup=_fill(check.get("speedup", ""), values),
                area=check["area"],
            ))
    if build.is_llama_cpp and any(f.format for f in build.files):
        dirty = {f.area for f in found if f.severity in ("error", "warning")}
        try:
            summary = _summary(view, machine, ctx)
        except Exception as exc:  # noqa: BLE001 - as for a rule: one line, the findings stay
            found.append(_broken_check({"code": "ok", "rule": "the summary lines", "area": "build"}, exc))
            summary = {}
        for area, spec in cat["areas"].items():
            ok_values = summary.get(area)
            if area in dirty or ok_values is None:
                continue
            if foreign and area in cat.get("platform_gate", {}).get("areas", []):
                continue
            found.append(Finding(code=f"ok:{area}", severity="ok", title=_fill(spec["ok"], ok_values), area=area))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    area_order = {a: i for i, a in enumerate(cat["areas"])}
    found.sort(key=lambda f: (order.get(f.severity, 9), area_order.get(f.area, 99)))
    return found


def _broken_check(check: dict, exc: Exception) -> Finding:
    """The one line a check costs when it raises (flutter doctor's crashing validator): which check,
    what it raised, and that the rest of the report stands."""
    from builddoctor.console import safe_text

    what = safe_text(f"{type(exc).__name__}: {exc}")[:300]
    return Finding(code=f"internal:{check['code']}", severity="warning", area=check.get("area", "build"),
                   title=f"check {check['code']} ({check['rule']}) could not judge this build: {what}",
                   evidence="a bug in builddoctor on this input; every other check ran",
                   fix="report it with `builddoctor check --json` output attached")


def _summary(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, dict[str, Any] | None]:
    """Values for each area's ok line, or None where there is nothing to say."""
    out: dict[str, dict[str, Any] | None] = {}
    readable = [f for f in build.files if f.format]
    needs = sorted({lib for f in readable for lib in f.needed})
    glibc = [v for f in readable if (v := f.symbol_versions.get("GLIBC"))]
    if readable and ctx.live and not any(f.missing_needed for f in readable):
        # a library that is not here is the GPU line's error (or a load error): no ✓ beside it
        out["load"] = {"load_ok": _load_line(readable, needs, glibc, machine)}
    cpu_best = machine.cpu.variant or _level_of(machine.cpu.features).upper()
    if build.cpu_variants:
        out["cpu"] = {"cpu_code": f"CPU variants {', '.join(build.cpu_variants)}", "cpu_best": f"the loader picks {cpu_best}"}
    elif build.isa and "CPU" in build.backends:
        level = build.isa_level or _level_of(build.isa)
        out["cpu"] = {"cpu_code": f"{level.upper()} code ({', '.join(sorted(build.isa))})", "cpu_best": cpu_best}
    gpus = machine.usable_gpus()
    if not gpus:
        emulated = [g.name for g in machine.emulated_gpus()]
        extra = f" ({', '.join(emulated)} is CPU-emulated)" if emulated else ""
        out["gpu"] = {"gpu_ok": f"no GPU on this machine{extra}: the CPU backend is the right one"}
    else:
        gpu_backends = [b for b in build.backends if b not in ("CPU", "BLAS", "RPC")]
        archs = f" ({', '.join(build.cuda_archs)})" if build.cuda_archs else ""
        out["gpu"] = {"gpu_ok": f"{', '.join(gpu_backends) or 'GPU'} backend{archs} for {gpus[0].name}"}
    if build.build_type:
        files = _cpu_files(build)
        omp = links_openmp(files)
        out["build"] = {"build_type": build.build_type, "openmp_ok": ", with OpenMP" if omp else ""}
    if build.cmake_options:
        out["options"] = {"options_ok": f"{len(build.cmake_options)} options in {_name(build.cmake_cache or 'CMakeCache.txt')}, none deprecated or unknown"}
    numbered = build.build_number if build.build_number and build.build_number > 1 else None
    if build.version or build.commit or numbered:
        bits = [f"llama.cpp {build.version or (f'b{numbered}' if numbered else 'of unknown version')}"]
        if build.commit:
            bits.append(f"commit {build.commit}")
        if build.compiler:
            bits.append(f"built with {build.compiler}")
        out["version"] = {"version_ok": ", ".join(bits)}
    c = build.compute
    if build.runtime and all(r.returncode == 0 for r in build.runtime) and (c is None or c.ok):
        names = ", ".join(" ".join([_name(r.argv[0])] + r.argv[1:]) for r in build.runtime)
        devices = f"; devices: {', '.join(build.devices)}" if build.devices else ""
        text = f"{names} answered{devices}"
        if c is not None and c.kind == "inference":
            text = f"{_compute_line(c)}; {text}"
        out["runtime"] = {"runtime_ok": text}
    elif c is not None and c.ok:
        out["runtime"] = {"runtime_ok": _compute_line(c)}
    return out


def _load_line(readable, needs: list[str], glibc: list[str], machine: MachineProfile) -> str:
    """The load area's ok line, for a build all of whose linked libraries are here (one that is not
    is the GPU line's or the load area's error, and gets no ✓ beside it)."""
    from packaging.version import Version

    text = f"all {len(needs)} linked libraries found" if needs else "links no shared libraries"
    def key(v: str):
        try:
            return (1, Version(v))
        except ValueError:  # not a version, or digits too many for int(): a forged file
            return (0, Version("0"))

    if glibc:
        text += f"; needs glibc {max(glibc, key=key)} (this machine: {machine.libc_version or '?'})"
    return text


def _compute_line(c) -> str:
    """The ok line of a compute probe that ran: what ran where, and its tokens/s (information)."""
    if c.kind == "dlopen":
        return f"{_name(c.argv[0])} loads (dlopen in a child process, {c.seconds:.2f} s)"
    speeds = [f"{label} {v:.0f} t/s" for label, v in (("prompt", c.pp_tps), ("generation", c.tg_tps)) if v]
    on = f"{c.backend} on {c.device}" if c.backend and c.device else c.backend
    where = ", ".join(x for x in (on or "", f"{c.threads} threads" if c.threads else "") if x)
    return (f"a real inference ran ({_name(c.argv[0])} on the probe model{', ' + where if where else ''}"
            f"{': ' + ', '.join(speeds) if speeds else ''})")


def diagnose(machine: MachineProfile, paths_: list[Path] | None = None, *, run: bool = True, timeout: float = 5.0,
             source: Path | None = None, here: bool = True, host: bool | None = None) -> Diagnosis:
    """Find (or take) builds, inspect them, and check each against ``machine``.

    ``here``: the machine is this one (not a profile from a file), so missing libraries
    can be judged by looking them up on this system. ``host``: its CPU is this one's (default:
    ``here``), so builddoctor's own plan for it, which builds are compared with, is -march=native.
    """
    from builddoctor.inspect import inspect_paths

    if paths_:
        missing = [p for p in paths_ if not p.exists() and not p.is_symlink()]
        if missing and len(missing) == len(paths_):
            raise errors.InputError(f"no such file or folder: {', '.join(str(p) for p in missing)}.")
    # the compute probe (a real inference) may take longer than --version: six times the limit
    builds, messages = inspect_paths(list(paths_) if paths_ else None, run=run, timeout=timeout,
                                     compute_timeout=COMPUTE_TIMEOUT_FACTOR * timeout,
                                     prefer_arch=machine.arch or machine.cpu.arch,
                                     may_run=lambda b: platform_gate.may_run(b, machine))
    ctx = _context(machine, timeout, source, here, host)
    reports = [BuildReport(build=b, findings=findings_for(b, machine, ctx)) for b in builds]
    return Diagnosis(machine=machine, builds=reports, messages=list(messages))
