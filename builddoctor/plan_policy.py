"""What a build plan may ask for, checked before anything runs (data/plan_policy.toml).

A plan is carried between machines, so it is data, not code: llama.cpp's declared options, a few
CMake variables with validated values, a fixed list of environment variables. A compiler is a
bare name found on PATH, or an absolute path that builddoctor's own tool search finds here or
that the user confirmed (``--allow-path``). Every other key is refused, by name, so that no
launcher, script, shell fragment or library from a plan file ever runs.

``check_plan`` takes the parsed plan (a dict, as read from JSON) and returns the refusals;
``enforce`` raises them as one ``PlanRefused`` paragraph.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builddoctor import cuda_pip, errors, paths
from builddoctor.llama_options import KnownOptions, known_options
from builddoctor.platforms import system_name
from builddoctor.probe import toolchain
from builddoctor.profiles import Serializable
from builddoctor.tomlload import data_file

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass
class Refusal(Serializable):
    """One key of a plan that builddoctor will not pass on, and why."""

    key: str  # options.CMAKE_C_COMPILER_LAUNCHER, env.LD_PRELOAD, targets[0]
    value: str
    reason: str


class PlanRefused(errors.InputError):
    """A plan that asks for something outside the policy: nothing was run."""

    def __init__(self, where: str, refusals: list[Refusal]):
        self.refusals = refusals
        by_reason: dict[str, list[str]] = {}
        for r in refusals:
            by_reason.setdefault(r.reason, []).append(f"{r.key}={_show(r.value)}")
        parts = "; ".join(
            (", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")) + f": {reason}"
            for reason, keys in by_reason.items()
        )
        super().__init__(
            f"{where} asks for what builddoctor does not run: {parts}. Nothing was run or written. A plan "
            "may set llama.cpp's own options, a few CMake variables and compilers by name (README: "
            '"What a plan may contain"); an absolute compiler or toolkit path must be one builddoctor '
            "finds on this machine or one you confirm with --allow-path PATH."
        )


def _show(value: str, limit: int = 60) -> str:
    """The value as a repr without control characters, cut: it is foreign text."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


@functools.lru_cache(maxsize=1)
def policy() -> dict[str, Any]:
    return data_file("plan_policy.toml")


def _declared(source: Path | None):
    """The options llama.cpp declares: the pinned tree's (the snapshot), plus, for another checkout,
    what a scan of its CMake files finds (its declarations win)."""
    pinned = known_options(None)
    if source is not None:
        try:
            src = Path(source).resolve()
            if src != paths.vendor_dir().resolve() and (src / "CMakeLists.txt").is_file():
                other = known_options(src)
                return KnownOptions(
                    options={**pinned.options, **other.options}, deprecated={**pinned.deprecated, **other.deprecated}
                )
        except (OSError, UnicodeError, errors.UserError):
            pass
    return pinned


# --------------------------------------------------------------------------- trusted paths


@functools.lru_cache(maxsize=4)
def _tool_roots(system: str) -> tuple[str, ...]:
    """Install folders of the tools builddoctor's own search knows (data/toolchains.toml ``dirs``:
    /usr/local/cuda-*, /opt/rocm*...), as they exist on this machine; ``bin`` stands for its parent."""
    roots = set()
    for spec in toolchain.specs(system).values():
        for pattern in spec.get("dirs", []):
            for d in glob.glob(pattern):
                p = Path(d)
                if p.is_dir():
                    roots.add(os.path.realpath(p.parent if p.name == "bin" else p))
    if cuda_pip.cache_root().is_dir():  # toolkits builddoctor merged itself (build --cuda-from-pip)
        roots.add(os.path.realpath(cuda_pip.cache_root()))
    return tuple(sorted(roots))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def trusted_path(path: str, allowed: Iterable[str] = (), *, search_path: str | None = None) -> bool:
    """An absolute path builddoctor may hand to the build: one the user confirmed (or under a folder
    they confirmed), what PATH gives for its own name, or inside a toolkit folder builddoctor's
    tool search knows."""
    real = os.path.realpath(path)
    for a in allowed:
        if a and _under(real, os.path.realpath(os.path.expanduser(a))):
            return True
    which = shutil.which(os.path.basename(path), path=search_path)
    if which and os.path.realpath(which) == real:
        return True
    return any(_under(real, root) for root in _tool_roots(system_name()))


# --------------------------------------------------------------------------- rules


@dataclass
class _Ctx:
    here: bool
    allowed: tuple[str, ...]
    search_path: str | None


def _abs_path_problem(value: str) -> str:
    """Why ``value`` is not a clean absolute path ('' when it is)."""
    if not re.fullmatch(policy()["word"], value):
        return "a path with characters a plan may not hold (whitespace, quotes, $ ` ; | & < > ( ) and the like)"
    if not os.path.isabs(value):
        return "not an absolute path"
    if any(part in ("..", ".") for part in Path(value).parts) or "//" in value:
        return "not a normalized path (no '.', '..' or '//')"
    return ""


def _rule_compiler(value: str, ctx: _Ctx) -> str:
    names = policy()["compiler"]["names"]
    base = os.path.basename(value)
    if not re.fullmatch(names, base):
        return "not a compiler name (cc, gcc, clang, icx, nvcc, hipcc... optionally with a target triplet and version)"
    if "/" not in value:
        return ""  # looked up on PATH by the build; a missing one is the toolchain check's (exit 4)
    return _path_problem(value, ctx, folder=False)


def _rule_folder(value: str, ctx: _Ctx) -> str:
    return _path_problem(value, ctx, folder=True)


def _path_problem(value: str, ctx: _Ctx, *, folder: bool) -> str:
    """An absolute compiler or toolkit path: clean in form; here, present and trusted."""
    why = _abs_path_problem(value)
    if why or not ctx.here:
        return why
    what = "folder" if folder else "file"
    if not (os.path.isdir(value) if folder else os.path.isfile(value)):
        return f"no such {what} on this machine"
    if not trusted_path(value, ctx.allowed, search_path=ctx.search_path):
        return f"a {what} builddoctor did not find itself; confirm it with --allow-path {value}"
    return ""


def _rule_flags(value: str, ctx: _Ctx) -> str:
    fl = policy()["flags"]
    for flag in value.split(" "):
        if not flag:
            continue
        refused = next((r for r in fl["refused"] if flag.startswith(r["prefix"])), None)
        if refused is not None:
            return f"the flag {flag!r} {refused['reason']}"
        if not any(re.fullmatch(a["pattern"], flag) for a in fl["allowed"]):
            return (
                f"the flag {flag!r} is not one a plan may pass (machine, optimization, debug, -f and -W "
                "switches without file names)"
            )
    return ""


def _check_value(rule: dict[str, Any], value: str, ctx: _Ctx) -> str:
    kind = rule.get("rule", "refuse")
    pol = policy()
    if kind == "refuse":
        return rule.get("reason", "not allowed in a plan")
    if kind == "bool":
        return "" if re.fullmatch(pol["bool"], value) else "must be ON or OFF"
    if kind == "word":
        return (
            ""
            if re.fullmatch(pol["word"], value)
            else ("holds characters a value may not (whitespace, quotes, $ ` ; | & < > ( ) and the like)")
        )
    if kind == "pattern":
        return "" if re.fullmatch(rule["pattern"], value) else f"must be {rule.get('reason', 'of the form allowed')}"
    if kind == "compiler":
        return _rule_compiler(value, ctx)
    if kind == "folder":
        return _rule_folder(value, ctx)
    if kind == "flags":
        return _rule_flags(value, ctx)
    return "not allowed in a plan"


def _option_rule(name: str, known) -> dict[str, Any]:
    pol = policy()
    if name in pol["cmake"]:
        return pol["cmake"][name]
    if name in known.options:
        if name in pol["llama"]:
            return pol["llama"][name]
        kind = known.options[name].get("kind", "variable")
        return pol["kinds"].get(kind, {"rule": "refuse", "reason": f"a {kind} declaration"})
    if name in known.deprecated:
        repl = known.deprecated[name].get("replacement", "")
        return {"rule": "refuse", "reason": "a deprecated llama.cpp option" + (f" (use {repl})" if repl else "")}
    return {
        "rule": "refuse",
        "reason": "not an option llama.cpp declares, nor one of the CMake variables a plan may set ("
        + ", ".join(sorted(pol["cmake"]))
        + ")",
    }


def check_plan(
    data: Any,
    *,
    source: Path | None = None,
    allowed_paths: Iterable[str] = (),
    here: bool = True,
    search_path: str | None = None,
) -> list[Refusal]:
    """The refusals for a parsed plan (``BuildPlan.to_dict()`` or the JSON of a plan file).

    ``here``: the plan is about to be built on this machine, so names are looked up on PATH
    (``search_path``, default: the process's) and absolute paths must be trusted here; False (a
    plan saved for another machine) checks only the form. Fields of the wrong type are left to the
    schema check (``BuildPlan.from_dict``).
    """
    if not isinstance(data, dict):
        return []
    ctx = _Ctx(here=here, allowed=tuple(str(a) for a in allowed_paths), search_path=search_path)
    return [
        *_option_refusals(data.get("options"), source, ctx),
        *_env_refusals(data.get("env"), ctx),
        *_list_refusals(data),
    ]


def _option_refusals(options: Any, source: Path | None, ctx: _Ctx) -> list[Refusal]:
    """The plan's options: a CMake variable name, a clean value of bounded length, and what the
    policy allows for that name (llama.cpp's declared options are read only when needed)."""
    pol = policy()
    out: list[Refusal] = []
    known = None
    for i, o in enumerate(options if isinstance(options, list) else []):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str) or not isinstance(o.get("value"), str):
            continue
        name, value = o["name"], o["value"]
        key = f"options.{name}" if len(name) <= 200 and re.fullmatch(pol["name"], name) else f"options[{i}].name"
        if key != f"options.{name}":
            out.append(Refusal(key, name, "not a CMake variable name"))
            continue
        why = _raw_value_problem(value)
        if not why:
            if known is None:
                known = _declared(source)
            why = _check_value(_option_rule(name, known), value, ctx)
        if why:
            out.append(Refusal(key, value, why))
    return out


def _raw_value_problem(value: str) -> str:
    """What no value may hold, whatever its key: control characters, or more than max_length."""
    if _CONTROL.search(value):
        return "holds control characters"
    if len(value) > policy()["max_length"]:
        return f"longer than {policy()['max_length']} characters"
    return ""


def _env_refusals(env: Any, ctx: _Ctx) -> list[Refusal]:
    """The plan's environment: only the variables the policy names, each with its rule."""
    pol = policy()
    out: list[Refusal] = []
    for name, value in env.items() if isinstance(env, dict) else []:
        if not isinstance(value, str):
            continue
        key = f"env.{name}" if len(name) <= 200 and re.fullmatch(pol["name"], name) else f"env.{_show(name)}"
        if name not in pol["env"]:
            why = "not one of the environment variables a plan may set (" + ", ".join(pol["env"]) + ")"
        else:
            why = _raw_value_problem(value) or _check_value(pol["env"][name], value, ctx)
        if why:
            out.append(Refusal(key, value, why))
    return out


def _list_refusals(data: dict[str, Any]) -> list[Refusal]:
    """The plan's targets and omitted CPU variants: names of the form the policy gives."""
    pol = policy()
    out: list[Refusal] = []
    for field, table, what in (
        ("targets", "targets", "a llama.cpp program target (llama-NAME)"),
        ("omit_cpu_variants", "cpu_variants", "a CPU variant name (lowercase word)"),
    ):
        items = data.get(field)
        for i, v in enumerate(items if isinstance(items, list) else []):
            if isinstance(v, str) and not re.fullmatch(pol[table]["pattern"], v):
                out.append(Refusal(f"{field}[{i}]", v, f"must be {what}"))
    return out


def enforce(data: Any, *, where: str, **kw) -> None:
    """``check_plan``, raising its refusals as one paragraph."""
    refusals = check_plan(data, **kw)
    if refusals:
        raise PlanRefused(where, refusals)
