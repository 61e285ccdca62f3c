"""Recipes: declarative TOML files that say which cmake options llama.cpp needs, when, and why.

One file per backend or concern lives in ``recipes/`` (see docs/recipes.md for the format).
This module finds and loads them (each file read by :mod:`builddoctor.recipe_parse` into the
dataclasses of :mod:`builddoctor.recipe_schema`), checks them against each other, and evaluates
their ``when`` conditions on a :class:`~builddoctor.profiles.MachineProfile`. Composing them into
a plan is :mod:`builddoctor.resolve`'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builddoctor.platforms import canonical_arch
from builddoctor.profiles import MachineProfile
from builddoctor.recipe_parse import load_recipe, where
from builddoctor.recipe_schema import Recipe, RecipeError

# --------------------------------------------------------------------------- finding the files


def recipes_dir() -> Path:
    """BUILDDOCTOR_RECIPES, else the recipes shipped in the wheel, else <checkout>/recipes."""
    env = os.environ.get("BUILDDOCTOR_RECIPES")
    if env:
        return Path(env).expanduser()
    package = Path(__file__).resolve().parent
    shipped = package / "recipes"
    if shipped.is_dir():
        return shipped
    return package.parent / "recipes"


def load_recipes(directory: Path | None = None) -> list[Recipe]:
    """Every ``*.toml`` in the recipe folder, validated, sorted by file name."""
    directory = Path(directory) if directory is not None else recipes_dir()
    if not directory.is_dir():
        raise RecipeError(
            f"The recipe folder {directory} does not exist. Set BUILDDOCTOR_RECIPES to a folder "
            "of recipe files, or reinstall builddoctor."
        )
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise RecipeError(f"The recipe folder {directory} holds no *.toml recipe files.")
    key = (str(directory.resolve()), tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths))
    if key in _LOADED:  # one command resolves several plans (check compares each build with one)
        return _LOADED[key]
    recipes = [load_recipe(p) for p in paths]
    seen: dict[str, Recipe] = {}
    backends: dict[str, Recipe] = {}
    for r in recipes:
        if r.name in seen:
            raise RecipeError(
                f"{r.path}: recipe name '{r.name}' is also used by {seen[r.name].path.name}; names must be unique."
            )
        seen[r.name] = r
        if r.backend:
            if r.backend in backends:
                raise RecipeError(
                    f"{r.path}: backend '{r.backend}' is also defined by {backends[r.backend].path.name}."
                )
            backends[r.backend] = r
    for r in recipes:
        for other in r.conflicts:
            if other not in seen:
                raise RecipeError(
                    f"{where(r.path, 'conflicts')}: conflicts names '{other}', which is no recipe "
                    f"(known: {', '.join(sorted(seen))})."
                )
    _LOADED[key] = recipes
    return recipes


def no_network_downloads(directory: Path | None = None) -> list[str]:
    """The options that download at build time when ON: the no-network recipe's [data] downloads list."""
    for r in load_recipes(directory):
        if r.name == "no-network":
            return [str(n) for n in r.data.get("downloads", [])]
    return []


#: validated recipe folders, keyed by folder and each file's name, mtime and size (read-only after loading)
_LOADED: dict[tuple, list[Recipe]] = {}


# --------------------------------------------------------------------------- conditions


def norm_arch(arch: str) -> str:
    """One spelling per architecture (platforms.canonical_arch, from data/platforms.toml)."""
    return canonical_arch(arch)


def _as_list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


@dataclass
class Context:
    """What a condition is evaluated against."""

    machine: MachineProfile
    goal: str = "native"
    backend: str | None = None  # the chosen backend, once known
    host: bool = True  # the plan is for the machine that builds it (not a recorded profile)
    avoided: frozenset = frozenset()  # CPU features that known-bad rows take away (data/known_bad.toml)

    def features(self) -> set[str]:
        """The CPU's features that the CPU code may use: the known-bad ones left out."""
        return cpu_features(self.machine) - set(self.avoided)

    @property
    def cpu_code(self) -> str:
        """native: -march=native is exactly right; explicit: the ISA must be spelled out."""
        return "native" if self.host and not (set(self.avoided) & cpu_features(self.machine)) else "explicit"

    def tool_found(self, name: str) -> bool:
        return self.machine.tool(name).found


def evaluate(cond: dict[str, Any], ctx: Context) -> tuple[bool, str | None]:
    """(holds, the first key that failed)."""
    m = ctx.machine
    for key, want in cond.items():
        ok = True
        if key == "os":
            ok = m.os.lower() in [w.lower() for w in _as_list(want)]
        elif key == "arch":
            ok = norm_arch(m.arch or m.cpu.arch) in [norm_arch(w) for w in _as_list(want)]
        elif key == "cpu_vendor":
            ok = m.cpu.vendor.lower() in [w.lower() for w in _as_list(want)]
        elif key == "microarch":
            ok = m.cpu.microarch.lower() in [w.lower() for w in _as_list(want)]
        elif key == "features_all":
            ok = all(f.upper() in ctx.features() for f in want)
        elif key == "features_any":
            ok = any(f.upper() in ctx.features() for f in want)
        elif key == "features_none":
            ok = not any(f.upper() in ctx.features() for f in want)
        elif key == "cpu_code":
            ok = ctx.cpu_code in _as_list(want)
        elif key == "avoided_any":
            ok = any(f.upper() in set(ctx.avoided) & cpu_features(m) for f in want)
        elif key == "gpu_vendor":
            ok = any(g.vendor.lower() in [w.lower() for w in _as_list(want)] for g in m.usable_gpus())
        elif key == "gpu_api":
            apis = [w.lower() for w in _as_list(want)]
            ok = any(a.lower() in apis for g in m.usable_gpus() for a in g.apis)
        elif key == "gpu":
            ok = any(_gpu_matches(g, want) for g in m.usable_gpus())
        elif key == "gpu_emulated":
            ok = any(g.cpu_emulated for g in m.gpus) == want
        elif key == "tool":
            ok = all(ctx.tool_found(t) for t in _as_list(want))
        elif key == "tool_missing":
            ok = not any(ctx.tool_found(t) for t in _as_list(want))
        elif key == "goal":
            ok = ctx.goal in _as_list(want)
        elif key == "backend":
            ok = ctx.backend is not None and ctx.backend in _as_list(want)
        elif key == "any":
            ok = any(evaluate(sub, ctx)[0] for sub in want)
        elif key == "not":
            ok = not evaluate(want, ctx)[0]
        if not ok:
            return False, key
    return True, None


#: names for the same CPU feature (llama.cpp's CMake variant names and its runtime names)
FEATURE_ALIASES = (
    {"AVX512", "AVX512F"},
    {"SSE42", "SSE4_2"},
    {"FP16_VECTOR_ARITHMETIC", "FP16_VA"},
    {"MATMUL_INT8", "I8MM"},
)


def cpu_features(machine: MachineProfile) -> set[str]:
    feats = {f.upper() for f in machine.cpu.features}
    for group in FEATURE_ALIASES:
        if feats & group:
            feats |= group
    return feats


def _gpu_matches(g, want: dict[str, Any]) -> bool:
    name = g.name.lower()
    for k, v in want.items():
        if k == "vendor" and g.vendor.lower() not in [x.lower() for x in _as_list(v)]:
            return False
        if k == "api" and not set(a.lower() for a in g.apis) & {x.lower() for x in _as_list(v)}:
            return False
        if k == "name_any" and not any(x.lower() in name for x in _as_list(v)):
            return False
        if k == "name_none" and any(x.lower() in name for x in _as_list(v)):
            return False
        if k == "min_memory_mib" and (g.memory_mib or 0) < v:
            return False
    return True
