"""The plan's prerequisites: merged from the recipes that ask for them, found in the machine
profile, and graded against their version bounds."""

from __future__ import annotations

from builddoctor.profiles import BuildPlan, MachineProfile, Prerequisite
from builddoctor.recipe_schema import Recipe
from builddoctor.recipes import Context, evaluate, load_recipes
from builddoctor.resolve.facts import Facts, platform_key
from builddoctor.versions import version_tuple


def cmp_versions(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """-1, 0 or 1, the shorter version padded with zeros."""
    n = max(len(a), len(b))
    a = a + (0,) * (n - len(a))
    b = b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def version_at_least(found: str | None, wanted: str) -> bool:
    f, w = version_tuple(found), version_tuple(wanted)
    return f is not None and w is not None and cmp_versions(f, w) >= 0


def version_below(found: str | None, limit: str) -> bool:
    f, w = version_tuple(found), version_tuple(limit)
    return f is not None and w is not None and cmp_versions(f[: len(w)], w) < 0


def short_version(v: str | None) -> str:
    """major.minor, for the sentences ("CUDA 12.4")."""
    t = version_tuple(v)
    return ".".join(str(x) for x in t[:2]) if t else (v or "?")


def collect(active: list[Recipe], facts: Facts, ctx: Context) -> list[Prerequisite]:
    """One Prerequisite per name the active recipes ask for (bounds narrowed, reasons joined), each
    looked up in the machine profile and graded."""
    prereqs: dict[str, Prerequisite] = {}
    tools: dict[str, list[str]] = {}  # prerequisite -> the tools that stand for it (alternatives)
    platforms = platform_key(facts.machine)
    for r in active:
        for pre in r.prerequisites:
            if not evaluate(pre.when, ctx)[0]:
                continue
            install = {k: v for k, v in pre.install.items() if k in platforms}
            p = prereqs.get(pre.name)
            if p is None:
                prereqs[pre.name] = Prerequisite(
                    name=pre.name,
                    kind=pre.kind,
                    status="missing",
                    min_version=pre.min_version,
                    max_version=pre.max_version,
                    recipe=r.name,
                    install=install,
                    reason=facts.render(pre.reason),
                    required=pre.required,
                )
                tools[pre.name] = list(pre.tools)
                continue
            if pre.min_version and (not p.min_version or version_at_least(pre.min_version, p.min_version)):
                p.min_version = pre.min_version
            if pre.max_version and (not p.max_version or version_below(pre.max_version, p.max_version)):
                p.max_version = pre.max_version
            p.recipe += f"+{r.name}"
            p.required = p.required or pre.required
            if pre.reason:
                p.reason = (p.reason + "; " if p.reason else "") + facts.render(pre.reason)
            for k, v in install.items():
                p.install.setdefault(k, v)
    for name, p in prereqs.items():
        locate(p, facts.machine, tools[name])
        grade(p)
    return list(prereqs.values())


def locate(p: Prerequisite, machine: MachineProfile, tools: list[str]) -> None:
    """found_version / whether it is there, from the machine profile (the first of ``tools`` found)."""
    if p.kind == "driver":
        return  # decided by a check (cuda_toolkit)
    if p.name == "cublas" and "cublas" not in machine.toolchains:
        p.status = "unchecked"  # a profile recorded before builddoctor looked for cuBLAS: not known missing
        return
    if p.kind == "library" and p.name == "libvulkan" and machine.vulkan_loader:
        p.status = "found"
        p.found_version = machine.vulkan_loader if version_tuple(machine.vulkan_loader) else None
        return
    for t in tools:
        info = machine.tool(t)
        if info.found:
            p.status = "found"
            p.found_version = info.version
            if len(tools) > 1:
                p.name = f"{p.name} ({t})" if t not in p.name else p.name
            return
    p.status = "missing"


def recheck_prerequisites(plan: BuildPlan, machine: MachineProfile, recipes: list[Recipe] | None = None) -> None:
    """Find a loaded plan's prerequisites again on ``machine``, the one about to build it.

    A plan saved with `recipe --save` (perhaps for another machine, with --profile) records
    where its tools were found *there*; what counts for compiling is this machine's toolchain.
    Bounds, reasons and install commands stay the plan's; drivers stay as recorded (compiling
    needs none)."""
    recipes = load_recipes() if recipes is None else recipes
    specs = {spec.name: spec for r in recipes if r.name in plan.recipes for spec in r.prerequisites}
    for p in plan.prerequisites:
        if p.kind == "driver":
            continue
        base = p.name.split(" (", 1)[0]
        spec = specs.get(base)
        p.name = base
        p.found_version = None
        p.status = "missing"
        locate(p, machine, list(spec.tools) if spec is not None and spec.tools else [base])
        grade(p)


def grade(p: Prerequisite) -> None:
    """found / too-old / too-new from found_version and the bounds (missing stays missing)."""
    if p.status in ("missing", "unchecked"):
        return
    if p.found_version and p.min_version and not version_at_least(p.found_version, p.min_version):
        p.status = "too-old"
    elif p.found_version and p.max_version and not version_below(p.found_version, p.max_version):
        p.status = "too-new"
    else:
        p.status = "found"
