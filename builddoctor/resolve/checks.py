"""The named checks a recipe lists in ``checks = [...]``: the facts that need arithmetic, each
reading its tables from that recipe's ``[data]``."""

from __future__ import annotations

from collections.abc import Callable

from builddoctor.profiles import BuildPlan
from builddoctor.recipe_schema import Recipe, RecipeError
from builddoctor.recipes import Context
from builddoctor.resolve.cuda import check_cuda, prereq
from builddoctor.resolve.facts import Facts
from builddoctor.resolve.prereqs import grade


def _check_hip(plan: BuildPlan, recipe: Recipe, facts: Facts, ctx: Context) -> None:
    """hipcc's version from ROCm's when it prints none; a gfx target ROCm has no kernels for is built
    as its substitute (``[data] gfx_substitute``), with the override that runs it."""
    hipcc = prereq(plan, "hipcc")
    if hipcc is not None and hipcc.status == "found" and not hipcc.found_version and facts.machine.rocm_version:
        hipcc.found_version = facts.machine.rocm_version
        grade(hipcc)
    for real, used in facts.hip_target_map().items():
        if real != used:
            digits = used[3:]
            override = f"{digits[:-2]}.{int(digits[-2], 16)}.{int(digits[-1], 16)}" if len(digits) >= 3 else "?"
            plan.notes.append(
                f"{real} is not a target ROCm ships kernels for: the plan builds for {used}; run with "
                f"HSA_OVERRIDE_GFX_VERSION={override}."
            )
    if not facts.hip_target_map() and ctx.goal == "native":
        plan.notes.append("No AMD GPU architecture (gfx target) is known: GPU_TARGETS is left to ROCm's default list.")


def _check_vulkan(plan: BuildPlan, recipe: Recipe, facts: Facts, ctx: Context) -> None:
    """A Vulkan build whose only device is CPU-emulated says what it proves and how slow it runs."""
    machine = facts.machine
    real = [g for g in machine.usable_gpus() if "vulkan" in [a.lower() for a in g.apis]]
    emulated = machine.emulated_gpus()
    if not real and emulated:
        plan.notes.append(
            f"The only Vulkan device here, {emulated[0].name}, is CPU-emulated: the build proves the "
            "Vulkan path works, but it runs far slower than the CPU backend. ggml lists it only with "
            "GGML_VK_VISIBLE_DEVICES=0."
        )


CHECKS: dict[str, Callable[[BuildPlan, Recipe, Facts, Context], None]] = {
    "cuda_toolkit": check_cuda,
    "hip_targets": _check_hip,
    "vulkan_devices": _check_vulkan,
}


def run_checks(plan: BuildPlan, active: list[Recipe], facts: Facts, ctx: Context) -> None:
    """Each active recipe's named checks, in order (a name this builddoctor lacks is the recipe's error)."""
    for r in active:
        for check in r.checks:
            fn = CHECKS.get(check)
            if fn is None:
                raise RecipeError(
                    f"{r.path}: check '{check}' is not known to this builddoctor (known: {', '.join(sorted(CHECKS))})."
                )
            fn(plan, r, facts, ctx)
