"""Compose the recipes into one BuildPlan for a machine: options with reasons, prerequisites,
what was not chosen and why.

The rules live in ``recipes/*.toml``; this package only evaluates them: ``facts`` fills their
templates, ``prereqs`` finds and grades what they ask for, and the few facts that need arithmetic
(CUDA architectures, which CUDA toolkit can build for which GPU, driver vs toolkit) are the named
``checks`` of a recipe (``checks``, ``cuda``), reading their tables from that recipe's ``[data]``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from builddoctor import errors, known_bad, paths
from builddoctor.cmake_bool import same_value
from builddoctor.llama_options import scan_source
from builddoctor.profiles import BuildPlan, MachineProfile, PlanOption, Skipped
from builddoctor.recipe_schema import GOALS, Recipe, RecipeError
from builddoctor.recipes import Context, cpu_features, evaluate, load_recipes
from builddoctor.resolve import prereqs
from builddoctor.resolve.checks import run_checks
from builddoctor.resolve.facts import Facts, platform_key, unmet_reason
from builddoctor.resolve.prereqs import recheck_prerequisites
from builddoctor.source import load_pin

__all__ = [
    "DEFAULT_TARGETS",
    "Facts",
    "is_this_machine",
    "platform_key",
    "recheck_prerequisites",
    "resolve",
    "shell_line",
    "source_version",
]

DEFAULT_TARGETS = ["llama-cli", "llama-server", "llama-bench", "llama-quantize"]


@dataclass
class _Opt:
    value: str
    reason: str
    recipe: Recipe


def is_this_machine(machine: MachineProfile) -> bool:
    """Whether ``machine`` was probed here and now (not loaded from --profile, its CPU not from --cpuinfo)."""
    return machine.source == "live" and machine.cpu.source == "live"


def source_version(source: Path | None) -> str | None:
    """LLAMA_VERSION of the tree to build: the pin's for the pinned tree (or none given); None
    (unknown) for another checkout, which every known-bad row then counts as affected."""
    if source is None or Path(source).resolve() == paths.vendor_dir().resolve():
        return load_pin().llama_version
    return None


def resolve(
    machine: MachineProfile,
    *,
    goal: str = "native",
    backend: str = "auto",
    source: Path | None = None,
    recipes: list[Recipe] | None = None,
    host: bool | None = None,
    avoid: tuple[str, ...] = (),
) -> BuildPlan:
    """The build plan for ``machine``: which recipes apply, and the options they set, with reasons.

    ``host``: the plan is for the machine that builds it (default: ``machine`` was probed here),
    so -march=native is right; otherwise the CPU code's ISA is spelled out. The known-bad rows
    that apply to the source's llama.cpp version take their features away (``avoid`` adds more:
    what `fix` learned from a crash)."""
    if goal not in GOALS:
        raise errors.InputError(f"Unknown goal '{goal}': use one of {', '.join(GOALS)}.")
    recipes = load_recipes() if recipes is None else recipes
    host = is_this_machine(machine) if host is None else host
    version = source_version(source)
    facts, ctx = _facts_and_context(machine, recipes, goal=goal, host=host, version=version, avoid=avoid)
    backends = backend_recipes(recipes, backend)
    verdicts = {r.name: evaluate(r.when, ctx) for r in backends}
    chosen, notes = choose_backend(backends, backend, verdicts, facts)
    skipped = skipped_backends(backends, chosen, backend, verdicts, facts)
    ctx.backend = chosen.backend
    active = active_recipes(recipes, chosen, ctx)
    options, dropped = collect_options(active, facts, ctx)
    plan = BuildPlan(
        goal=goal,
        backend=chosen.backend or "cpu",
        machine=machine,
        targets=list(DEFAULT_TARGETS),
        recipes=[r.name for r in active],
        skipped=skipped,
        notes=notes,
    )
    plan.options = [PlanOption(n, o.value, o.reason, o.recipe.name) for n, o in options.items()]
    plan.options.sort(key=lambda o: o.name != "CMAKE_BUILD_TYPE")
    plan.prerequisites = prereqs.collect(active, facts, ctx)
    omit_crashing_variants(plan, version)
    for r in active:
        for k, v in r.env.items():
            plan.env[k] = facts.render(v)
        plan.notes.extend(facts.render(n) for n in r.notes)
    run_checks(plan, active, facts, ctx)
    _note_dropped(plan, dropped)
    _note_undeclared(plan, source)
    return plan


def _facts_and_context(
    machine: MachineProfile,
    recipes: list[Recipe],
    *,
    goal: str,
    host: bool,
    version: str | None,
    avoid: tuple[str, ...],
) -> tuple[Facts, Context]:
    """The template values and the condition context, with the features the known-bad rows for
    this CPU and llama.cpp version (and ``avoid``) take away."""
    rows = known_bad.applying(cpu_features(machine), version)
    avoided = frozenset({f for r in rows for f in r.avoid} | set(avoid))
    facts = Facts(machine, {r.name: r for r in recipes}, host=host, known_bad=rows, llama_version=version)
    return facts, Context(machine, goal=goal, host=host, avoided=avoided)


def backend_recipes(recipes: list[Recipe], backend: str) -> list[Recipe]:
    """The backend recipes, most preferred first; ``backend`` (not auto) must be one of them."""
    backends = sorted((r for r in recipes if r.kind == "backend"), key=lambda r: (-r.priority, r.name))
    known = {r.backend for r in backends}
    if backend != "auto" and backend not in known:
        raise errors.InputError(
            f"Unknown backend '{backend}': use auto or one of {', '.join(sorted(str(k) for k in known))}."
        )
    return backends


def choose_backend(
    backends: list[Recipe], backend: str, verdicts: dict[str, tuple[bool, str | None]], facts: Facts
) -> tuple[Recipe, list[str]]:
    """The backend recipe to build with (the first that applies, or the one asked for) and the
    plan's first notes (a backend asked for that does not apply here)."""
    if backend == "auto":
        chosen = next((r for r in backends if verdicts[r.name][0]), None)
        if chosen is None:
            raise RecipeError(
                "No backend recipe applies to this machine, not even the CPU one: the recipe folder "
                "lacks a backend recipe without conditions (recipes/cpu.toml)."
            )
        return chosen, []
    chosen = {r.backend: r for r in backends}[backend]
    ok, key = verdicts[chosen.name]
    if ok:
        return chosen, []
    return chosen, [
        f"--backend {backend} was asked for although {unmet_reason(chosen, key, facts, facts.machine)}: "
        "the build is planned, but it may not run on this machine."
    ]


def skipped_backends(
    backends: list[Recipe],
    chosen: Recipe,
    backend: str,
    verdicts: dict[str, tuple[bool, str | None]],
    facts: Facts,
) -> list[Skipped]:
    """The other backends the report names, each with why it was not chosen."""
    skipped: list[Skipped] = []
    for r in backends:
        if r is chosen or not r.report_skip:
            continue
        ok, key = verdicts[r.name]
        if not ok:
            skipped.append(Skipped(r.label, f"skipped, {unmet_reason(r, key, facts, facts.machine)}"))
        elif backend != "auto":
            skipped.append(Skipped(r.label, f"skipped, --backend {backend} was asked for"))
        else:
            why = (
                facts.render(chosen.preferred_because)
                if chosen.preferred_because
                else f"{chosen.label} is preferred on this machine"
            )
            skipped.append(Skipped(r.label, f"skipped, {why}"))
    return skipped


def active_recipes(recipes: list[Recipe], chosen: Recipe, ctx: Context) -> list[Recipe]:
    """The concern recipes that apply (in their own priority order: release, no-network, ...),
    then the chosen backend; two that declare a conflict are the recipes' error."""
    active = [r for r in recipes if r.kind == "concern" and evaluate(r.when, ctx)[0]]
    active.sort(key=lambda r: (-r.priority, r.name))
    active.append(chosen)
    by_name = {r.name: r for r in recipes}
    names = {r.name for r in active}
    for r in active:
        for other in r.conflicts:
            if other in names:
                o = by_name[other]
                raise RecipeError(
                    f"Recipes '{r.name}' ({r.path}) and '{other}' ({o.path}) both apply to this machine, "
                    f"but {r.path.name} says they conflict. Fix the 'when' of one of them."
                )
    return active


def collect_options(active: list[Recipe], facts: Facts, ctx: Context) -> tuple[dict[str, _Opt], list[str]]:
    """The options the active recipes set (the first recipe's reason kept), and the names whose
    value rendered empty (nothing on this machine to set them from). Two recipes that set one
    option to different values are the recipes' error: they are never merged silently."""
    options: dict[str, _Opt] = {}
    dropped: list[str] = []
    for r in active:
        for spec in r.options:
            if not evaluate(spec.when, ctx)[0]:
                continue
            value = facts.render(spec.value)
            reason = facts.render(spec.reason)
            if value == "":
                dropped.append(spec.name)
                continue
            prev = options.get(spec.name)
            if prev is None:
                options[spec.name] = _Opt(value, reason, r)
            elif prev.value != value:
                raise RecipeError(
                    f"Contradicting recipes: {spec.name} is set to {prev.value} by '{prev.recipe.name}' "
                    f"({prev.recipe.path}) and to {value} by '{r.name}' ({r.path}); both apply to this machine. "
                    "Recipes are not merged silently: narrow the 'when' of one of them."
                )
    return options, dropped


def omit_crashing_variants(plan: BuildPlan, version: str | None) -> None:
    """Binaries that travel (GGML_CPU_ALL_VARIANTS=ON): leave out the variants a known-bad row
    says crash wherever they load."""
    if not same_value(next((o.value for o in plan.options if o.name == "GGML_CPU_ALL_VARIANTS"), "OFF"), "ON"):
        return
    for row in known_bad.rows():
        if row.avoid_variants and row.affects_version(version):
            plan.omit_cpu_variants += [v for v in row.avoid_variants if v not in plan.omit_cpu_variants]
            plan.notes.append(
                f"The CPU variant(s) {', '.join(row.avoid_variants)} are built but not kept: "
                f"{row.title} (known-bad row {row.id}; {row.source_text}). Machines that would "
                "load them take the next best variant."
            )


def _note_dropped(plan: BuildPlan, dropped: list[str]) -> None:
    """An option no recipe could set (its value rendered empty) leaves llama.cpp's default: say so."""
    for name in dropped:
        if not any(o.name == name for o in plan.options):
            plan.notes.append(
                f"{name} is not set: this machine gives nothing to set it from, so llama.cpp's default applies."
            )


def _note_undeclared(plan: BuildPlan, source: Path | None) -> None:
    """Options the llama.cpp tree in ``source`` does not declare (an older or newer tree than the pin)."""
    if source is None or not (Path(source) / "CMakeLists.txt").is_file():
        return
    declared = scan_source(Path(source))
    for po in plan.options:
        if po.name.startswith(("GGML_", "LLAMA_")) and po.name not in declared.options:
            plan.notes.append(
                f"{po.name} (recipe {po.recipe}) is not an option of the llama.cpp in {source}: "
                "that tree is older or newer than the pinned one, and CMake will ignore it."
            )


# --------------------------------------------------------------------------- command lines


def shell_line(argv: list[str], env: dict[str, str] | None = None, *, exact: bool = False) -> str:
    """A line to paste into a POSIX shell. ``exact``: ``env -i`` first, so the command sees only
    ``env`` (what a build's --dry-run prints: the whole environment builddoctor would start it with)."""
    if exact:
        return shlex.join(["env", "-i", *(f"{k}={v}" for k, v in sorted((env or {}).items())), *argv])
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = shlex.join(argv)
    return f"{prefix} {line}" if prefix else line
