"""The load area: whether the build's files load here (libraries, glibc, libstdc++, symbols, dlopen)."""

from __future__ import annotations

from typing import Any

from builddoctor import versions
from builddoctor.findings.areas import Context, rule, validator
from builddoctor.findings.rules.base import _name, gpu_runtime_prefixes
from builddoctor.profiles import BinaryFile, BuildProfile, MachineProfile
from builddoctor.versions import sort_key


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


# --------------------------------------------------------------------------- the ok line


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
