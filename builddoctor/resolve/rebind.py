"""A plan saved for another machine (``recipe --profile THERE.json --save``), built on this one.

The plan names the tool paths found *there* (``CMAKE_CUDA_COMPILER=/usr/local/cuda-12.4/bin/nvcc``).
What compiles is this machine's toolchain, so the options a recipe sets from a tool of the building
machine (``when = { tool = ... }``) are set again from this machine's tools, from the recipe's own
template: no second table of which option names which tool. Everything that is
about the machine the build is for (its GPUs' architectures, its CPU flags) stays the plan's; the
driver recorded there is graded again against the toolkit that will now compile (``regrade_driver``).
"""

from __future__ import annotations

import os

from builddoctor.profiles import BuildPlan, MachineProfile, PlanOption
from builddoctor.recipe_schema import Recipe
from builddoctor.recipes import load_recipes
from builddoctor.resolve.cuda import check_driver, cublas_install, prereq, without_libcuda
from builddoctor.resolve.facts import Facts


def rebind_paths(plan: BuildPlan, here: MachineProfile, recipes: list[Recipe] | None = None) -> list[str]:
    """The plan's options that a recipe sets from a tool of the building machine (``when = { tool =
    "nvcc" }``: the nvcc path, the toolkit cuBLAS is in), set again from this machine's tool where
    the plan's path is not here, or added where the plan has none and this machine has the tool (a
    cuBLAS merged by --cuda-from-pip). Returns one line per change. A path with nothing here to take
    its place is left as it is: the plan policy refuses it, naming it."""
    by_name = {r.name: r for r in (load_recipes() if recipes is None else recipes)}
    facts = Facts(here, by_name)
    changed = []
    for recipe in (by_name[n] for n in plan.recipes if n in by_name):
        for spec in recipe.options:
            tool = spec.when.get("tool") if set(spec.when) == {"tool"} else None
            if not isinstance(tool, str) or not here.tool(tool).found:
                continue
            new = facts.render(spec.value)
            old = next((o for o in plan.options if o.name == spec.name), None)
            if not new or not os.path.exists(new) or (old is not None and os.path.exists(old.value)):
                continue
            if old is None:
                plan.options.append(PlanOption(spec.name, new, facts.render(spec.reason), recipe.name))
                changed.append(f"{spec.name}: set to this machine's {new} ({tool})")
            elif old.value != new:
                changed.append(f"{spec.name}: {old.value} is not on this machine; using this machine's {new}")
                old.value = new
    return changed


def regrade_cuda(plan: BuildPlan, here: MachineProfile, recipes: list[Recipe] | None = None) -> None:
    """After ``recheck_prerequisites``: what the cuda recipe decides from the building machine is
    decided again from this one (cuBLAS's install commands for this nvcc, GGML_CUDA_NO_VMM where this
    machine has no libcuda to link), and the driver recorded on the machine the build is for is
    graded against this nvcc (a build made with CUDA 13 does not run on a driver for CUDA 12)."""
    by_name = {r.name: r for r in (load_recipes() if recipes is None else recipes)}
    recipe = next((r for r in by_name.values() if r.name in plan.recipes and "cuda_toolkit" in r.checks), None)
    if recipe is None:
        return
    nvcc = prereq(plan, "nvcc")
    cublas = prereq(plan, "cublas")
    spec = next((s for s in recipe.prerequisites if s.name == "cublas"), None)
    if cublas is not None and spec is not None:
        cublas.install = dict(spec.install)
    cublas_install(plan, here)
    without_libcuda(plan, recipe, here, nvcc)
    drv = prereq(plan, "nvidia-driver")
    if drv is not None and plan.machine is not None:
        check_driver(plan, drv, recipe, Facts(plan.machine, by_name), nvcc)
