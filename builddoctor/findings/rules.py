"""The facts that checks.toml's rules test, one small function each.

A rule takes (build, machine, ctx) and returns None when its check does not apply or
passes, or the evidence (a dict of template values, or a list of them when it fires
several times). What a finding says, how severe it is and how to fix it is in
checks.toml, not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor import versions
from builddoctor.cmake_bool import is_on, same_value  # CMake's reading of ON/OFF values, one definition
from builddoctor.findings.catalogue import Hit, catalogue
from builddoctor.platforms import canonical_arch
from builddoctor.profiles import BinaryFile, BuildProfile, GpuProfile, MachineProfile

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


RULES: dict[str, Callable[[BuildProfile, MachineProfile, Context], Evidence]] = {}


def rule(func):
    RULES[func.__name__] = func
    return func


# --------------------------------------------------------------------------- helpers


def gpu_runtime_prefixes() -> tuple[str, ...]:
    """Names of the GPU toolkits' runtime libraries (checks.toml [gpu_runtime]): a GPU backend that
    misses one is the GPU line's error (BD112), not the load line's."""
    return tuple(catalogue()["gpu_runtime"]["prefixes"])


def _level_of(features: list[str] | set[str]) -> str:
    """The x86 level of ``features`` (inspect.isa.level_of, data/inspect_isa.toml [levels]: the one reading)."""
    from builddoctor.inspect.data import load
    from builddoctor.inspect.isa import level_of

    return level_of(features) or load("inspect_isa.toml")["levels"]["default_x86"]


def links_openmp(files: list[BinaryFile]) -> bool:
    """Whether any of the files links an OpenMP runtime (libgomp, libomp, MSVC's VCOMP140.DLL...):
    the names of inspect_backends.toml's [openmp] table, compared case-insensitively (Windows)."""
    from builddoctor.inspect.data import load

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
    from builddoctor.probe.cpu import variants_for

    ranked = variants_for(features, machine.os, machine.cpu.arch)
    return ranked[-1] if ranked else (None, 0)


def _speedup(have: str, best: str, ctx: Context) -> str:
    table = ctx.catalogue.get("speedups", {})
    return table.get(f"{have}->{best}", table.get("default", "slower than this CPU allows"))


# --------------------------------------------------------------------------- identity


@rule
def not_llama_cpp(build, machine, ctx):
    if build.is_llama_cpp or not any(f.format for f in build.files):
        return None
    return {"why": "no llama or ggml code in it" if not build.errors else build.errors[0]}


@rule
def unreadable(build, machine, ctx):
    if any(f.format for f in build.files):
        return None
    why = build.errors[0] if build.errors else next((f.error for f in build.files if f.error), None)
    if not why:
        return None
    return {"path": build.root, "why": why}


# --------------------------------------------------------------------------- loads here


@rule
def missing_libraries(build, machine, ctx):
    if not ctx.live:
        return None
    hits = []
    for f in build.files:
        if any(b in f.backends for b in ("CUDA", "HIP", "Vulkan", "SYCL", "OpenCL", "MUSA")):
            libs = [lib for lib in f.missing_needed if not lib.startswith(gpu_runtime_prefixes())]
        else:
            libs = list(f.missing_needed)
        if libs:
            hits.append({"file": _name(f.path), "libs": ", ".join(libs)})
    return hits or None


def _too_new(files: list[BinaryFile], key: str, have: str | None) -> dict | None:
    have_v = versions.parse(have)
    if have_v is None:
        return None
    worst: tuple[Any, str | None, str] | None = None
    for f in files:
        need = f.symbol_versions.get(key)
        v = versions.parse(need)
        if v is None:
            continue
        if v > have_v and (worst is None or v > worst[0]):
            worst = (v, need, _name(f.path))
    if worst is None:
        return None
    return {"need": worst[1], "have": have, "file": worst[2]}


@rule
def glibc_too_old(build, machine, ctx):
    if machine.libc not in (None, "glibc"):
        return None
    return _too_new(build.files, "GLIBC", machine.libc_version)


@rule
def libstdcxx_too_old(build, machine, ctx):
    return _too_new(build.files, "GLIBCXX", machine.libstdcxx_version)


def _load_problems(build: BuildProfile, machine: MachineProfile) -> list[tuple[BinaryFile, list]]:
    """Each file's static load problems that glibc_too_old / libstdcxx_too_old do not already name."""
    out = []
    for f in build.files:
        probs = []
        for p in f.load_problems:
            prefix = p.need.rpartition("_")[0] if p.kind == "version" else ""
            have = {"GLIBC": machine.libc_version, "GLIBCXX": machine.libstdcxx_version}.get(prefix)
            if prefix in ("GLIBC", "GLIBCXX") and _too_new([f], prefix, have):
                continue  # BD171 / BD172 say it
            probs.append(p)
        if probs:
            out.append((f, probs))
    return out


def _dlopen_words(build: BuildProfile, path: str) -> str | None:
    """What the dlopen probe said about ``path``, when it ran on it and failed."""
    c = build.compute
    if c is not None and c.kind == "dlopen" and not c.ok and c.argv and c.argv[0] == path:
        return (c.error or c.problem or "").strip() or None
    return None


@rule
def unresolved_symbols(build, machine, ctx):
    """What ld.so would refuse, found from the libraries found here: a symbol version the library
    lacks (CXXABI_1.3.15 from an older libstdc++), or a symbol none of them defines. One line per
    build: the first file, with a count of the others."""
    if not ctx.live:
        return None
    hits = _load_problems(build, machine)
    if not hits:
        return None
    f, probs = hits[0]
    if (
        build.compute is not None
        and build.compute.kind == "dlopen"
        and build.compute.ok
        and build.compute.argv
        and build.compute.argv[0] == f.path
    ):
        return None  # it loaded: the dlopen probe has the final word
    p = probs[0]
    if p.kind == "version":
        what = f"needs {p.need}" + (f", this machine has up to {p.have}" if p.have else "") + f" ({p.lib})"
        detail = f"it references {p.need} symbols of {p.lib}, and the {p.lib} found here does not define that version"
        fix = (
            f"install a newer {p.lib} (the one from the compiler it was built with), or rebuild here with this "
            f"machine's compiler: builddoctor fix --rebuild {build.root}"
        )
    else:
        n = "symbol" if p.count == 1 else f"{p.count} symbols"
        what = f"undefined {n} {p.need}{', ...' if p.count > 5 else ''}"
        detail = (
            f"it needs {p.need}{', ...' if p.count > 5 else ''}, which none of the libraries it loads here "
            f"({p.lib} and theirs) defines: they are older or newer than the ones it was built against"
        )
        fix = (
            f"use the libraries it was built with (same package, same version), or rebuild here: "
            f"builddoctor fix --rebuild {build.root}"
        )
    others = len(probs) - 1 + sum(len(ps) for _f, ps in hits[1:])
    more = f"; {others} more such problem(s) in this build" if others else ""
    words = _dlopen_words(build, f.path)
    return {
        "file": _name(f.path),
        "what": what,
        "detail": detail,
        "more": more,
        "fix": fix,
        "dlopen": f" (dlopen in a child process agrees: {words})" if words else "",
    }


# --------------------------------------------------------------------------- runs here


def _argv(r) -> str:
    return " ".join([_name(r.argv[0])] + list(r.argv[1:])) if r.argv else "?"


def _lacking(build: BuildProfile, machine: MachineProfile) -> list[str]:
    """Instruction sets in the build's code that this CPU lacks (what a SIGILL points at)."""
    return sorted((set(build.isa) & _comparable(machine)) - set(machine.cpu.features))


@rule
def runtime_sigill(build, machine, ctx):
    for r in build.runtime:
        if r.signal == "SIGILL":
            return {"argv": _argv(r), "extra": ", ".join(_lacking(build, machine)) or "instructions"}
    return None


@rule
def runtime_hang(build, machine, ctx):
    for r in build.runtime:
        if r.timed_out:
            return {"argv": _argv(r), "timeout": float(ctx.extra.get("timeout", 5.0))}
    return None


@rule
def runtime_crash(build, machine, ctx):
    for r in build.runtime:
        if r.signal and r.signal != "SIGILL":
            return {"argv": _argv(r), "how": f"died with {r.signal}", "output": r.output.strip()[-300:]}
        if r.error:
            return {"argv": _argv(r), "how": f"could not start: {r.error}", "output": r.output.strip()[-300:]}
    return None


def _output_tail(text: str, n: int = 300) -> str:
    text = " ".join(text.strip().split())
    return ("..." + text[-n:]) if len(text) > n else (text or "(none)")


def _compute_what(c) -> str:
    if c.kind == "dlopen":
        return "dlopen in a child process"
    return f"the {c.threads}-thread inference of a 2-layer model, a few tokens"


def _known_bad(build: BuildProfile, machine: MachineProfile, signal: str | None = None):
    """The known-bad rows that this build's code and this CPU meet (and, with ``signal``, whose
    symptom it is), for this build's llama.cpp version."""
    from builddoctor import known_bad

    code = closed_features(build.isa, machine) if build.isa else set()
    return known_bad.explaining(code, machine.cpu.features, build.version, build.build_number, signal)


def _no_flags(features, ctx: Context) -> str:
    table = ctx.catalogue.get("no_flags", {})
    return " ".join(table[f] for f in features if f in table)


@rule
def compute_crash(build, machine, ctx):
    c = build.compute
    if c is None or c.kind != "inference" or not c.signal:
        return None
    ev = {
        "argv": _argv(c),
        "signal": c.signal,
        "seconds": c.seconds,
        "what": _compute_what(c),
        "output": _output_tail(c.output),
        "why": "",
    }
    rows = _known_bad(build, machine, c.signal)
    extra = _lacking(build, machine)
    if rows:
        r = rows[0]
        ev["cause"] = f"a known llama.cpp bug on this CPU: {r.short or r.title}"
        ev["why"] = (
            f"; the build's CPU code contains {', '.join(sorted(set(r.code_any) & set(build.isa)))}, and "
            f"{r.title[0].lower() + r.title[1:]} (known-bad row {r.id}: {r.source_text})"
        )
        ev["fix"] = (
            f"builddoctor fix --rebuild {build.root}   (builddoctor plans the CPU code without "
            f"{', '.join(r.avoid)} while this llama.cpp is affected; by hand: add {_no_flags(r.avoid, ctx)} "
            "to CMAKE_C_FLAGS and CMAKE_CXX_FLAGS, or configure with GGML_NATIVE=OFF and the ISA options)"
        )
    elif c.signal == "SIGILL" and extra:
        ev["cause"] = f"the CPU code uses {', '.join(extra)}, which this CPU lacks"
        ev["fix"] = f"rebuild for this CPU: builddoctor fix --rebuild {build.root}"
    else:
        gpu = [b for b in build.backends if b not in ("CPU", "BLAS", "RPC")]
        if gpu:
            ev["cause"] = (
                f"no static fact of this build explains it; it carries the {', '.join(gpu)} backend, "
                "which may die while it starts its device"
            )
            ev["fix"] = (
                f"run `{_argv(c)}` by hand, then with -ngl 0 to see whether the GPU backend is the cause; "
                f"rebuild: builddoctor fix --rebuild {build.root}"
            )
        else:
            ev["cause"] = "no static fact of this build explains it (a bug in this llama.cpp, or a damaged file)"
            ev["fix"] = f"run `{_argv(c)}` by hand to see where; rebuild: builddoctor fix --rebuild {build.root}"
    return ev


@rule
def compute_hang(build, machine, ctx):
    c = build.compute
    if c is None or c.kind != "inference" or not c.timed_out:
        return None
    return {"argv": _argv(c), "timeout": c.timeout_s, "what": _compute_what(c), "output": _output_tail(c.output)}


@rule
def compute_not_run(build, machine, ctx):
    """A GPU build checked where its GPU is not: what it was built for, instead of a CPU-fallback verdict."""
    c = build.compute
    if c is None or c.kind != "not-run":
        return None
    gpus = [g.name for g in machine.gpus if g.vendor == "nvidia"] if c.backend == "CUDA" else []
    archs = ", ".join(build.cuda_archs) if c.backend == "CUDA" else ""
    built_for = ", ".join(gpus) if gpus else (archs or f"a {c.backend} GPU")
    if gpus and archs:
        built_for += f" ({archs})"
    return {"backend": c.backend, "built_for": built_for, "why": c.problem}


@rule
def compute_failed(build, machine, ctx):
    c = build.compute
    if c is None or c.kind != "inference" or c.ok or c.signal or c.timed_out:
        return None
    how = f"could not start it: {c.error}" if c.error else (c.problem or "no result")
    return {"argv": _argv(c), "how": how, "what": _compute_what(c), "output": _output_tail(c.output)}


@rule
def dlopen_failed(build, machine, ctx):
    c = build.compute
    if c is None or c.kind != "dlopen" or c.ok:
        return None
    if ctx.live and any(f.path == (c.argv[0] if c.argv else "") and f.load_problems for f in build.files):
        return None  # unresolved_symbols (or glibc/libstdcxx_too_old) names the cause: one load line
    if c.timed_out:
        why = f"loading it did not finish in {c.timeout_s:g} s"
    elif c.signal:
        why = f"loading it killed the process with {c.signal}"
    else:
        why = c.error or c.problem or "dlopen failed"
    if "undefined symbol" in why:
        fix = (
            f"a library it was built against is older or newer than the one found here: reinstall the package "
            f"that provides it, or rebuild here: builddoctor fix --rebuild {build.root}"
        )
    else:
        fix = f"install what it needs, or rebuild here: builddoctor fix --rebuild {build.root}"
    path = c.argv[0] if c.argv else build.root
    return {"file": _name(path), "path": path, "why": why, "fix": fix}


# --------------------------------------------------------------------------- CPU code


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


def _same_arch(a: str, b: str) -> bool:
    return canonical_arch(a) == canonical_arch(b)


def _below(build: BuildProfile, machine: MachineProfile) -> dict[str, Any] | None:
    """What the CPU code lacks that this CPU has and that would make it a better llama.cpp variant."""
    if build.cpu_variants or not (build.isa or build.isa_level) or "CPU" not in build.backends:
        return None  # (an isa_level with no isa: the CPU code was read and uses the baseline only)
    from builddoctor import known_bad

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


# --------------------------------------------------------------------------- GPU backend


def _gpu_label(g: GpuProfile) -> str:
    mem = f", {g.memory_mib // 1024} GiB" if g.memory_mib else ""
    return f"{g.name}{mem}"


@rule
def no_gpu_backend(build, machine, ctx):
    if not build.is_llama_cpp:
        return None
    table = ctx.catalogue["gpu_backends"]
    for g in machine.usable_gpus():
        want = table.get(g.vendor)
        if not want:
            continue
        if not set(want["accept"]) & set(build.backends):
            return {
                "want": want["accept"][0],
                "gpu": _gpu_label(g),
                "backends": ", ".join(build.backends) or "none found",
                "cmake": want["cmake"],
            }
    return None


@rule
def gpu_backend_without_device(build, machine, ctx):
    table = ctx.catalogue["gpu_backends"]
    vendors = {g.vendor for g in machine.usable_gpus()}
    hits = []
    for vendor, want in table.items():
        backend = want["accept"][0]
        if backend not in build.backends or backend == "Vulkan":
            continue  # Vulkan serves several vendors: vulkan_without_device below
        if vendor not in vendors and not any(set(t["accept"]) & {backend} for v, t in table.items() if v in vendors):
            hits.append(
                {
                    "backend": backend,
                    "why": f"this machine has no {want['label']}",
                    "fix": "nothing to do if this build is meant for another machine; for this one a CPU build is "
                    "smaller and starts faster: builddoctor fix --rebuild " + build.root,
                }
            )
    hits += _vulkan_without_device(build, machine, table)
    return hits or None


def _vulkan_without_device(build: BuildProfile, machine: MachineProfile, table: dict) -> list[dict]:
    """Vulkan built in, but no GPU here that Vulkan drives: llvmpipe and other CPU-emulated devices
    are hidden by ggml (GGML_VK_VISIBLE_DEVICES shows them), so it falls back to the CPU."""
    if "Vulkan" not in build.backends:
        return []
    vendors = {v for v, t in table.items() if "Vulkan" in t["accept"]}
    if any(g.vendor in vendors for g in machine.usable_gpus()):
        return []
    emulated = [g.name for g in machine.emulated_gpus()]
    if emulated:
        why = (
            f"this machine's only Vulkan device is {', '.join(emulated)}, which is CPU-emulated "
            "(ggml hides it; on it, inference is far slower than the CPU backend)"
        )
    else:
        why = "this machine has no GPU that Vulkan can drive"
    return [
        {
            "backend": "Vulkan",
            "why": why,
            "fix": "nothing to do if this build is meant for another machine; for this one a CPU build is "
            "smaller and starts faster: builddoctor fix --rebuild " + build.root,
        }
    ]


def _runtime_major(lib: str, prefix: str) -> int | None:
    m = re.match(re.escape(prefix) + r"\.so\.(\d+)", lib) or re.match(
        re.escape(prefix.replace("lib", "")) + r"64_(\d+)", lib
    )
    return int(m.group(1)) if m else None


@rule
def cuda_driver_too_old(build, machine, ctx):
    nvidia = [g for g in machine.gpus if g.vendor == "nvidia" and g.cuda_version]
    if not nvidia or "CUDA" not in build.backends:
        return None
    driver = nvidia[0].cuda_version
    parsed = versions.parse(driver)
    if parsed is None:
        return None
    driver_major = parsed.major
    for f in build.files:
        for lib in f.needed:
            major = _runtime_major(lib, "libcudart")
            if major is not None and major > driver_major:
                return {
                    "runtime": str(major),
                    "driver": driver,
                    "driver_version": nvidia[0].driver_version or "?",
                    "file": _name(f.path),
                    "lib": lib,
                }
    return None


@rule
def gpu_runtime_missing(build, machine, ctx):
    if not ctx.live:
        return None
    install = ctx.catalogue["runtime_install"]
    for f in build.files:
        gpu = [b for b in f.backends if b not in ("CPU", "BLAS", "RPC")]
        libs = [lib for lib in f.missing_needed if lib.startswith(gpu_runtime_prefixes())]
        if build.compute is not None and build.compute.kind == "not-run":
            libs = [lib for lib in libs if not lib.startswith("libcuda.")]  # compute_not_run says it once
        if gpu and libs:
            backend = gpu[0]
            text = install.get(backend, "install the runtime libraries of the " + backend + " toolkit")
            if backend == "CUDA":
                text = _cuda_install(f, libs, ctx) or text
            return {"backend": backend, "libs": ", ".join(libs), "file": _name(f.path), "install": text}
    return None


def _cuda_install(f: BinaryFile, missing: list[str], ctx: Context) -> str | None:
    """The install advice for the CUDA version this file links (libcudart.so.13 -> the CUDA 13 wheels),
    or the driver's when only libcuda.so.1 is missing."""
    table = ctx.catalogue.get("runtime_install_cuda", {})
    if all(lib.startswith("libcuda.") for lib in missing):
        return table.get("driver")
    for lib in f.needed:
        for prefix in ("libcudart", "libcublas"):
            major = _runtime_major(lib, prefix)
            if major is not None:
                return table.get(str(major))
    return None


def _cc_digits(cc: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", cc or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _cuda_cover(archs: list[str], cc: tuple[int, int]) -> str:
    """'sass' when native code runs on cc, 'ptx' when only JIT from PTX can, '' when nothing."""
    sass = ptx = False
    for a in archs:
        m = re.match(r"(sm|compute)_(\d+)(\d)([af]?)$", a)
        if not m:
            continue
        kind, major, minor, suffix = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if kind == "sm" and major == cc[0] and (minor == cc[1] if suffix else minor <= cc[1]):
            sass = True
        if kind == "compute" and not suffix and (major, minor) <= cc:
            ptx = True
    return "sass" if sass else "ptx" if ptx else ""


def _nvidia_coverage(build: BuildProfile, machine: MachineProfile):
    """(gpu, compute capability digits, 'sass' | 'ptx' | '') for each NVIDIA GPU, when this is a CUDA build."""
    if "CUDA" not in build.backends or not build.cuda_archs:
        return
    for g in machine.usable_gpus():
        cc = _cc_digits(g.compute_capability or "")
        if g.vendor == "nvidia" and cc is not None:
            yield g, cc, _cuda_cover(build.cuda_archs, cc)


@rule
def cuda_arch_mismatch(build, machine, ctx):
    for g, cc, cover in _nvidia_coverage(build, machine):
        if not cover:
            return {
                "archs": ", ".join(build.cuda_archs),
                "gpu": g.name,
                "cc": g.compute_capability,
                "ccn": f"{cc[0]}{cc[1]}",
            }
    return None


@rule
def cuda_ptx_only(build, machine, ctx):
    for g, cc, cover in _nvidia_coverage(build, machine):
        if cover == "ptx":
            return {"archs": ", ".join(build.cuda_archs), "gpu": g.name, "ccn": f"{cc[0]}{cc[1]}"}
    return None


@rule
def fa_kernels_missing(build, machine, ctx):
    if "CUDA" in build.backends and build.flash_attn_kernels is False:
        return {}
    return None


# --------------------------------------------------------------------------- build type


@rule
def debug_build(build, machine, ctx):
    bt = build.build_type or ""
    if bt.lower() != "debug":
        return None
    if build.cmake_options.get("CMAKE_BUILD_TYPE", "").lower() == "debug":
        evidence = f"CMAKE_BUILD_TYPE=Debug in {build.cmake_cache}"
    else:
        evidence = "the code was compiled without optimisation (-O0)"
    return {"build_type": bt, "evidence": evidence}


@rule
def openmp_off(build, machine, ctx):
    if "CPU" not in build.backends:
        return None
    opt = build.cmake_options.get("GGML_OPENMP", "").upper()
    if is_on(opt):
        return None
    files = _cpu_files(build)
    if links_openmp(files):
        return None
    if not any(f.needed for f in files) and opt == "":
        return None  # static or unreadable: no evidence either way
    return {"evidence": f"GGML_OPENMP={opt}" if opt else "the CPU backend links no OpenMP runtime"}


# --------------------------------------------------------------------------- options


def _user_set(options: dict[str, str], source: Path | None) -> dict[str, str]:
    """The llama.cpp options a CMakeCache holds because the user asked for them.

    A cache records every option(), defaults included (GGML_RVV=ON sits in every x86 cache);
    only names llama.cpp no longer declares, and values that differ from a literal default,
    say what the user asked for.
    """
    from builddoctor.llama_options import known_options

    known = known_options(source)
    out = {}
    for name, value in options.items():
        if not name.startswith(("LLAMA_", "GGML_")):
            continue
        spec = known.options.get(name)
        default = (spec or {}).get("default")
        if (
            spec is None
            or name in known.deprecated
            or default is not None
            and "${" not in default
            and not same_value(value, default)
        ):
            out[name] = value
    return out


@rule
def cmake_options(build, machine, ctx):
    """The options the user set, judged as `builddoctor flags` judges a command line (BD401-BD409)."""
    if not build.cmake_options:
        return None
    from builddoctor.flagcheck import option_hits

    return option_hits(_user_set(build.cmake_options, ctx.source), machine, ctx.source, from_cache=True) or None


@rule
def plan_departure(build, machine, ctx):
    """Options the build set differently from builddoctor's own plan for this machine."""
    if not build.cmake_options or not build.is_llama_cpp:
        return None
    watched = set(ctx.catalogue["plan_watch"]["options"])
    goal = "portable" if same_value(build.cmake_options.get("GGML_CPU_ALL_VARIANTS", ""), "ON") else "native"
    plan = _plan(machine, goal, ctx)
    if plan is None:
        return None
    # with GGML_NATIVE=ON ggml ignores the instruction-set options (-march=native decides): a
    # difference there says nothing; GGML_NATIVE's own line says it
    isa = set(isa_options())
    ignored = isa if same_value(build.cmake_options.get("GGML_NATIVE", ""), "ON") else set()
    apart: list = []
    for opt in plan.options:
        if opt.name not in watched | isa or opt.name not in build.cmake_options or opt.name in ignored:
            continue
        value = build.cmake_options[opt.name]
        if not same_value(value, opt.value):
            apart.append((opt, value))
    # the instruction-set options that differ make one finding (one choice: which ISA), the rest one each
    groups = [[a] for a in apart if a[0].name not in isa] + (
        [[a for a in apart if a[0].name in isa]] if any(a[0].name in isa for a in apart) else []
    )
    hits = []
    for group in groups:
        hits.append(
            {
                "built": ", ".join(f"{o.name}={v}" for o, v in group),
                "planned": ", ".join(f"{o.name}={o.value}" for o, _ in group),
                "cmake": " ".join(f"-D{o.name}={o.value}" for o, _ in group),
                "reason": group[0][0].reason
                if len(group) == 1
                else f"builddoctor's plan spells out the instruction sets of the CPU it is for "
                f"({machine.cpu.model or machine.cpu.arch}), on exactly where the CPU has it (and a "
                "known-bad row leaves it in); the build sets these otherwise",
            }
        )
    return hits or None


def isa_options() -> dict:
    """llama.cpp's instruction-set options and the features each forces (data/llama_options_isa.toml)."""
    from builddoctor.llama_options import isa_table

    return isa_table()


def _plan(machine: MachineProfile, goal: str, ctx: Context):
    key = f"plan:{goal}"
    if key not in ctx.extra:
        try:
            from builddoctor.resolve import resolve

            ctx.extra[key] = resolve(machine, goal=goal, host=ctx.extra.get("host"))
        except Exception:  # noqa: BLE001 - no plan (e.g. broken recipes) means no comparison, not a failed check
            ctx.extra[key] = None
    return ctx.extra[key]


# --------------------------------------------------------------------------- version


@rule
def old_build(build, machine, ctx):
    if not build.is_llama_cpp:
        return None
    pinned = f"{ctx.pin_version} ({ctx.pin_short_commit})"
    if build.commit and ctx.pin_short_commit and build.commit.startswith(ctx.pin_short_commit):
        return None
    old = ctx.catalogue["age"]
    if build.build_number and 1 < build.build_number < old["build_number"]:
        where = build.evidence.get("build_number", "")
        commit = f" (commit {build.commit})" if build.commit else ""
        return {
            "what": f"build b{build.build_number}{commit} is from before {old['date']}",
            "pinned": pinned,
            "missing": old["missing"],
            "evidence": f"build number {build.build_number}"
            + (f" ({where})" if where else "")
            + f"; llama.cpp b{old['build_number']} was released on {old['date']}",
        }
    if build.version:
        v, p = versions.parse(build.version.split("-")[0]), versions.parse(ctx.pin_version.split("-")[0])
        if v is None or p is None:
            return None
        if v < p:
            commit = f" (commit {build.commit})" if build.commit else ""
            ev = {
                "what": f"version {build.version}{commit}",
                "pinned": pinned,
                "missing": old["missing_minor"],
                "evidence": f"llama.cpp {build.version}" + (f", commit {build.commit}" if build.commit else ""),
            }
            return Hit(ev, variant="minor")
    return None
