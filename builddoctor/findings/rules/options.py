"""The options area: the CMake options a build set, judged as `builddoctor flags` judges them and against builddoctor's own plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builddoctor.cmake_bool import same_value
from builddoctor.findings.areas import Context, rule, validator
from builddoctor.findings.rules.base import _name
from builddoctor.flagcheck import option_hits
from builddoctor.llama_options import isa_table, known_options
from builddoctor.profiles import BuildProfile, MachineProfile
from builddoctor.resolve import resolve


def _user_set(options: dict[str, str], source: Path | None) -> dict[str, str]:
    """The llama.cpp options a CMakeCache holds because the user asked for them.

    A cache records every option(), defaults included (GGML_RVV=ON sits in every x86 cache);
    only names llama.cpp no longer declares, and values that differ from a literal default,
    say what the user asked for.
    """
    known = known_options(source)
    out = {}
    for name, value in options.items():
        if not name.startswith(("LLAMA_", "GGML_")):
            continue
        spec = known.options.get(name)
        default = (spec or {}).get("default")
        if (
            spec is None
            or name in known.deprecated
            or default is not None
            and "${" not in default
            and not same_value(value, default)
        ):
            out[name] = value
    return out


@rule
def cmake_options(build, machine, ctx):
    """The options the user set, judged as `builddoctor flags` judges a command line (BD401-BD409)."""
    if not build.cmake_options:
        return None

    return option_hits(_user_set(build.cmake_options, ctx.source), machine, ctx.source, from_cache=True) or None


@rule
def plan_departure(build, machine, ctx):
    """Options the build set differently from builddoctor's own plan for this machine."""
    if not build.cmake_options or not build.is_llama_cpp:
        return None
    watched = set(ctx.catalogue["plan_watch"]["options"])
    goal = "portable" if same_value(build.cmake_options.get("GGML_CPU_ALL_VARIANTS", ""), "ON") else "native"
    plan = _plan(machine, goal, ctx)
    if plan is None:
        return None
    # with GGML_NATIVE=ON ggml ignores the instruction-set options (-march=native decides): a
    # difference there says nothing; GGML_NATIVE's own line says it
    isa = set(isa_options())
    ignored = isa if same_value(build.cmake_options.get("GGML_NATIVE", ""), "ON") else set()
    apart: list = []
    for opt in plan.options:
        if opt.name not in watched | isa or opt.name not in build.cmake_options or opt.name in ignored:
            continue
        value = build.cmake_options[opt.name]
        if not same_value(value, opt.value):
            apart.append((opt, value))
    # the instruction-set options that differ make one finding (one choice: which ISA), the rest one each
    groups = [[a] for a in apart if a[0].name not in isa] + (
        [[a for a in apart if a[0].name in isa]] if any(a[0].name in isa for a in apart) else []
    )
    hits = []
    for group in groups:
        hits.append(
            {
                "built": ", ".join(f"{o.name}={v}" for o, v in group),
                "planned": ", ".join(f"{o.name}={o.value}" for o, _ in group),
                "cmake": " ".join(f"-D{o.name}={o.value}" for o, _ in group),
                "reason": group[0][0].reason
                if len(group) == 1
                else f"builddoctor's plan spells out the instruction sets of the CPU it is for "
                f"({machine.cpu.model or machine.cpu.arch}), on exactly where the CPU has it (and a "
                "known-bad row leaves it in); the build sets these otherwise",
            }
        )
    return hits or None


def isa_options() -> dict:
    """llama.cpp's instruction-set options and the features each forces (data/llama_options_isa.toml)."""
    return isa_table()


def _plan(machine: MachineProfile, goal: str, ctx: Context):
    key = f"plan:{goal}"
    if key not in ctx.extra:
        try:
            ctx.extra[key] = resolve(machine, goal=goal, host=ctx.extra.get("host"))
        except Exception:  # noqa: BLE001 - no plan (e.g. broken recipes) means no comparison, not a failed check
            ctx.extra[key] = None
    return ctx.extra[key]


# --------------------------------------------------------------------------- the ok line


@validator("options")
def options_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    if not build.cmake_options:
        return None
    return {
        "options_ok": f"{len(build.cmake_options)} options in {_name(build.cmake_cache or 'CMakeCache.txt')}, "
        "none deprecated or unknown"
    }
