"""What one file of a build says, whatever its format: FileFacts, and the readings shared by the
ELF reader (inspect/elf.py) and the Mach-O/PE one (inspect/binary.py): backends and llama.cpp
markers from names, symbols and NEEDED; compiler switches from DWARF producers; symbol versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from builddoctor import platforms
from builddoctor.inspect import buildinfo
from builddoctor.inspect import isa as isa_mod
from builddoctor.inspect.data import load
from builddoctor.inspect.discover import canonical_name
from builddoctor.inspect.image import Image
from builddoctor.inspect.libs import Resolver, _version_key
from builddoctor.profiles import BinaryFile

# llama.cpp's own libraries: their CPU code is not the ggml CPU backend's.
LLAMA_LIBS = re.compile(r"^(lib)?(llama|llama-common|common|mtmd|ggml|ggml-base)(\.so.*|\.dylib|\.dll|\.a)?$")
_BACKEND_LIB = re.compile(r"^(?:lib)?ggml-([a-z0-9]+)(?:-([A-Za-z0-9_.]+))?(?:\.so(?:\.[0-9.]+)?|\.dylib|\.dll)$")
_VERSION_NAME = re.compile(r"^([A-Z][A-Z_]*?)_([0-9]+(?:\.[0-9]+)*)$")
_PRODUCER_PREFIXES = (b"GNU ", b"clang version ", b"Intel(R) oneAPI")
_GNU_PRODUCER = re.compile(r"^GNU (?:C|C\+\+|Fortran|Objective-C|Go|D)[0-9A-Za-z+]* [0-9]")


@dataclass
class FileFacts:
    file: BinaryFile
    resolved: dict[str, str] = field(default_factory=dict)  # NEEDED name -> path found
    is_llama: bool = False
    cpu_variant: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # commit, build_number, version...
    producers: list[str] = field(default_factory=list)
    opt_flags: dict[str, Any] = field(default_factory=dict)  # "opt": "-O3", "g": True
    compiled_for: dict[str, bool] = field(default_factory=dict)
    unoptimized: bool | None = None
    isa_how: str = ""
    flash_attn: bool | None = None
    openmp: bool = False
    executable_here: bool = False  # an executable for this machine's OS and arch, with an exec bit


class BadFile(Exception):
    """A file whose own headers say it is damaged or truncated: the message is its one sentence."""


def runs_on_host(bf: BinaryFile) -> bool:
    """Whether this machine's loader can take the file (its OS and one of its architectures)."""
    return bool(bf.format) and platforms.Platform(bf.os or "", tuple(bf.archs)).runs_on(*platforms.host())


_RESOLVER: Resolver | None = None


def resolver() -> Resolver:
    """One library resolver per process: it caches what ld.so's search finds."""
    global _RESOLVER
    if _RESOLVER is None:
        _RESOLVER = Resolver()
    return _RESOLVER


@lru_cache(maxsize=1)
def backend_data() -> dict[str, Any]:
    return load("inspect_backends.toml")


@lru_cache(maxsize=1)
def interesting_symbols() -> list[str]:
    """The symbols every reading asks for: prefetched in one pass over the symbol tables."""
    names = [sym for b in backend_data()["backend"] for sym in b.get("symbols", [])]
    names += [f"ggml_cpu_has_{k}" for k in isa_mod._data()["cpu_has"]]
    names += list(buildinfo.SYMBOLS)
    return names


def max_versions(names) -> dict[str, str]:
    """The highest version each prefix asks for (GLIBC -> 2.34); a version no int() can read (a
    forged 5000-digit one) is ignored, not taken for damage."""
    best: dict[str, tuple[int, ...]] = {}
    for name in names:
        m = _VERSION_NAME.match(name)
        key = _version_key(name) if m else None
        if not key:
            continue
        prefix, ver = m.group(1) if m else "", key[1]
        if prefix not in best or ver > best[prefix]:
            best[prefix] = ver
    return {k: ".".join(map(str, v)) for k, v in sorted(best.items())}


def decode_cpu_code(facts: FileFacts, name: str) -> bool:
    """Whether this file's own machine code says something about the build's CPU code."""
    bf = facts.file
    if "CPU" in bf.backends:
        return True
    if LLAMA_LIBS.match(name) or (bf.backends and bf.role == "backend"):
        return False  # libllama, libggml-base, GPU backends: not the CPU backend's code
    # False for an executable whose CPU code lives in the shared ggml libraries
    return not any(n.startswith(("libggml", "libllama", "ggml", "llama")) for n in bf.needed)


# --------------------------------------------------------------------------- backends and markers


class _Names:
    """The symbols a file defines: asked of its Image (ELF), or of a set of names (Mach-O, PE)."""

    def __init__(self, img: Image | None, symbol_names: set[str] | None):
        self.img, self.names = img, symbol_names
        # the names without Mach-O's leading "_", once, and joined: each prefix is then one search at
        # C speed (a llama-common.dll exports 20,000 names, and several prefixes are asked for)
        self.joined = "\0" + "\0".join(s.lstrip("_") for s in symbol_names) if img is None and symbol_names else ""

    def defines(self, sym: str) -> bool:
        if self.img is not None:
            return self.img.symbol(sym) is not None
        return self.names is not None and (sym in self.names or "_" + sym in self.names)

    def defines_prefix(self, prefix: str) -> bool:
        if self.img is not None:
            return self.img.defines_prefix(prefix)
        return ("\0" + prefix) in self.joined


def backend_by_name(name: str) -> tuple[str | None, str | None, bool]:
    """(backend, CPU variant, named like a backend library) from a canonical file name:
    libggml-cuda.so is CUDA, libggml-cpu-haswell.so the CPU backend's haswell variant."""
    m = _BACKEND_LIB.match(name)
    if not m:
        return None, None, False
    lib = f"ggml-{m.group(1)}"
    by_name = None
    for b in backend_data()["backend"]:
        if lib in b.get("libs", []):
            by_name = b["name"]
    return by_name, m.group(2) if by_name == "CPU" else None, True


def _backends_by_symbols(names: _Names, found: list[str]) -> bool:
    """Add the backends whose registration symbols the file defines; whether it defines any."""
    has_reg = False
    for b in backend_data()["backend"]:
        for sym in b.get("symbols", []):
            if names.defines(sym):
                has_reg = True
                if b["name"] not in found:
                    found.append(b["name"])
    return has_reg


def backends_by_needed(needed: list[str], found: list[str], by_name: str | None) -> None:
    """Add the backends whose runtimes the file links (a backend's ``overrides`` replaces the one
    it builds on: a HIP build links what a CUDA one does)."""
    for b in backend_data()["backend"]:
        prefixes = b.get("needed", [])
        if any(n.startswith(p) or ("/" in p and p in n) for n in needed for p in prefixes):
            if b["name"] not in found:
                found.append(b["name"])
            over = b.get("overrides")
            if over and over in found and by_name != over:
                found.remove(over)


def _has_llama_markers(name: str, named_backend: bool, bf: BinaryFile, names: _Names, img: Image | None) -> bool:
    """Whether the file is llama.cpp's: a backend, a llama/ggml name, link or symbol, or (ELF) a
    ggml string in its read-only data."""
    if (
        bool(bf.backends)
        or named_backend
        or bool(LLAMA_LIBS.match(name))
        or any(n.startswith(("libllama", "libggml", "llama.", "ggml")) for n in bf.needed)
        or any(names.defines_prefix(p) for p in ("llama_", "ggml_", "gguf_"))
    ):
        return True
    return img is not None and (
        img.find_in(".rodata", b"ggml_", limit=32 << 20) >= 0
        or img.find_in(".rodata", b"llama_model", limit=32 << 20) >= 0
    )


def common_facts(path: Path, facts: FileFacts, img: Image | None, symbol_names: set[str] | None = None) -> None:
    """Backends, llama markers and OpenMP, from names, symbols and NEEDED."""
    bf = facts.file
    name = canonical_name(path.name)  # libggml-cpu-1a2b3c4d.so (auditwheel) is libggml-cpu.so
    names = _Names(img, symbol_names)
    by_name, variant, named_backend = backend_by_name(name)
    if variant:
        facts.cpu_variant = variant
    found: list[str] = [by_name] if by_name else []
    has_reg = _backends_by_symbols(names, found)
    # a file with ggml inside (a monolithic module, or a llama.cpp from before the backend registry:
    # gpt4all's libllamamodel-*-cuda.so) is judged by the runtimes it links too
    if named_backend or name.startswith(("libggml", "ggml")) or has_reg or names.defines_prefix("ggml_"):
        backends_by_needed(bf.needed, found, by_name)
    bf.backends = found
    openmp = backend_data()["openmp"]["needed"]
    facts.openmp = any(n.lower().startswith(p.lower()) for n in bf.needed for p in openmp)
    facts.is_llama = _has_llama_markers(name, named_backend, bf, names, img)


# --------------------------------------------------------------------------- compiler switches


def _producer_strings(img: Image) -> list[str]:
    """DW_AT_producer strings, found with ``bytes.find`` on fixed prefixes (memchr speed, GB/s)
    rather than a regex over a debug string table that can be tens of MB; at most 32 kept."""
    found: list[str] = []
    data = img.data
    for name, cap in ((".debug_str", 256 << 20), (".debug_info", 4 << 20)):
        sec = img.sections.get(name)
        if sec is None or sec.type == 8 or sec.flags & 0x800 or sec.offset >= img.size:
            continue  # absent, or compressed debug sections
        lo, hi = sec.offset, min(sec.offset + min(sec.size, cap), img.size)
        seen: set[str] = set()
        for needle in _PRODUCER_PREFIXES:
            pos = lo
            hits = 0
            while hits < 64 and len(found) < 32:
                i = data.find(needle, pos, hi)
                if i < 0:
                    break
                end = data.find(b"\x00", i, min(i + 8192, hi))
                pos = i + 1
                hits += 1
                if end < 0 or (i > lo and data[i - 1] != 0):
                    continue
                text = bytes(data[i:end]).decode("utf-8", "replace")
                if text not in seen and (needle != b"GNU " or _GNU_PRODUCER.match(text)):
                    seen.add(text)
                    found.append(text)
        if found:
            break
    return found


def producer_switches(found: list[str]) -> dict[str, Any]:
    """What GCC's producer strings (it records its switches there) say: the -O level most
    compile units used, every level seen, and -g."""
    opts: dict[str, Any] = {}
    levels = []
    for prod in found:
        if not prod.startswith("GNU "):
            continue
        lv = re.findall(r"(?<!\S)-O([0-3sgz]|fast)?(?!\S)", prod)
        levels.append("-O" + (lv[-1] or "1") if lv else "-O0")
        if re.search(r"(?<!\S)-g[0-9a-z]*(?!\S)", prod):
            opts["g"] = True
    if levels:
        opts["opt"] = max(set(levels), key=levels.count)
        opts["levels"] = sorted(set(levels))
    return opts


def producers(img: Image) -> tuple[list[str], dict[str, Any]]:
    """DW_AT_producer strings and what they say."""
    found = _producer_strings(img)
    return found, producer_switches(found)


def has_fattn(img: Image) -> bool:
    return any(img.find_in(name, b"flash_attn") >= 0 for name in (".rodata", ".nv_fatbin", ".hip_fatbin"))
