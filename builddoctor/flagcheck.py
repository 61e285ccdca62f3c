"""Check a user's cmake options against the pinned llama.cpp and this machine.

Known options come from the pinned source's ``option()``, ``set(... CACHE ...)`` declarations and
the switches its CMake reads (``if (GGML_...)``), shipped as a snapshot
(``builddoctor/data/llama_options.toml``) so that ``builddoctor flags`` works without the source
tree; ``python -m builddoctor.flagcheck regenerate [SOURCE]`` rewrites it. Renamed and removed
options that today's source no longer lists are in ``data/llama_options_deprecated.toml``;
which ``GGML_<ISA>`` option needs which CPU feature is in ``data/llama_options_isa.toml``.

Finding codes (stable):
  BD401 deprecated option (renamed)            BD402 removed option (ignored today)
  BD403 unknown llama.cpp option               BD404 not a known cmake variable (near miss)
  BD405 backend on, its toolkit missing        BD406 backend on, no device for it here
  BD407 instruction set forced on, CPU lacks it BD408 options that contradict each other
  BD409 option fetches from the network at build time
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from builddoctor import errors
from builddoctor._buildplan import is_off, is_on
from builddoctor.findings.catalogue import Hit, finding
from builddoctor.paths import DATA_DIR
from builddoctor.profiles import Finding, MachineProfile
from builddoctor.readinput import read_text
from builddoctor.tomlload import data_file


SNAPSHOT = DATA_DIR / "llama_options.toml"
DEPRECATED = DATA_DIR / "llama_options_deprecated.toml"
ISA = DATA_DIR / "llama_options_isa.toml"

#: CMake's own variables and those of the packages llama.cpp finds: known, never flagged
STANDARD_PREFIXES = ("CMAKE_", "CPACK_", "CTEST_", "OpenMP_", "CUDAToolkit_", "CUDA_", "Vulkan_", "BLAS_", "BLA_",
                     "OPENSSL_", "OpenSSL_", "HIP_", "ROCM_", "SYCL_", "MKL_", "FETCHCONTENT_", "Python3_", "ZLIB_")
STANDARD_NAMES = {"BUILD_SHARED_LIBS", "BUILD_TESTING", "GPU_TARGETS", "AMDGPU_TARGETS", "CUDAToolkit_ROOT",
                  "OpenBLAS_ROOT", "Threads_ROOT", "LLAMA_BUILD_COMMIT", "LLAMA_BUILD_NUMBER"}
_PREFIXES = ("GGML_", "LLAMA_")


# --------------------------------------------------------------------------- scanning the source


@dataclass
class KnownOptions:
    options: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> kind, default, help, file
    deprecated: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> replacement, level, file

    def known(self, name: str) -> bool:
        return name in self.options or name in STANDARD_NAMES or name.startswith(STANDARD_PREFIXES)


_SCAN_EXCLUDE = ("examples/", "pocs/", "tests/", "docs/", "scripts/", "cmake/", "ci/", "gguf-py/", "benches/")
_OPTION_RE = re.compile(r'\boption\s*\(\s*([A-Za-z_]\w*)\s+"((?:[^"\\]|\\.)*)"\s*([^)]*?)\s*\)', re.S)
_CACHE_RE = re.compile(r'\bset\s*\(\s*([A-Za-z_]\w*)\s+((?:"(?:[^"\\]|\\.)*"|[^()"])*?)\s*\bCACHE\s+(\w+)'
                       r'(?:\s+"((?:[^"\\]|\\.)*)")?', re.S)
_DEPR_RE = re.compile(r'\b\w+_option_depr\s*\(\s*(WARNING|FATAL_ERROR|DEPRECATION)\s+([A-Za-z_]\w*)'
                      r'(?:\s+([A-Za-z_]\w*))?\s*\)')
_DEPR_MSG_RE = re.compile(r'"([A-Z][A-Z0-9_]+) is deprecated, use ([A-Z][A-Z0-9_]+) instead"')
_IF_RE = re.compile(r'\b(?:if|elseif)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)')
_ADD_BACKEND_RE = re.compile(r'\bggml_add_backend\s*\(\s*([A-Za-z0-9_]+)\s*\)')
_VAR_RE = re.compile(r'\b((?:GGML|LLAMA)_[A-Z0-9_]+)\b')


def _strip_comments(text: str) -> str:
    out = []
    for line in text.splitlines():
        in_str = False
        for i, ch in enumerate(line):
            if ch == '"' and (i == 0 or line[i - 1] != "\\"):
                in_str = not in_str
            elif ch == "#" and not in_str:
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def _cmake_files(source: Path) -> list[Path]:
    files = []
    for p in sorted(source.rglob("CMakeLists.txt")):
        rel = p.relative_to(source).as_posix()
        if rel.startswith(_SCAN_EXCLUDE) or "/examples/" in rel or "/tests/" in rel:
            continue
        files.append(p)
    return files


def scan_source(source: Path) -> KnownOptions:
    """Every option the pinned llama.cpp declares or reads, and its deprecated names."""
    source = Path(source)
    if not (source / "CMakeLists.txt").is_file():
        raise errors.SourceError(f"{source} is not a llama.cpp source tree (no CMakeLists.txt).")
    known = KnownOptions()
    referenced: dict[str, str] = {}
    for path in _cmake_files(source):
        rel = path.relative_to(source).as_posix()
        text = _strip_comments(read_text(path, "CMakeLists.txt", errors="replace").text)
        for m in _OPTION_RE.finditer(text):
            known.options.setdefault(m.group(1), {"kind": "option", "default": m.group(3).strip(),
                                                  "help": m.group(2), "file": rel})
        for m in _CACHE_RE.finditer(text):
            name = m.group(1)
            if name not in known.options:
                known.options[name] = {"kind": f"cache {m.group(3).upper()}", "default": m.group(2).strip().strip('"'),
                                       "help": m.group(4) or "", "file": rel}
        for m in _DEPR_RE.finditer(text):
            known.deprecated.setdefault(m.group(2), {"replacement": m.group(3) or "", "level": m.group(1),
                                                     "file": rel})
        for m in _DEPR_MSG_RE.finditer(text):
            known.deprecated.setdefault(m.group(1), {"replacement": m.group(2), "level": "DEPRECATION", "file": rel})
        for m in _IF_RE.finditer(text):
            for v in _VAR_RE.findall(m.group(1)):
                referenced.setdefault(v, rel)
        for m in _ADD_BACKEND_RE.finditer(text):  # ggml_add_backend(CANN) reads GGML_CANN
            referenced.setdefault(f"GGML_{m.group(1).upper()}", rel)
    for name, rel in referenced.items():
        if name not in known.options and name not in known.deprecated:
            known.options[name] = {"kind": "variable", "default": "", "help": "read by llama.cpp's CMake, not declared",
                                   "file": rel}
    for name in known.deprecated:
        known.options.pop(name, None)
    return known


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def render_snapshot(known: KnownOptions, commit: str = "") -> str:
    lines = ["# Options of the pinned llama.cpp, read from its CMake files. Generated: do not edit.",
             "# Regenerate with: python -m builddoctor.flagcheck regenerate [SOURCE]", ""]
    lines.append(f"source_commit = {_q(commit)}")
    lines.append("")
    for name in sorted(known.options):
        o = known.options[name]
        lines.append(f"[options.{name}]")
        for k in ("kind", "default", "help", "file"):
            lines.append(f"{k} = {_q(o.get(k, ''))}")
        lines.append("")
    for name in sorted(known.deprecated):
        d = known.deprecated[name]
        lines.append(f"[deprecated.{name}]")
        for k in ("replacement", "level", "file"):
            lines.append(f"{k} = {_q(d.get(k, ''))}")
        lines.append("")
    return "\n".join(lines)


def regenerate(source: Path | None = None, out: Path = SNAPSHOT) -> Path:
    from builddoctor.paths import vendor_dir

    source = Path(source) if source else vendor_dir()
    from builddoctor.source import load_pin

    commit = load_pin().short_commit
    out.write_text(render_snapshot(scan_source(source), commit), encoding="utf-8")
    return out


@lru_cache(maxsize=4)
def _scan_cached(source: str) -> KnownOptions:
    return scan_source(Path(source))


@lru_cache(maxsize=4)
def _snapshot() -> KnownOptions:
    doc = data_file(SNAPSHOT.name)
    return KnownOptions(options=dict(doc.get("options", {})), deprecated=dict(doc.get("deprecated", {})))


@lru_cache(maxsize=1)
def deprecated_table() -> dict[str, dict[str, str]]:
    """Old names llama.cpp no longer lists: name -> replacement ('' when removed), note."""
    return dict(data_file(DEPRECATED.name).get("deprecated", {}))


@lru_cache(maxsize=1)
def isa_table() -> dict[str, list[str]]:
    return {k: v["features"] for k, v in data_file(ISA.name).get("isa", {}).items()}


def known_options(source: Path | None = None) -> KnownOptions:
    """From ``source`` when given, else the shipped snapshot; plus the historic deprecated table."""
    base = _scan_cached(str(Path(source).resolve())) if source is not None else _snapshot()
    merged = KnownOptions(options=dict(base.options), deprecated={})
    for name, d in deprecated_table().items():
        merged.deprecated[name] = {"replacement": d.get("replacement", ""), "level": "WARNING",
                                   "note": d.get("note", ""), "file": "builddoctor/data/llama_options_deprecated.toml"}
    for name, d in base.deprecated.items():
        note = merged.deprecated.get(name, {}).get("note", "")
        merged.deprecated[name] = dict(d, note=note)
    return merged


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


def check_flags(text: str, machine: MachineProfile | None, source: Path | None = None) -> list[Finding]:
    """Findings for a user's cmake command line (or bare -D options)."""
    options = parse_defines(text)
    if not options:
        raise errors.InputError("No -D options found in this command line: pass e.g. "
                                "\"cmake -B build -DGGML_CUDA=ON\".")
    return [finding(h) for h in option_hits(options, machine, source, from_cache=False)]


def check_cmake_options(options: dict[str, str], machine: MachineProfile | None,
                        source: Path | None = None) -> list[Finding]:
    """Findings for a build's CMakeCache options (only llama.cpp-prefixed names are judged unknown)."""
    return [finding(h) for h in option_hits(options, machine, source, from_cache=True)]


def option_hits(options: dict[str, str], machine: MachineProfile | None, source: Path | None,
                from_cache: bool) -> list[Hit]:
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
        hits += [Hit({"name": n, "value": options[n]}, code="BD409") for n in downloading_options()
                 if is_on(options.get(n))]
    return hits


def downloading_options() -> list[str]:
    """The llama.cpp options that download at build time when ON (recipes/no-network.toml's [downloads])."""
    from builddoctor.recipes import no_network_downloads

    return no_network_downloads()


def _name_hits(options: dict[str, str], known: KnownOptions, from_cache: bool) -> list[Hit]:
    """Deprecated, unknown and misspelt names (BD401-BD404)."""
    hits: list[Hit] = []
    names = sorted(known.options)
    judged = skipped = 0  # unknown names: a close-match search each, so bounded (200k in a forged cache)
    for name, value in options.items():
        if judged >= MAX_UNKNOWN and (name.startswith(_PREFIXES) or not from_cache) \
                and name not in known.deprecated and not known.known(name):
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
            hits.append(Hit({"name": name, "value": value, "close": close[0] if close else ""}, code="BD403",
                            variant="" if close else "no_match"))
        elif not from_cache:
            pool = names + sorted(STANDARD_NAMES) + _CMAKE_COMMON
            close = difflib.get_close_matches(name, pool, n=1, cutoff=0.8)
            if close and close[0] != name:
                hits.append(Hit({"name": name, "value": value, "close": close[0]}, code="BD404"))
    if skipped:
        hits.append(Hit({"skipped": f"{skipped:,}", "unknown": f"{judged + skipped:,}", "count": f"{len(options):,}",
                         "limit": MAX_UNKNOWN}, code="BD403", variant="skipped"))
    return hits


#: unknown names judged one by one (each a close-match search); beyond, one summary finding
MAX_UNKNOWN = 50

_CMAKE_COMMON = ["CMAKE_BUILD_TYPE", "CMAKE_C_COMPILER", "CMAKE_CXX_COMPILER", "CMAKE_CUDA_ARCHITECTURES",
                 "CMAKE_CUDA_COMPILER", "CMAKE_INSTALL_PREFIX", "CMAKE_PREFIX_PATH", "CMAKE_HIP_ARCHITECTURES",
                 "CMAKE_C_COMPILER_LAUNCHER", "CMAKE_CXX_COMPILER_LAUNCHER", "CMAKE_TOOLCHAIN_FILE",
                 "CMAKE_OSX_ARCHITECTURES", "CMAKE_EXPORT_COMPILE_COMMANDS"]


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
    from builddoctor.recipes import Context, cpu_features, evaluate, load_recipes
    from builddoctor.resolve import Facts, _unmet

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
            out.append(Hit({**values, "unmet": _unmet(r, key, facts, machine)}, code="BD406"))
    feats = cpu_features(machine)
    native_on = is_on(options.get("GGML_NATIVE"))
    # with all CPU variants the per-ISA switches are not used (each variant sets its own)
    all_variants = is_on(options.get("GGML_CPU_ALL_VARIANTS"))
    for opt, needs in isa_table().items():
        if not all_variants and is_on(options.get(opt)) and not any(f in feats for f in needs):
            out.append(Hit({"option": opt, "value": options[opt], "feature": needs[0],
                            "cpu": machine.cpu.model or "this CPU"}, code="BD407",
                           variant="native_on" if native_on else ""))
    return out


def _install_hint(r, tool: str, machine: MachineProfile) -> str:
    from builddoctor.resolve import platform_key

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
