"""The helpers that several areas' rules and ok lines share (the x86 level, the CPU files, the
known-bad rows, variant scores)."""

from __future__ import annotations

from pathlib import Path

from builddoctor import known_bad
from builddoctor.findings.areas import Context
from builddoctor.findings.catalogue import catalogue
from builddoctor.inspect.data import load
from builddoctor.inspect.isa import level_of
from builddoctor.platforms import canonical_arch
from builddoctor.probe.cpu import variants_for
from builddoctor.profiles import BinaryFile, BuildProfile, MachineProfile

# --------------------------------------------------------------------------- helpers


def gpu_runtime_prefixes() -> tuple[str, ...]:
    """Names of the GPU toolkits' runtime libraries (checks.toml [gpu_runtime]): a GPU backend that
    misses one is the GPU line's error (BD112), not the load line's."""
    return tuple(catalogue()["gpu_runtime"]["prefixes"])


def _level_of(features: list[str] | set[str]) -> str:
    """The x86 level of ``features`` (inspect.isa.level_of, data/inspect_isa.toml [levels]: the one reading)."""
    return level_of(features) or load("inspect_isa.toml")["levels"]["default_x86"]


def links_openmp(files: list[BinaryFile]) -> bool:
    """Whether any of the files links an OpenMP runtime (libgomp, libomp, MSVC's VCOMP140.DLL...):
    the names of inspect_backends.toml's [openmp] table, compared case-insensitively (Windows)."""
    prefixes = tuple(p.lower() for p in load("inspect_backends.toml")["openmp"]["needed"])
    return any(lib.lower().startswith(prefixes) for f in files for lib in f.needed)


def _is_x86(machine: MachineProfile) -> bool:
    return canonical_arch(machine.cpu.arch) in ("x86_64", "i386")


def _cpu_files(build: BuildProfile) -> list[BinaryFile]:
    """Files that carry the CPU backend (libggml-cpu*, or everything for static builds)."""
    cpu = [f for f in build.files if "CPU" in f.backends]
    return cpu or [f for f in build.files if f.format]


def _name(path: str) -> str:
    return Path(path).name


def closed_features(features, machine: MachineProfile) -> set[str]:
    """Features plus what they imply: VEX-encoded code (AVX) subsumes SSE4, AVX-512 code was
    compiled with AVX2/FMA/F16C on, and so on (the [isa.implies] table)."""
    implies = catalogue()["isa"].get("implies", {})
    out = set(features)
    todo = list(out)
    while todo:
        for extra in implies.get(todo.pop(), []):
            if extra not in out:
                out.add(extra)
                todo.append(extra)
    return out


def _comparable(machine: MachineProfile) -> set[str]:
    """ISA features a build's code can be checked against on this machine's architecture."""
    return set(catalogue()["isa"].get("comparable_" + ("x86" if _is_x86(machine) else machine.cpu.arch), []))


def _variant_rank(features: set[str], machine: MachineProfile) -> tuple[str | None, int]:
    """The best llama.cpp CPU variant whose requirements ``features`` meet, with its score
    (probe.cpu.variants_for: the one scorer, which leaves out the tags a variant only builds with)."""
    ranked = variants_for(features, machine.os, machine.cpu.arch)
    return ranked[-1] if ranked else (None, 0)


def _speedup(have: str, best: str, ctx: Context) -> str:
    table = ctx.catalogue.get("speedups", {})
    return table.get(f"{have}->{best}", table.get("default", "slower than this CPU allows"))


def _same_arch(a: str, b: str) -> bool:
    return canonical_arch(a) == canonical_arch(b)


def _known_bad(build: BuildProfile, machine: MachineProfile, signal: str | None = None):
    """The known-bad rows that this build's code and this CPU meet (and, with ``signal``, whose
    symptom it is), for this build's llama.cpp version."""
    code = closed_features(build.isa, machine) if build.isa else set()
    return known_bad.explaining(code, machine.cpu.features, build.version, build.build_number, signal)


def _no_flags(features, ctx: Context) -> str:
    table = ctx.catalogue.get("no_flags", {})
    return " ".join(table[f] for f in features if f in table)
