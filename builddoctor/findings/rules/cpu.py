"""The cpu area: the build's CPU code against this CPU (above it, below it, known-bad, variants)."""

from __future__ import annotations

import re
from typing import Any

from builddoctor import known_bad
from builddoctor.findings.areas import Context, rule, validator
from builddoctor.findings.rules.base import (
    _comparable,
    _cpu_files,
    _is_x86,
    _known_bad,
    _level_of,
    _name,
    _no_flags,
    _same_arch,
    _speedup,
    _variant_rank,
    closed_features,
)
from builddoctor.profiles import BinaryFile, BuildProfile, MachineProfile


@rule
def known_bad_code(build, machine, ctx):
    """CPU code that a known-bad row says crashes on this CPU with this llama.cpp, when no real
    inference was run (--no-run, a recorded machine)."""
    if "CPU" not in build.backends or build.compute is not None:
        return None  # a compute probe ran: it passed, or compute_crash names the row
    rows = _known_bad(build, machine)
    if not rows:
        return None
    r = rows[0]
    feats = sorted(set(r.code_any) & closed_features(build.isa, machine))
    return {
        "features": ", ".join(feats),
        "title_lower": r.title[0].lower() + r.title[1:],
        "file": _name(next((f.path for f in _cpu_files(build) if set(f.isa) & set(feats)), build.root)),
        "cpu_has": ", ".join(sorted(set(r.cpu_any) & set(machine.cpu.features))),
        "version": build.version or (f"b{build.build_number}" if build.build_number else "of unknown version"),
        "id": r.id,
        "sources": r.source_text,
        "avoid": ", ".join(r.avoid),
        "flags": _no_flags(r.avoid, ctx),
    }


@rule
def cpu_isa_above(build, machine, ctx):
    comparable = _comparable(machine)
    if not comparable:
        return None
    hits = []
    for f in _cpu_files(build):
        if f.arch and machine.cpu.arch and not _same_arch(f.arch, machine.cpu.arch):
            continue
        if build.cpu_variants and "CPU" in f.backends and _is_variant_file(f):
            continue  # the loader only picks variants this CPU can run
        extra = sorted((set(f.isa) & comparable) - set(machine.cpu.features))
        if extra:
            hits.append(
                {
                    "file": _name(f.path),
                    "extra": ", ".join(extra),
                    "cpu": machine.cpu.model or machine.cpu.arch,
                    "cpu_best": machine.cpu.variant or _level_of(machine.cpu.features),
                }
            )
    return hits[:1] or None


def _is_variant_file(f: BinaryFile) -> bool:
    return bool(re.match(r"(lib)?ggml-cpu-.+\.(so|dll|dylib)$", _name(f.path)))


def _below(build: BuildProfile, machine: MachineProfile) -> dict[str, Any] | None:
    """What the CPU code lacks that this CPU has and that would make it a better llama.cpp variant."""
    if build.cpu_variants or not (build.isa or build.isa_level) or "CPU" not in build.backends:
        return None  # (an isa_level with no isa: the CPU code was read and uses the baseline only)

    comparable = _comparable(machine)
    have = closed_features(build.isa, machine) & comparable
    # what a known-bad row keeps out of this llama.cpp's code on this CPU is not missing: it is avoided
    avoided = {f for r in known_bad.applying(machine.cpu.features, build.version, build.build_number) for f in r.avoid}
    cpu = (closed_features(machine.cpu.features, machine) - avoided) & comparable
    missing = sorted(cpu - have)
    if not comparable or have - cpu or not missing:
        return None  # nothing to compare, cpu_isa_above's case, or nothing missing
    have_variant, have_score = _variant_rank(have, machine)
    best_variant, best_score = _variant_rank(cpu, machine)
    if have_score >= best_score:
        return None  # what is missing does not change which llama.cpp variant this is
    x86 = _is_x86(machine)
    return {
        "have": _level_of(have) if x86 else (have_variant or "baseline"),
        "best": _level_of(cpu) if x86 else (best_variant or "?"),
        "have_variant": have_variant or "baseline",
        "best_variant": best_variant or "?",
        "missing": ", ".join(missing),
        "have_features": ", ".join(sorted(have)) or "no SIMD beyond the baseline",
        "file": _name(next((f.path for f in _cpu_files(build) if f.isa), build.root)),
    }


@rule
def cpu_isa_below(build, machine, ctx):
    ev = _below(build, machine)
    if ev is None or ev["have"] == ev["best"]:
        return None
    ev["speedup"] = _speedup(ev["have"], ev["best"], ctx)
    ev["have"], ev["best"] = ev["have"].upper(), ev["best"].upper()
    return ev


@rule
def cpu_extensions_unused(build, machine, ctx):
    ev = _below(build, machine)
    if ev is None or ev["have"] != ev["best"]:
        return None
    return ev


@rule
def cpu_variant_missing(build, machine, ctx):
    if not build.cpu_variants or not machine.cpu.variant:
        return None
    if machine.cpu.variant in build.cpu_variants:
        return None
    runnable = [v for v in machine.cpu.variants if v in build.cpu_variants]
    best_have = runnable[-1] if runnable else "none"
    return {"variants": ", ".join(build.cpu_variants), "best_have": best_have, "best": machine.cpu.variant}


# --------------------------------------------------------------------------- the ok line


@validator("cpu")
def cpu_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    cpu_best = machine.cpu.variant or _level_of(machine.cpu.features).upper()
    if build.cpu_variants:
        return {"cpu_code": f"CPU variants {', '.join(build.cpu_variants)}", "cpu_best": f"the loader picks {cpu_best}"}
    if build.isa and "CPU" in build.backends:
        level = build.isa_level or _level_of(build.isa)
        return {"cpu_code": f"{level.upper()} code ({', '.join(sorted(build.isa))})", "cpu_best": cpu_best}
    return None
