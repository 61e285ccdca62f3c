"""Check a user's cmake options against the pinned llama.cpp (builddoctor/llama_options.py) and this
machine. What is wrong comes back as hits of the codes BD401-BD409, whose words and severities are
declared in findings/checks.toml (findings/flags.py turns them into Findings: flagcheck needs nothing
from findings/); ``python -m builddoctor.flagcheck regenerate [SOURCE]`` rewrites the
option snapshot.
"""

from __future__ import annotations

import difflib
import shlex
import sys
from pathlib import Path

from builddoctor import errors
from builddoctor.cmake_bool import is_off, is_on
from builddoctor.llama_options import STANDARD_NAMES, KnownOptions, isa_table, known_options, regenerate
from builddoctor.profiles import Hit, MachineProfile
from builddoctor.recipes import Context, cpu_features, evaluate, load_recipes, no_network_downloads
from builddoctor.resolve.facts import Facts, platform_key, unmet_reason

_PREFIXES = ("GGML_", "LLAMA_")


# --------------------------------------------------------------------------- parsing a command line


def parse_defines(text: str) -> dict[str, str]:
    """-DNAME=VALUE, -DNAME:TYPE=VALUE and -D NAME=VALUE from a shell-like command line."""
    try:
        argv = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise errors.InputError(f"Cannot read this command line: {exc} (check the quotes).") from None
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        body = None
        if tok == "-D" and i + 1 < len(argv):
            body = argv[i + 1]
            i += 1
        elif tok.startswith("-D") and len(tok) > 2:
            body = tok[2:]
        i += 1
        if body is None:
            continue
        if "=" in body:
            name, value = body.split("=", 1)
        else:
            name, value = body, "ON"  # cmake -DFOO means FOO= ; treat as a set switch
        name = name.split(":", 1)[0].strip()
        if name:
            out[name] = value
    return out


# --------------------------------------------------------------------------- checks


def option_hits(
    options: dict[str, str], machine: MachineProfile | None, source: Path | None, from_cache: bool
) -> list[Hit]:
    """What is wrong with these options (BD401-BD409 of checks.toml, whose words they fill)."""
    known = known_options(source)
    hits = _name_hits(options, known, from_cache)
    # what the options mean today: deprecated names count as their replacements
    effective = dict(options)
    for name, value in options.items():
        new = known.deprecated.get(name, {}).get("replacement")
        if new and new not in options:
            effective[new] = value
    hits += _contradictions(effective)
    if machine is not None:
        hits += _machine_checks(effective, machine)
    if not from_cache:
        hits += [
            Hit({"name": n, "value": options[n]}, code="BD409") for n in downloading_options() if is_on(options.get(n))
        ]
    return hits


def downloading_options() -> list[str]:
    """The llama.cpp options that download at build time when ON (recipes/no-network.toml's [downloads])."""
    return no_network_downloads()


def _name_hits(options: dict[str, str], known: KnownOptions, from_cache: bool) -> list[Hit]:
    """Deprecated, unknown and misspelt names (BD401-BD404)."""
    hits: list[Hit] = []
    names = sorted(known.options)
    judged = skipped = 0  # unknown names: a close-match search each, so bounded (200k in a forged cache)
    for name, value in options.items():
        if (
            judged >= MAX_UNKNOWN
            and (name.startswith(_PREFIXES) or not from_cache)
            and name not in known.deprecated
            and not known.known(name)
        ):
            skipped += 1
            continue
        d = known.deprecated.get(name)
        if d is not None:
            hits.append(_deprecated(name, value, d))
            continue
        if name.startswith("CMAKE_") and name not in known.options and name not in _CMAKE_COMMON:
            close = difflib.get_close_matches(name, _CMAKE_COMMON, n=1, cutoff=0.9)
            if close and not from_cache:
                hits.append(Hit({"name": name, "value": value, "close": close[0]}, code="BD404"))
                continue
        if known.known(name):
            continue
        if name.startswith(_PREFIXES) or not from_cache:
            judged += 1
        if name.startswith(_PREFIXES):
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
            hits.append(
                Hit(
                    {"name": name, "value": value, "close": close[0] if close else ""},
                    code="BD403",
                    variant="" if close else "no_match",
                )
            )
        elif not from_cache:
            pool = names + sorted(STANDARD_NAMES) + _CMAKE_COMMON
            close = difflib.get_close_matches(name, pool, n=1, cutoff=0.8)
            if close and close[0] != name:
                hits.append(Hit({"name": name, "value": value, "close": close[0]}, code="BD404"))
    if skipped:
        hits.append(
            Hit(
                {
                    "skipped": f"{skipped:,}",
                    "unknown": f"{judged + skipped:,}",
                    "count": f"{len(options):,}",
                    "limit": MAX_UNKNOWN,
                },
                code="BD403",
                variant="skipped",
            )
        )
    return hits


#: unknown names judged one by one (each a close-match search); beyond, one summary finding
MAX_UNKNOWN = 50

_CMAKE_COMMON = [
    "CMAKE_BUILD_TYPE",
    "CMAKE_C_COMPILER",
    "CMAKE_CXX_COMPILER",
    "CMAKE_CUDA_ARCHITECTURES",
    "CMAKE_CUDA_COMPILER",
    "CMAKE_INSTALL_PREFIX",
    "CMAKE_PREFIX_PATH",
    "CMAKE_HIP_ARCHITECTURES",
    "CMAKE_C_COMPILER_LAUNCHER",
    "CMAKE_CXX_COMPILER_LAUNCHER",
    "CMAKE_TOOLCHAIN_FILE",
    "CMAKE_OSX_ARCHITECTURES",
    "CMAKE_EXPORT_COMPILE_COMMANDS",
]


def _deprecated(name: str, value: str, d: dict[str, str]) -> Hit:
    new = d.get("replacement", "")
    values = {"name": name, "value": value, "new": new, "note": f" {d['note']}" if d.get("note") else ""}
    if new:
        return Hit(values, code="BD401", variant="fatal" if d.get("level") == "FATAL_ERROR" else "")
    return Hit(values, code="BD402")


def _contradictions(options: dict[str, str]) -> list[Hit]:
    """Options llama.cpp's CMake refuses together (BD408; the words are its variants)."""
    out = []
    if is_on(options.get("GGML_CPU_ALL_VARIANTS")) and not is_on(options.get("GGML_BACKEND_DL")):
        out.append(Hit(code="BD408"))
    if is_on(options.get("GGML_CPU_ALL_VARIANTS")) and options.get("GGML_CPU_ARM_ARCH"):
        out.append(Hit(code="BD408", variant="arm_arch"))
    if is_on(options.get("GGML_BACKEND_DL")) and is_off(options.get("BUILD_SHARED_LIBS", "ON")):
        out.append(Hit(code="BD408", variant="static"))
    return out


def _machine_checks(options: dict[str, str], machine: MachineProfile) -> list[Hit]:
    out: list[Hit] = []
    recipes = load_recipes()
    facts = Facts(machine, {r.name: r for r in recipes})
    ctx = Context(machine)
    for r in recipes:
        if r.kind != "backend" or not r.switch or not is_on(options.get(r.switch)):
            continue
        values = {"switch": r.switch, "value": options[r.switch], "label": r.label, "toolkit": r.toolkit}
        if r.toolkit and not machine.tool(r.toolkit).found:
            install = _install_hint(r, r.toolkit, machine) or f"install {r.toolkit}, or drop -D{r.switch}=ON"
            out.append(Hit({**values, "install": install}, code="BD405"))
        ok, key = evaluate(r.when, ctx)
        if not ok:
            out.append(Hit({**values, "unmet": unmet_reason(r, key, facts, machine)}, code="BD406"))
    feats = cpu_features(machine)
    native_on = is_on(options.get("GGML_NATIVE"))
    # with all CPU variants the per-ISA switches are not used (each variant sets its own)
    all_variants = is_on(options.get("GGML_CPU_ALL_VARIANTS"))
    for opt, needs in isa_table().items():
        if not all_variants and is_on(options.get(opt)) and not any(f in feats for f in needs):
            out.append(
                Hit(
                    {"option": opt, "value": options[opt], "feature": needs[0], "cpu": machine.cpu.model or "this CPU"},
                    code="BD407",
                    variant="native_on" if native_on else "",
                )
            )
    return out


def _install_hint(r, tool: str, machine: MachineProfile) -> str:
    for p in r.prerequisites:
        if p.name == tool or tool in p.tools:
            keys = platform_key(machine)
            cmds = [p.install[k] for k in keys if k in p.install]
            if cmds:
                return cmds[0]
    return ""


# --------------------------------------------------------------------------- script


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "regenerate":
        print("usage: python -m builddoctor.flagcheck regenerate [SOURCE]", file=sys.stderr)
        return 2
    out = regenerate(Path(argv[1]) if len(argv) > 1 else None)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
