"""The build area: build type and OpenMP."""

from __future__ import annotations

from typing import Any

from builddoctor.cmake_bool import is_on
from builddoctor.findings.areas import Context, rule, validator
from builddoctor.findings.rules.base import _cpu_files, links_openmp
from builddoctor.profiles import BuildProfile, MachineProfile


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


# --------------------------------------------------------------------------- the ok line


@validator("build")
def build_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    if not build.build_type:
        return None
    return {"build_type": build.build_type, "openmp_ok": ", with OpenMP" if links_openmp(_cpu_files(build)) else ""}
