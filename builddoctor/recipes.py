"""Recipes: declarative TOML files that say which cmake options llama.cpp needs, when, and why.

One file per backend or concern lives in ``recipes/`` (see docs/recipes.md for the format).
This module finds, loads and validates them, and evaluates their ``when`` conditions on a
:class:`~builddoctor.profiles.MachineProfile`. Composing them into a plan is
:mod:`builddoctor.resolve`'s job.

Every problem in a recipe file is a :class:`RecipeError` naming the file and the line (TOML
syntax errors) or the key (schema errors), never a traceback.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor import errors
from builddoctor.profiles import MachineProfile
from builddoctor.tomlload import parse_toml


class RecipeError(errors.UserError):
    """A recipe file is empty, malformed, or contradicts another one."""

    exit_code = errors.USAGE


# --------------------------------------------------------------------------- vocabulary

KINDS = ("backend", "concern")
GOALS = ("native", "portable")
INSTALL_KEYS = ("debian", "fedora", "arch", "macos", "windows")
PREREQ_KINDS = ("tool", "library", "header", "driver")

#: placeholders a recipe may use in values and reasons ({name}); resolve.py computes them
PLACEHOLDERS = frozenset(
    {
        "cpu_model",
        "microarch",
        "cpu_variant",
        "cpu_isa",
        "cpu_features",
        "os_name",
        "gpu_names",
        "nvidia_gpus",
        "amd_gpus",
        "intel_gpus",
        "apple_gpus",
        "cuda_architectures",
        "cuda_arch_detail",
        "nvcc_version",
        "nvcc_path",
        "cuda_toolkit_root",
        "hip_targets",
        "rocm_clang",
        "rocm_path",
        "compiler",
        "emulated_note",
        "avoid_reason",
        "explicit_reason",
    }
)

#: condition keys (see docs/recipes.md); value: what the key accepts
CONDITION_KEYS = {
    "os": "str|list",  # linux, darwin, windows
    "arch": "str|list",  # x86_64, aarch64, riscv64, ppc64le, s390x (arm64 is read as aarch64)
    "cpu_vendor": "str|list",  # GenuineIntel, AuthenticAMD, Apple, ARM...
    "microarch": "str|list",
    "features_all": "list",  # CPU has every one (llama.cpp names: AVX2, AVX512, DOTPROD...)
    "features_any": "list",
    "features_none": "list",
    "cpu_code": "str|list",  # native (-march=native for the building machine) or explicit (ISA spelled out)
    "avoided_any": "list",  # a known-bad row takes one of these features of this CPU away
    "gpu_vendor": "str|list",  # a real (not CPU-emulated) GPU of this vendor is present
    "gpu_api": "str|list",  # a real GPU offers this API (cuda, hip, metal, vulkan, sycl)
    "gpu_emulated": "bool",  # a CPU-emulated GPU (llvmpipe...) is present / absent
    "gpu": "gpu-condition",  # one real GPU matches all of: vendor, api, name_any, name_none, min_memory_mib
    "tool": "str|list",  # all these tools were found
    "tool_missing": "str|list",  # none of these tools were found
    "goal": "str|list",  # native, portable
    "backend": "str|list",  # the backend chosen for this plan (concern recipes)
    "any": "list-of-conditions",  # at least one holds
    "not": "condition",  # it does not hold
}

_RECIPE_KEYS = {
    "name",
    "kind",
    "title",
    "summary",
    "backend",
    "priority",
    "switch",
    "toolkit",
    "when",
    "unmet",
    "preferred_because",
    "conflicts",
    "report_skip",
    "checks",
    "notes",
}
_TOP_KEYS = {"recipe", "option", "prerequisite", "env", "data"}
_OPTION_KEYS = {"name", "value", "reason", "when"}
_PREREQ_KEYS = {"name", "kind", "tools", "min_version", "max_version", "reason", "when", "install", "required"}
_GPU_KEYS = {"vendor", "api", "name_any", "name_none", "min_memory_mib"}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RECIPE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


# --------------------------------------------------------------------------- model


@dataclass
class OptionSpec:
    name: str
    value: str
    reason: str
    when: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrereqSpec:
    name: str
    kind: str = "tool"
    tools: list[str] = field(default_factory=list)  # alternatives looked up in machine.toolchains
    min_version: str | None = None
    max_version: str | None = None  # exclusive upper bound ("13" means: below 13)
    reason: str = ""
    when: dict[str, Any] = field(default_factory=dict)
    install: dict[str, str] = field(default_factory=dict)
    required: bool = True  # False: the build works without it, only without the feature it brings


@dataclass
class Recipe:
    name: str
    path: Path
    kind: str = "concern"
    title: str = ""
    summary: str = ""
    backend: str | None = None  # kind=backend: the --backend name it answers to
    priority: int = 0  # kind=backend: higher is preferred when several apply
    switch: str | None = None  # the option that turns this backend on (GGML_CUDA)
    toolkit: str | None = None  # the tool that compiles for it (nvcc): named when it is skipped
    when: dict[str, Any] = field(default_factory=dict)
    unmet: dict[str, str] = field(default_factory=dict)  # condition key -> sentence when it fails
    preferred_because: str = ""
    conflicts: list[str] = field(default_factory=list)
    report_skip: bool = False
    checks: list[str] = field(default_factory=list)  # named checks implemented in resolve.py
    notes: list[str] = field(default_factory=list)
    options: list[OptionSpec] = field(default_factory=list)
    prerequisites: list[PrereqSpec] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.title or self.name

    @property
    def file(self) -> str:
        return self.path.name


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
                    f"{_where(r.path, 'conflicts')}: conflicts names '{other}', which is no recipe "
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


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    from builddoctor.readinput import JSON_CAP, read_bytes

    try:
        raw, _ = read_bytes(path, "recipe file", cap=JSON_CAP, truncate=False)
    except errors.InputError as exc:
        raise RecipeError(exc.message) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: not UTF-8 text; a recipe file is TOML.") from None
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise RecipeError(
            f"{path}:1: empty recipe file: it needs at least a [recipe] table with a name (see docs/recipes.md)."
        )
    doc = parse_toml(text, path, RecipeError)
    return _parse(path, text, doc)


# --------------------------------------------------------------------------- schema


class _Schema:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text

    table: tuple[str, int] | None = None  # the [[option]] / [[prerequisite]] being read

    def fail(self, key: str, message: str) -> RecipeError:
        return RecipeError(f"{_where(self.path, key, self.text, self.table)}: {message}")

    def str_(self, table: dict, key: str, where: str, *, required: bool = False, default: str | None = None):
        if key not in table:
            if required:
                raise self.fail(where.split(".")[0] or key, f"'{where}' is missing a required key '{key}'.")
            return default
        value = table[key]
        if not isinstance(value, str):
            raise self.fail(key, f"'{where}.{key}' must be a string, not {type(value).__name__}.")
        return value

    def str_list(self, table: dict, key: str, where: str) -> list[str]:
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"'{where}.{key}' must be a string or a list of strings.")
        return list(value)

    def unknown(self, table: dict, allowed: set[str], where: str) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            import difflib

            hint = ""
            close = difflib.get_close_matches(extra[0], sorted(allowed), n=1)
            if close:
                hint = f" (did you mean '{close[0]}'?)"
            raise self.fail(
                extra[0], f"unknown key '{extra[0]}' in {where}{hint}; allowed: {', '.join(sorted(allowed))}."
            )

    def condition(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where.rsplit(".", 1)[-1], f"'{where}' must be a table of conditions.")
        for key, v in value.items():
            if key not in CONDITION_KEYS:
                import difflib

                close = difflib.get_close_matches(key, sorted(CONDITION_KEYS), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.fail(
                    key, f"unknown condition '{key}' in '{where}'{hint}; known: {', '.join(sorted(CONDITION_KEYS))}."
                )
            shape = CONDITION_KEYS[key]
            if shape == "bool":
                ok = isinstance(v, bool)
            elif shape == "list":
                ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
            elif shape == "str|list":
                ok = isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            elif shape == "list-of-conditions":
                ok = isinstance(v, list) and all(isinstance(x, dict) for x in v)
                if ok:
                    for i, sub in enumerate(v):
                        self.condition(sub, f"{where}.{key}[{i}]")
            elif shape == "gpu-condition":
                ok = (
                    isinstance(v, dict)
                    and set(v) <= _GPU_KEYS
                    and all(
                        isinstance(x, int)
                        if k == "min_memory_mib"
                        else (isinstance(x, str) or (isinstance(x, list) and all(isinstance(y, str) for y in x)))
                        for k, x in v.items()
                    )
                )
                if isinstance(v, dict) and not set(v) <= _GPU_KEYS:
                    bad = sorted(set(v) - _GPU_KEYS)[0]
                    raise self.fail(
                        bad, f"unknown GPU condition '{bad}' in '{where}.gpu'; known: {', '.join(sorted(_GPU_KEYS))}."
                    )
            else:  # condition
                ok = isinstance(v, dict)
                if ok:
                    self.condition(v, f"{where}.{key}")
            if not ok:
                raise self.fail(key, f"condition '{where}.{key}' must be a {shape}.")
            if key in ("goal",):
                for g in [v] if isinstance(v, str) else v:
                    if g not in GOALS:
                        raise self.fail(key, f"'{where}.goal' names '{g}'; goals are {', '.join(GOALS)}.")
        return dict(value)

    def template(self, value: str, key: str) -> str:
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise self.fail(key, f"'{key}' is not a valid template ({exc}); write {{{{ and }}}} for braces.") from None
        for n in names:
            if n not in PLACEHOLDERS:
                import difflib

                close = difflib.get_close_matches(n, sorted(PLACEHOLDERS), n=1)
                hint = f" (did you mean '{{{close[0]}}}'?)" if close else ""
                raise self.fail(
                    key, f"unknown placeholder '{{{n}}}' in '{key}'{hint}; known: {', '.join(sorted(PLACEHOLDERS))}."
                )
        return value


def _parse(path: Path, text: str, doc: dict[str, Any]) -> Recipe:
    s = _Schema(path, text)
    s.unknown(doc, _TOP_KEYS, "the file (top level)")
    head = doc.get("recipe")
    if not isinstance(head, dict):
        raise s.fail("recipe", "no [recipe] table: every recipe file starts with [recipe] and a name.")
    s.unknown(head, _RECIPE_KEYS, "[recipe]")
    name = s.str_(head, "name", "recipe", required=True)
    if not _RECIPE_NAME_RE.match(name):
        raise s.fail("name", f"recipe name '{name}' must be lower-case letters, digits, '-', '_' or '.'.")
    kind = s.str_(head, "kind", "recipe", default="concern")
    if kind not in KINDS:
        raise s.fail("kind", f"recipe kind '{kind}' must be one of {', '.join(KINDS)}.")
    backend = s.str_(head, "backend", "recipe")
    if kind == "backend" and not backend:
        raise s.fail("kind", "a recipe of kind 'backend' needs 'backend = \"<name>\"'.")
    if kind != "backend" and backend:
        raise s.fail("backend", "'backend' is only for recipes of kind 'backend'.")
    priority = head.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise s.fail("priority", "'recipe.priority' must be an integer.")
    report_skip = head.get("report_skip", kind == "backend")
    if not isinstance(report_skip, bool):
        raise s.fail("report_skip", "'recipe.report_skip' must be true or false.")
    unmet = head.get("unmet", {})
    if not isinstance(unmet, dict) or not all(isinstance(v, str) for v in unmet.values()):
        raise s.fail("unmet", "'recipe.unmet' must be a table of condition key = sentence.")
    for k, v in unmet.items():
        if k not in CONDITION_KEYS:
            raise s.fail(k, f"'recipe.unmet.{k}' names no condition key.")
        s.template(v, k)
    recipe = Recipe(
        name=name,
        path=path,
        kind=kind,
        title=s.str_(head, "title", "recipe", default="") or "",
        summary=s.str_(head, "summary", "recipe", default="") or "",
        backend=backend,
        priority=priority,
        switch=s.str_(head, "switch", "recipe"),
        toolkit=s.str_(head, "toolkit", "recipe"),
        when=s.condition(head.get("when", {}), "recipe.when"),
        unmet=dict(unmet),
        preferred_because=s.template(
            s.str_(head, "preferred_because", "recipe", default="") or "", "preferred_because"
        ),
        conflicts=s.str_list(head, "conflicts", "recipe"),
        report_skip=report_skip,
        checks=s.str_list(head, "checks", "recipe"),
        notes=[s.template(n, "notes") for n in s.str_list(head, "notes", "recipe")],
    )
    options = doc.get("option", [])
    if not isinstance(options, list):
        raise s.fail("option", "options are written as [[option]] tables.")
    for i, o in enumerate(options):
        where = f"option[{i}]"
        s.table = ("option", i)
        s.unknown(o, _OPTION_KEYS, f"[[option]] #{i + 1}")
        oname = s.str_(o, "name", where, required=True)
        if not _NAME_RE.match(oname):
            raise s.fail("name", f"'{oname}' in {where} is not a cmake variable name.")
        value = o.get("value")
        if isinstance(value, bool):
            value = "ON" if value else "OFF"
        if not isinstance(value, str):
            raise s.fail("value", f"{where} ({oname}) needs a string value (or true/false).")
        reason = s.str_(o, "reason", where)
        if not reason or not reason.strip():
            raise s.fail("reason", f"{where} ({oname}) needs a 'reason': one sentence a user can read.")
        recipe.options.append(
            OptionSpec(
                oname,
                s.template(value, "value"),
                s.template(reason, "reason"),
                s.condition(o.get("when", {}), f"{where}.when"),
            )
        )
    prereqs = doc.get("prerequisite", [])
    if not isinstance(prereqs, list):
        raise s.fail("prerequisite", "prerequisites are written as [[prerequisite]] tables.")
    for i, p in enumerate(prereqs):
        where = f"prerequisite[{i}]"
        s.table = ("prerequisite", i)
        s.unknown(p, _PREREQ_KEYS, f"[[prerequisite]] #{i + 1}")
        pname = s.str_(p, "name", where, required=True)
        pkind = s.str_(p, "kind", where, default="tool")
        if pkind not in PREREQ_KINDS:
            raise s.fail("kind", f"{where} ({pname}): kind '{pkind}' must be one of {', '.join(PREREQ_KINDS)}.")
        install = p.get("install", {})
        if not isinstance(install, dict) or not all(isinstance(v, str) for v in install.values()):
            raise s.fail("install", f"{where} ({pname}): 'install' must be a table of platform = command.")
        for k in install:
            if k not in INSTALL_KEYS:
                raise s.fail(k, f"{where} ({pname}): unknown install platform '{k}'; known: {', '.join(INSTALL_KEYS)}.")
        for vkey in ("min_version", "max_version"):
            v = p.get(vkey)
            if v is not None and (not isinstance(v, str) or not re.match(r"^\d+(\.\d+)*$", v)):
                raise s.fail(vkey, f"{where} ({pname}): '{vkey}' must be a version string like \"12.0\".")
        required = p.get("required", True)
        if not isinstance(required, bool):
            raise s.fail("required", f"{where} ({pname}): 'required' must be true or false.")
        recipe.prerequisites.append(
            PrereqSpec(
                name=pname,
                kind=pkind,
                tools=s.str_list(p, "tools", where) or [pname],
                min_version=p.get("min_version"),
                max_version=p.get("max_version"),
                reason=s.template(s.str_(p, "reason", where, default="") or "", "reason"),
                when=s.condition(p.get("when", {}), f"{where}.when"),
                install=dict(install),
                required=required,
            )
        )
    s.table = None
    env = doc.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise s.fail("env", '[env] must be a table of NAME = "value".')
    recipe.env = {k: s.template(v, k) for k, v in env.items()}
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise s.fail("data", "[data] must be a table.")
    recipe.data = data
    if kind == "backend" and recipe.switch and not any(o.name == recipe.switch for o in recipe.options):
        raise s.fail("switch", f"switch '{recipe.switch}' is not set by any [[option]] of this recipe.")
    return recipe


def _where(path: Path, key: str, text: str | None = None, table: tuple[str, int] | None = None) -> str:
    """``file:line`` of the line that defines ``key`` (a key or a [table]), else ``file (key 'k')``.

    Inside the ``index``-th ``[[table]]`` when ``table`` is given; a key missing there points at
    that table's header line.
    """
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = ""
    lines = text.splitlines()
    lo, hi, header = 0, len(lines), None
    if table is not None:
        name, index = table
        heads = [n for n, ln in enumerate(lines) if re.match(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]", ln)]
        if index < len(heads):
            lo = header = heads[index]
            nxt = [n for n in heads if n > lo]
            hi = nxt[0] if nxt else len(lines)
    pat = re.compile(rf"^\s*(\[\[?\s*{re.escape(key)}\s*\]\]?|{re.escape(key)}\s*=|.*[{{,]\s*{re.escape(key)}\s*=)")
    for n in range(lo, hi):
        if pat.match(lines[n]):
            return f"{path}:{n + 1} (key '{key}')"
    if header is not None:
        return f"{path}:{header + 1} (key '{key}')"
    return f"{path} (key '{key}')"


# --------------------------------------------------------------------------- conditions


def norm_arch(arch: str) -> str:
    """One spelling per architecture (platforms.canonical_arch, from data/platforms.toml)."""
    from builddoctor.platforms import canonical_arch

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
