"""The resolver's CUDA check (recipe check ``cuda_toolkit``): which CUDA toolkits can build for
these GPUs (the recipe's ``[data] nvcc_support`` table), whether the installed nvcc is one of them,
where cuBLAS comes from, and whether the NVIDIA driver runs what that toolkit builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builddoctor import cuda_pip
from builddoctor.profiles import BuildPlan, GpuProfile, MachineProfile, PlanOption, Prerequisite
from builddoctor.recipe_schema import Recipe
from builddoctor.recipes import Context
from builddoctor.resolve.facts import Facts, cc_int
from builddoctor.resolve.prereqs import cmp_versions, grade, short_version, version_at_least, version_below
from builddoctor.versions import version_tuple


def prereq(plan: BuildPlan, name: str) -> Prerequisite | None:
    """The plan's prerequisite called ``name`` (None: no recipe asked for it)."""
    return next((p for p in plan.prerequisites if p.name == name), None)


@dataclass
class ToolkitRange:
    """The CUDA toolkits that build for every GPU of the machine: from ``lo`` up to, not including, ``hi``."""

    lo: str | None = None  # lowest toolkit that builds for every GPU
    hi: str | None = None  # first toolkit that no longer builds for one of them (exclusive)
    why_lo: str = ""
    why_hi: str = ""


def check_cuda(plan: BuildPlan, recipe: Recipe, facts: Facts, ctx: Context) -> None:
    """Bound nvcc by what the GPUs need, place cuBLAS, and check the driver against the toolkit."""
    table = sorted(recipe.data.get("nvcc_support", []), key=lambda row: version_tuple(row["since"]) or ())
    nvcc = prereq(plan, "nvcc")
    span = toolkit_range(plan, table, [g for g in facts.nvidia() if cc_int(g.compute_capability)])
    if nvcc is not None:
        _bound_nvcc(plan, nvcc, table, span, facts)
    cublas_install(plan, facts.machine)
    without_libcuda(plan, recipe, facts.machine, nvcc)
    drv = prereq(plan, "nvidia-driver")
    if drv is not None:
        check_driver(plan, drv, recipe, facts, nvcc)


def toolkit_range(plan: BuildPlan, table: list[dict[str, Any]], gpus: list[GpuProfile]) -> ToolkitRange:
    """The toolkit range that builds for all of ``gpus``; a GPU no toolkit supports gets a note."""
    span = ToolkitRange()
    for g in gpus:
        cc = cc_int(g.compute_capability) or 0
        supported = [row for row in table if row["min_cc"] <= cc <= row["max_cc"]]
        if not supported:
            plan.notes.append(
                f"{g.name} (compute capability {g.compute_capability}) is not supported by any CUDA "
                "toolkit that llama.cpp builds with: use the Vulkan or CPU backend."
            )
            continue
        first = supported[0]["since"]
        if span.lo is None or cmp_versions(version_tuple(first) or (), version_tuple(span.lo) or ()) > 0:
            span.lo = first
            span.why_lo = f"{g.name} (compute capability {g.compute_capability}) needs CUDA {first} or newer"
        last_since = version_tuple(supported[-1]["since"]) or ()
        later = [row for row in table if (version_tuple(row["since"]) or ()) > last_since]
        if later:
            cut = later[0]["since"]
            if span.hi is None or version_below(cut, span.hi):
                span.hi = cut
                span.why_hi = (
                    f"CUDA {short_version(cut)} cannot build for compute capability {g.compute_capability} "
                    f"({g.name}): it dropped GPUs below {later[0]['min_cc'] / 10:.1f}"
                )
    return span


def _bound_nvcc(
    plan: BuildPlan, nvcc: Prerequisite, table: list[dict[str, Any]], span: ToolkitRange, facts: Facts
) -> None:
    """nvcc's bounds from the range, graded; a too-new or too-old nvcc says which toolkit to use."""
    if span.lo and version_at_least(span.lo, nvcc.min_version or "0"):
        nvcc.min_version = span.lo
        nvcc.reason += f"; {span.why_lo}"
    if span.hi:
        nvcc.max_version = short_version(span.hi)
    grade(nvcc)
    if nvcc.status == "too-new":
        hi = span.hi
        last = [row["since"] for row in table if version_below(row["since"], hi)][-1] if hi else "12"
        last_major = (version_tuple(last) or (12,))[0]
        nvcc.reason = (
            f"{span.why_hi}. Install a CUDA {last_major} toolkit (e.g. {short_version(last)}) beside "
            f"it and configure with -DCMAKE_CUDA_COMPILER=<its bin/nvcc>"
        )
        plan.notes.append(
            f"The installed nvcc ({facts['nvcc_version']}) cannot build for this GPU: "
            f"{span.why_hi}. A CUDA {last_major} toolkit is required."
        )
    elif nvcc.status == "too-old":
        nvcc.reason = f"{facts['nvcc_version']} is too old: " + (
            span.why_lo if span.lo and nvcc.min_version == span.lo else f"llama.cpp needs CUDA {nvcc.min_version}+"
        )
    if nvcc.status != "found":
        plan.options = [o for o in plan.options if o.name != "CMAKE_CUDA_COMPILER"]


def cublas_install(plan: BuildPlan, machine: MachineProfile) -> None:
    """The cuBLAS install commands for this nvcc's CUDA version: the distro package named for it,
    and the pinned PyPI wheels (cuda_pip.py) that `build --cuda-from-pip` places itself."""
    p = prereq(plan, "cublas")
    if p is None:
        return
    nvcc = machine.tool("nvcc")
    v = version_tuple(nvcc.version) if nvcc.found else None
    dash = f"{v[0]}-{v[1]}" if v and len(v) >= 2 else "<major>-<minor>"
    pip = cuda_pip.install_hint(nvcc.version if nvcc.found else None) or (
        "the nvidia-cublas wheel from PyPI for this CUDA version, with -DCUDAToolkit_ROOT pointed at a toolkit "
        "folder that holds its include/ and lib/ beside cudart's"
    )
    p.install = {k: t.replace("{cuda_dash}", dash).replace("{cublas_pip}", pip) for k, t in p.install.items()}
    fact = machine.tool("cublas")
    if p.status == "missing" and nvcc.found and fact.detail:
        p.reason += f" ({fact.detail}, the toolkit of {nvcc.path})"


def without_libcuda(plan: BuildPlan, recipe: Recipe, machine: MachineProfile, nvcc: Prerequisite | None) -> None:
    """A machine with nvcc but no libcuda (a build host without a GPU driver): the recipe's
    ``[data] without_libcuda`` option replaces the plan's."""
    lib = machine.toolchains.get("libcuda")
    nolib = recipe.data.get("without_libcuda")
    if nolib and lib is not None and not lib.found and nvcc is not None and nvcc.status == "found":
        plan.options = [o for o in plan.options if o.name != nolib["option"]]
        plan.options.append(
            PlanOption(
                nolib["option"], nolib["value"], nolib["reason"].replace("{libcuda_detail}", lib.detail), recipe.name
            )
        )


def check_driver(plan: BuildPlan, drv: Prerequisite, recipe: Recipe, facts: Facts, nvcc: Prerequisite | None) -> None:
    """The driver against the toolkit the build uses (``[data] driver_min`` per OS and CUDA major)."""
    os_key = "windows" if facts.machine.os.lower() == "windows" else "linux"
    mins = recipe.data.get("driver_min", {}).get(os_key, {})
    if nvcc is not None and nvcc.status == "found" and nvcc.found_version:
        toolkit = nvcc.found_version
    else:
        toolkit = nvcc.min_version if nvcc is not None and nvcc.min_version else "12.0"
    major = str((version_tuple(toolkit) or (12,))[0])
    drv.min_version = mins.get(major)
    with_driver = [g for g in facts.nvidia() if g.driver_version]
    if not with_driver:
        drv.status = "missing"
        drv.reason = "no NVIDIA driver was found: the build can be made, but it cannot run here"
        return
    g = with_driver[0]
    drv.found_version = g.driver_version
    drv.status = "found"
    cuda = version_tuple(g.cuda_version)
    if cuda is not None and cuda[0] < int(major):
        drv.status = "too-old"
        drv.reason = (
            f"driver {g.driver_version} supports CUDA up to {g.cuda_version}, but a build with CUDA "
            f"{short_version(toolkit)} needs a driver for CUDA {major}.x (>= {drv.min_version or '?'}): "
            "update the driver, or build with an older toolkit that this driver supports"
        )
    elif drv.min_version and not version_at_least(g.driver_version, drv.min_version):
        drv.status = "too-old"
        drv.reason = (
            f"driver {g.driver_version} is older than {drv.min_version}, the lowest for CUDA {major}.x "
            "on this OS: update the driver"
        )
    elif g.cuda_version and version_below(g.cuda_version, short_version(toolkit)):
        plan.notes.append(
            f"The driver supports CUDA {g.cuda_version}, older than the toolkit ({short_version(toolkit)}): "
            "it runs through CUDA minor-version compatibility because the plan builds real GPU code "
            "(SASS) for these GPUs; PTX from this toolkit could not be JIT-compiled by this driver."
        )
