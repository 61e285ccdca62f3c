"""The options of the pinned llama.cpp: its ``option()``, ``set(... CACHE ...)`` declarations and the
switches its CMake reads (``if (GGML_...)``), shipped as a snapshot (``data/llama_options.toml``) so
that nothing needs the source tree; ``python -m builddoctor.flagcheck regenerate [SOURCE]`` rewrites it.
Renamed and removed options the source no longer lists are in ``data/llama_options_deprecated.toml``;
which ``GGML_<ISA>`` option needs which CPU feature is in ``data/llama_options_isa.toml``.

Read by flagcheck (a user's options), resolve (a plan for another tree) and the findings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from builddoctor import errors
from builddoctor.paths import DATA_DIR, vendor_dir
from builddoctor.readinput import read_text
from builddoctor.source import load_pin
from builddoctor.tomlload import data_file

SNAPSHOT = DATA_DIR / "llama_options.toml"
DEPRECATED = DATA_DIR / "llama_options_deprecated.toml"
ISA = DATA_DIR / "llama_options_isa.toml"

#: CMake's own variables and those of the packages llama.cpp finds: known, never flagged
STANDARD_PREFIXES = (
    "CMAKE_",
    "CPACK_",
    "CTEST_",
    "OpenMP_",
    "CUDAToolkit_",
    "CUDA_",
    "Vulkan_",
    "BLAS_",
    "BLA_",
    "OPENSSL_",
    "OpenSSL_",
    "HIP_",
    "ROCM_",
    "SYCL_",
    "MKL_",
    "FETCHCONTENT_",
    "Python3_",
    "ZLIB_",
)
STANDARD_NAMES = {
    "BUILD_SHARED_LIBS",
    "BUILD_TESTING",
    "GPU_TARGETS",
    "AMDGPU_TARGETS",
    "CUDAToolkit_ROOT",
    "OpenBLAS_ROOT",
    "Threads_ROOT",
    "LLAMA_BUILD_COMMIT",
    "LLAMA_BUILD_NUMBER",
}
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
_CACHE_RE = re.compile(
    r'\bset\s*\(\s*([A-Za-z_]\w*)\s+((?:"(?:[^"\\]|\\.)*"|[^()"])*?)\s*\bCACHE\s+(\w+)'
    r'(?:\s+"((?:[^"\\]|\\.)*)")?',
    re.S,
)
_DEPR_RE = re.compile(
    r"\b\w+_option_depr\s*\(\s*(WARNING|FATAL_ERROR|DEPRECATION)\s+([A-Za-z_]\w*)"
    r"(?:\s+([A-Za-z_]\w*))?\s*\)"
)
_DEPR_MSG_RE = re.compile(r'"([A-Z][A-Z0-9_]+) is deprecated, use ([A-Z][A-Z0-9_]+) instead"')
_IF_RE = re.compile(r"\b(?:if|elseif)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)")
_ADD_BACKEND_RE = re.compile(r"\bggml_add_backend\s*\(\s*([A-Za-z0-9_]+)\s*\)")
_VAR_RE = re.compile(r"\b((?:GGML|LLAMA)_[A-Z0-9_]+)\b")


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
            known.options.setdefault(
                m.group(1), {"kind": "option", "default": m.group(3).strip(), "help": m.group(2), "file": rel}
            )
        for m in _CACHE_RE.finditer(text):
            name = m.group(1)
            if name not in known.options:
                known.options[name] = {
                    "kind": f"cache {m.group(3).upper()}",
                    "default": m.group(2).strip().strip('"'),
                    "help": m.group(4) or "",
                    "file": rel,
                }
        for m in _DEPR_RE.finditer(text):
            known.deprecated.setdefault(m.group(2), {"replacement": m.group(3) or "", "level": m.group(1), "file": rel})
        for m in _DEPR_MSG_RE.finditer(text):
            known.deprecated.setdefault(m.group(1), {"replacement": m.group(2), "level": "DEPRECATION", "file": rel})
        for m in _IF_RE.finditer(text):
            for v in _VAR_RE.findall(m.group(1)):
                referenced.setdefault(v, rel)
        for m in _ADD_BACKEND_RE.finditer(text):  # ggml_add_backend(CANN) reads GGML_CANN
            referenced.setdefault(f"GGML_{m.group(1).upper()}", rel)
    for name, rel in referenced.items():
        if name not in known.options and name not in known.deprecated:
            known.options[name] = {
                "kind": "variable",
                "default": "",
                "help": "read by llama.cpp's CMake, not declared",
                "file": rel,
            }
    for name in known.deprecated:
        known.options.pop(name, None)
    return known


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def render_snapshot(known: KnownOptions, commit: str = "") -> str:
    lines = [
        "# Options of the pinned llama.cpp, read from its CMake files. Generated: do not edit.",
        "# Regenerate with: python -m builddoctor.flagcheck regenerate [SOURCE]",
        "",
    ]
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
    source = Path(source) if source else vendor_dir()

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
        merged.deprecated[name] = {
            "replacement": d.get("replacement", ""),
            "level": "WARNING",
            "note": d.get("note", ""),
            "file": "builddoctor/data/llama_options_deprecated.toml",
        }
    for name, d in base.deprecated.items():
        note = merged.deprecated.get(name, {}).get("note", "")
        merged.deprecated[name] = dict(d, note=note)
    return merged
