"""The version area: is it llama.cpp at all, can it be read, and how old is it."""

from __future__ import annotations

from typing import Any

from builddoctor import versions
from builddoctor.findings.areas import Context, rule, validator
from builddoctor.findings.catalogue import Hit
from builddoctor.profiles import BuildProfile, MachineProfile


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


# --------------------------------------------------------------------------- the ok line


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
