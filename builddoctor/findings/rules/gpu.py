"""The gpu area: the GPU backend against this machine's GPUs, driver and runtime libraries."""

from __future__ import annotations

import re
from typing import Any

from builddoctor import versions
from builddoctor.findings.areas import Context, rule, validator
from builddoctor.findings.catalogue import Hit
from builddoctor.findings.rules.base import _name, gpu_runtime_prefixes
from builddoctor.profiles import BinaryFile, BuildProfile, GpuProfile, MachineProfile
from builddoctor.recipes import RecipeError, load_recipes


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
            values = {
                "archs": ", ".join(build.cuda_archs),
                "gpu": g.name,
                "cc": g.compute_capability,
                "ccn": f"{cc[0]}{cc[1]}",
            }
            dropped = toolkit_dropped(cc[0] * 10 + cc[1], nvcc_support())
            if dropped is None:
                return values
            return Hit({**values, **dropped}, variant="toolkit_too_new")
    return None


def nvcc_support() -> list[dict]:
    """What each CUDA toolkit compiles for (recipes/cuda.toml [data.nvcc_support]), oldest first;
    none when the recipes do not load (then BD120 says its plain fix)."""
    try:
        recipes = load_recipes()
    except RecipeError:
        return []
    rows: list[dict] = next((r.data.get("nvcc_support", []) for r in recipes if r.backend == "cuda"), [])
    return sorted(rows, key=lambda row: versions.version_tuple(row["since"]) or ())


def toolkit_dropped(cc: int, rows: list[dict]) -> dict[str, str] | None:
    """For a GPU of compute capability ``cc`` (x10) that newer CUDA toolkits no longer compile for
    (6.1 with CUDA 13): the last toolkit line that still does and the one that dropped it.
    None when the newest toolkit builds for it, or none ever did."""
    supported = [row for row in rows if row["min_cc"] <= cc <= row["max_cc"]]
    if not supported or rows[-1] in supported:
        return None
    last = supported[-1]
    drop = next((row for row in rows if _since(row) > _since(last) and cc < row["min_cc"]), None)
    if drop is None:
        return None
    return {
        "last_major": str(_since(last)[0]),
        "last_min": f"{last['min_cc'] / 10:.1f}",
        "drop_major": str(_since(drop)[0]),
        "drop_min": f"{drop['min_cc'] / 10:.1f}",
    }


def _since(row: dict) -> tuple[int, ...]:
    return versions.version_tuple(row["since"]) or (0,)


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


# --------------------------------------------------------------------------- the ok line


@validator("gpu")
def gpu_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    gpus = machine.usable_gpus()
    if not gpus:
        emulated = [g.name for g in machine.emulated_gpus()]
        extra = f" ({', '.join(emulated)} is CPU-emulated)" if emulated else ""
        return {"gpu_ok": f"no GPU on this machine{extra}: the CPU backend is the right one"}
    gpu_backends = [b for b in build.backends if b not in ("CPU", "BLAS", "RPC")]
    archs = f" ({', '.join(build.cuda_archs)})" if build.cuda_archs else ""
    return {"gpu_ok": f"{', '.join(gpu_backends) or 'GPU'} backend{archs} for {gpus[0].name}"}
