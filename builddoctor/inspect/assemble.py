"""Turn a group of files (one build) into a BuildProfile: the union of what its files say,
the CMakeCache.txt beside it, and (optionally) what its executable says when run."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from builddoctor.errors import InputError
from builddoctor.inspect import cmakecache, compute, runtime
from builddoctor.inspect import isa as isa_mod
from builddoctor.inspect.buildinfo import from_folder, from_soname
from builddoctor.inspect.discover import Group
from builddoctor.inspect.discover import _data as discover_data
from builddoctor.inspect.filefacts import FileFacts, runs_on_host
from builddoctor.profiles import BuildProfile

BACKEND_ORDER = [
    "CPU",
    "CUDA",
    "HIP",
    "MUSA",
    "Metal",
    "Vulkan",
    "SYCL",
    "OpenCL",
    "BLAS",
    "RPC",
    "CANN",
    "WebGPU",
    "ZDNN",
    "ZenDNN",
    "Hexagon",
    "OpenVINO",
    "VirtGPU",
]


def _name(g: Group) -> str:
    kind, _, package = g.origin.partition(":")
    if package and kind in ("pip", "npm"):  # discover.package_origin
        return f"{package} ({kind} package)"
    parts = g.root.parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(g.root)


def _build_type(facts: list[FileFacts], cpu: list[FileFacts]) -> tuple[str | None, str]:
    for f in cpu + facts:
        opts = f.opt_flags
        if opts.get("opt"):
            opt = opts["opt"]
            prod = f.producers[0] if f.producers else ""
            where = f"DW_AT_producer of {os.path.basename(f.file.path)}: {prod[:160]}"
            if opt == "-O0":
                return "Debug", where
            if opt == "-Os" or opt == "-Oz":
                return "MinSizeRel", where
            if opt in ("-O1", "-O2", "-Og") and opts.get("g"):
                return "RelWithDebInfo", where
            return "Release", where
    for f in cpu + facts:
        if f.unoptimized is True:
            return "Debug", (
                f"unoptimised code in {os.path.basename(f.file.path)} (frame set up in trivial "
                "functions), no compiler switches recorded"
            )
        if f.unoptimized is False:
            return "Release", (f"optimised code in {os.path.basename(f.file.path)} and no debug information")
    return None, ""


def make_profile(
    g: Group, facts: list[FileFacts], *, run: bool, timeout: float, probe: Callable | None = None
) -> BuildProfile:
    """One build's profile: the union of what its files say, then its CMakeCache.txt, then (``run``)
    what its executable says."""
    bp = BuildProfile(root=str(g.root), name=_name(g), origin=g.origin)
    bp.files = [f.file for f in facts]
    bp.is_llama_cpp = any(f.is_llama for f in facts)
    _backends(bp, facts)
    # CPU code: the files that carry the CPU backend; else every file we decoded
    cpu = [f for f in facts if "CPU" in f.file.backends and not f.cpu_variant]
    variants = [f for f in facts if f.cpu_variant]
    _cpu_code(bp, facts, cpu, variants)
    _gpu_code(bp, facts)
    bp.openmp = any(f.openmp for f in facts) if cpu or variants else None
    _embedded_info(bp, facts)
    if bp.is_llama_cpp and bp.build_number is None and bp.version is None:
        _info_from_names(bp, facts, g.root)
    if g.cmake_cache is not None:
        _cmake_cache(bp, g.cmake_cache)
    if bp.build_type is None:
        bp.build_type, why = _build_type(facts, cpu or variants)
        if why:
            bp.evidence["build_type"] = why
    for f in facts:
        if f.file.error:
            bp.errors.append(f"{f.file.path}: {f.file.error}")
    if run:
        apply_runtime(bp, facts, timeout=timeout, probe=probe)
    return bp


def _backends(bp: BuildProfile, facts: list[FileFacts]) -> None:
    """Every file's backends, in llama.cpp's order (unknown ones after, sorted), and CPU variants."""
    seen: set[str] = set()
    for f in facts:
        seen.update(f.file.backends)
    bp.backends = [b for b in BACKEND_ORDER if b in seen] + sorted(seen - set(BACKEND_ORDER))
    bp.cpu_variants = sorted({f.cpu_variant for f in facts if f.cpu_variant})


def _cpu_code(bp: BuildProfile, facts: list[FileFacts], cpu: list[FileFacts], variants: list[FileFacts]) -> None:
    """The build's instruction sets: those of the files carrying the CPU backend; none for a build
    of CPU variants (ggml picks one at run time); else those of every file decoded."""
    if cpu:
        src = cpu
    elif variants:
        src = []
        bp.evidence["isa"] = (
            f"the CPU backend is built as {len(variants)} variants (GGML_CPU_ALL_VARIANTS: "
            f"{', '.join(bp.cpu_variants)}); ggml loads the best one this CPU runs"
        )
    else:
        src = [f for f in facts if f.file.isa_level]
    feats: set[str] = set()
    detail: set[str] = set()
    for f in src:
        feats.update(f.file.isa)
        detail.update(f.file.isa_detail)
    bp.isa = sorted(feats)
    bp.isa_detail = sorted(detail)
    if src and any(f.file.isa_level for f in src):
        bp.isa_level = isa_mod.level_of(feats) or "sse"
    if src and "isa" not in bp.evidence:
        bp.evidence["isa"] = "; ".join(f"{os.path.basename(f.file.path)}: {f.isa_how}" for f in src if f.isa_how)


def _gpu_code(bp: BuildProfile, facts: list[FileFacts]) -> None:
    archs: list[str] = []
    for f in facts:
        archs += [a for a in f.file.cuda_archs if a not in archs]
    bp.cuda_archs = archs
    fa = [f.flash_attn for f in facts if f.flash_attn is not None]
    if fa:
        bp.flash_attn_kernels = any(fa)


def _embedded_info(bp: BuildProfile, facts: list[FileFacts]) -> None:
    """Version, build number, commit... embedded in the files: the first file that has each wins."""
    for f in facts:
        info = f.info
        for key in ("version", "build_number", "commit", "compiler", "target", "ggml_version", "ggml_commit"):
            if getattr(bp, key) is None and info.get(key) is not None:
                setattr(bp, key, info[key])
                bp.evidence.setdefault(key, f"embedded in {os.path.basename(f.file.path)}")


def _info_from_names(bp: BuildProfile, facts: list[FileFacts], root: Path) -> None:
    """Nothing embedded (stripped Mach-O/PE files): what libllama's name or the folder's says."""
    for f in facts:
        name = os.path.basename(f.file.path)
        for key, value in from_soname(name).items():
            setattr(bp, key, value)
            bp.evidence[key] = f"the file name {name}"
        if bp.build_number is not None or bp.version is not None:
            break
    number = from_folder(root).get("build_number") if bp.build_number is None else None
    if number is not None:
        bp.build_number = number
        bp.evidence["build_number"] = f"the name of the folder it is in ({root.name})"


def _cmake_cache(bp: BuildProfile, path: Path) -> None:
    """The options the user set, the build type, and FlashAttention kernels compiled empty."""
    bp.cmake_cache = str(path)
    try:
        cache = cmakecache.load(path)
        bp.cmake_options = cache.user_options()
        full = cache.values()
        if cache.truncated:
            bp.errors.append(cache.note)
    except InputError as exc:
        bp.errors.append(exc.message)
        full = {}
    if full.get("CMAKE_BUILD_TYPE"):
        bp.build_type = full["CMAKE_BUILD_TYPE"]
        bp.evidence["build_type"] = f"CMAKE_BUILD_TYPE in {path}"
    if bp.flash_attn_kernels is not None and full.get("GGML_CUDA_FA", "").upper() in ("OFF", "0", "FALSE", "NO"):
        bp.flash_attn_kernels = False
        bp.evidence["flash_attn_kernels"] = "GGML_CUDA_FA=OFF in CMakeCache.txt (kernels compiled empty)"


def apply_runtime(bp: BuildProfile, facts: list[FileFacts], *, timeout: float, probe: Callable | None = None) -> None:
    """Run the build's best executable (--version, --list-devices) and add what it says."""
    if not bp.is_llama_cpp:
        return
    exe = _pick_executable(facts)
    if exe is None:
        return

    ri = (probe or runtime.probe)(exe.file.path, timeout=timeout)
    bp.runtime = ri.results
    bp.devices = ri.devices
    for key in ("version", "build_number", "commit", "compiler", "target"):
        val = getattr(ri, key)
        if val is not None and getattr(bp, key) is None:
            setattr(bp, key, val)
            bp.evidence[key] = f"{os.path.basename(exe.file.path)} --version"


def apply_compute(bp: BuildProfile, facts: list[FileFacts], *, timeout: float, model: Path) -> None:
    """The compute probe: a real inference with the build's program (the compute table's first
    one found), or, for a library-only build, a dlopen of its library in a child process.
    Skipped when ``--version`` already crashed or hung (that is reported on its own)."""
    if not bp.is_llama_cpp or any(r.signal or r.timed_out for r in bp.runtime):
        return

    absent = compute.device_not_here(bp.backends)
    if absent is not None:  # a speed from the CPU fallback would say nothing of the GPU code
        bp.compute = compute.not_run(absent)
        return
    exes = [f for f in facts if f.executable_here and not f.file.error]
    found = compute.program_for([Path(f.file.path).name for f in exes])
    if found is not None:
        name, prog = found
        exe = next(f for f in exes if Path(f.file.path).name == name)
        bp.compute = compute.run_inference(exe.file.path, prog, model, timeout=timeout)
        return
    if exes:
        return  # programs this probe does not know how to drive (llama-server...): --version only
    libs = [
        (f.file.path, f.is_llama)
        for f in facts
        if f.file.format == "ELF"
        and f.file.role != "executable"
        and not f.file.error
        and runs_on_host(f.file)
        and not f.file.missing_needed
    ]
    lib = compute.pick_library(libs)
    if lib is not None and sys.platform.startswith("linux"):
        bp.compute = compute.run_dlopen(lib)


def _pick_executable(facts: list[FileFacts]) -> FileFacts | None:
    pref = discover_data()["run_preference"]
    exes = [f for f in facts if f.executable_here and f.is_llama and not f.file.error]
    if not exes:
        return None

    def rank(f: FileFacts) -> tuple[int, str]:
        name = Path(f.file.path).name
        return (pref.index(name) if name in pref else len(pref), name)

    return min(exes, key=rank)
