"""Reading one recipe file: the TOML checked against the format (docs/recipes.md), key by key, into a
:class:`~builddoctor.recipe_schema.Recipe`.

Every problem is a :class:`~builddoctor.recipe_schema.RecipeError` naming the file and the line
(TOML syntax errors) or the key (schema errors), never a traceback.
"""

from __future__ import annotations

import difflib
import re
import string
from pathlib import Path
from typing import Any

from builddoctor import errors
from builddoctor.readinput import JSON_CAP, read_bytes
from builddoctor.recipe_schema import (
    CONDITION_KEYS,
    GOALS,
    INSTALL_KEYS,
    KINDS,
    PLACEHOLDERS,
    PREREQ_KINDS,
    OptionSpec,
    PrereqSpec,
    Recipe,
    RecipeError,
)
from builddoctor.tomlload import parse_toml

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


def load_recipe(path: Path) -> Recipe:
    """One recipe file, read (within the size cap), decoded and checked."""
    path = Path(path)
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
    return parse(path, text, doc)


# --------------------------------------------------------------------------- schema


class _Schema:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text

    table: tuple[str, int] | None = None  # the [[option]] / [[prerequisite]] being read

    def fail(self, key: str, message: str) -> RecipeError:
        return RecipeError(f"{where(self.path, key, self.text, self.table)}: {message}")

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
                close = difflib.get_close_matches(n, sorted(PLACEHOLDERS), n=1)
                hint = f" (did you mean '{{{close[0]}}}'?)" if close else ""
                raise self.fail(
                    key, f"unknown placeholder '{{{n}}}' in '{key}'{hint}; known: {', '.join(sorted(PLACEHOLDERS))}."
                )
        return value


def parse(path: Path, text: str, doc: dict[str, Any]) -> Recipe:
    """The Recipe a parsed TOML document describes (``text``: its source, for line numbers)."""
    s = _Schema(path, text)
    s.unknown(doc, _TOP_KEYS, "the file (top level)")
    recipe = _head(s, path, doc)
    recipe.options = [_option(s, o, i) for i, o in enumerate(_tables(s, doc, "option"))]
    recipe.prerequisites = [_prerequisite(s, p, i) for i, p in enumerate(_tables(s, doc, "prerequisite"))]
    s.table = None
    env = doc.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise s.fail("env", '[env] must be a table of NAME = "value".')
    recipe.env = {k: s.template(v, k) for k, v in env.items()}
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise s.fail("data", "[data] must be a table.")
    recipe.data = data
    if recipe.kind == "backend" and recipe.switch and not any(o.name == recipe.switch for o in recipe.options):
        raise s.fail("switch", f"switch '{recipe.switch}' is not set by any [[option]] of this recipe.")
    return recipe


def _head(s: _Schema, path: Path, doc: dict[str, Any]) -> Recipe:
    """The [recipe] table: the recipe without its options, prerequisites, env and data."""
    head = doc.get("recipe")
    if not isinstance(head, dict):
        raise s.fail("recipe", "no [recipe] table: every recipe file starts with [recipe] and a name.")
    s.unknown(head, _RECIPE_KEYS, "[recipe]")
    name, kind, backend = _identity(s, head)
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
    return Recipe(
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


def _identity(s: _Schema, head: dict[str, Any]) -> tuple[str, str, str | None]:
    """name, kind and backend of [recipe], which decide what else the file must hold."""
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
    return name, kind, backend


_TABLE_FORM = {
    "option": "options are written as [[option]] tables.",
    "prerequisite": "prerequisites are written as [[prerequisite]] tables.",
}


def _tables(s: _Schema, doc: dict[str, Any], key: str) -> list[Any]:
    """The [[key]] array of tables (an empty list when the file has none)."""
    tables = doc.get(key, [])
    if not isinstance(tables, list):
        raise s.fail(key, _TABLE_FORM[key])
    return tables


def _option(s: _Schema, o: Any, i: int) -> OptionSpec:
    """The i-th [[option]]: a cmake variable name, a string (or boolean) value and a reason."""
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
    return OptionSpec(
        oname,
        s.template(value, "value"),
        s.template(reason, "reason"),
        s.condition(o.get("when", {}), f"{where}.when"),
    )


def _prerequisite(s: _Schema, p: Any, i: int) -> PrereqSpec:
    """The i-th [[prerequisite]]: a tool, library, header or driver, its bounds and install commands."""
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
    return PrereqSpec(
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


def where(path: Path, key: str, text: str | None = None, table: tuple[str, int] | None = None) -> str:
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
