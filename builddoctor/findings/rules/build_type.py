"""The build area: build type and OpenMP."""

from __future__ import annotations

from builddoctor.cmake_bool import is_on
from builddoctor.findings.rules.base import _cpu_files, links_openmp, rule


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
