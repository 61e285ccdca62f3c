"""Build facts llama.cpp embeds in its binaries, read statically.

``common/build-info.cpp.in`` (vendor/llama.cpp) defines four globals that end up in the
executable (via the static common library)::

    int LLAMA_BUILD_NUMBER = @LLAMA_BUILD_NUMBER@;
    char const * LLAMA_COMMIT = "@LLAMA_BUILD_COMMIT@";
    char const * LLAMA_COMPILER = "@BUILD_COMPILER@";
    char const * LLAMA_BUILD_TARGET = "@BUILD_TARGET@";

The pointers sit in .data; in a PIE or shared library their bytes are 0 and a RELATIVE
relocation holds the string's address. ``llama_version()`` (libllama) and
``ggml_version()`` / ``ggml_commit()`` (libggml-base) return string literals: one
rip-relative ``lea`` (x86-64) or ``adrp``+``add`` (arm64) gives their address.
Stripped files have none of these symbols; then the four strings are looked for where the
compiler puts them, one after another in .rodata, around the compiler string.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from builddoctor.inspect.discover import _data, canonical_name
from builddoctor.inspect.image import Image
from builddoctor.inspect.isa import symbols_anywhere

_COMPILER = re.compile(
    rb"\x00((?:GNU|Clang|AppleClang|MSVC|IntelLLVM|Intel|NVHPC|cc|gcc) [0-9][0-9.]{1,20}"
    rb"(?: [^\x00]{0,40})?)\x00"
)
_TARGET = re.compile(r"^[A-Za-z0-9_.\- ]{3,60}$")
_COMMIT = re.compile(r"^(?:[0-9a-f]{7,40}|unknown)$")


# libllama's soname before llama.cpp versioned itself semver-style: VERSION 0.0.${LLAMA_BUILD_NUMBER}
# (src/CMakeLists.txt of those releases), so libllama.so.0.0.4965 is build b4965.
_SONAME_BUILD = re.compile(r"^libllama\.so\.0\.0\.([0-9]+)$")


def from_soname(*names: str | None) -> dict[str, Any]:
    """What libllama's soname or file name says when the binary does not: the build number of an
    old one (libllama.so.0.0.4965), or the semver version of a newer one (libllama.so.0.5.0, a
    packager's llama.v0.4.0.dll / libllama.metal.v0.4.0.dylib; patterns in inspect_discover.toml)."""
    for name in names:
        m = _SONAME_BUILD.match(name or "")
        if m and int(m.group(1)) > 1:
            return {"build_number": int(m.group(1))}
    for name in names:
        for pat in _data()["version_names"]["library"]:
            m = re.match(pat, canonical_name((name or "").replace("\\", "/").rsplit("/", 1)[-1]))
            if m and m.group(1) != "0.0.0":
                return {"version": m.group(1)}
    return {}


def from_folder(path: Any) -> dict[str, Any]:
    """The build number a release folder's name carries (llama.cpp's release archives unpack to
    llama-b<N>-bin-<platform>): the build itself keeps it only in code no symbol points to."""
    p = Path(path)
    for folder in (p, *list(p.parents)[:2]):
        for pat in _data()["version_names"]["folder"]:
            m = re.match(pat, folder.name)
            if m:
                return {"build_number": int(m.group(1))}
    return {}


SYMBOLS = (
    "LLAMA_BUILD_NUMBER",
    "LLAMA_COMMIT",
    "LLAMA_COMPILER",
    "LLAMA_BUILD_TARGET",
    "llama_version",
    "ggml_version",
    "ggml_commit",
)


def read(img: Image, arch: str, local: bool = False) -> dict[str, Any]:
    """``local``: look in .symtab too (a module that carries llama.cpp without exporting it)."""
    out: dict[str, Any] = {}
    syms = symbols_anywhere(img, list(SYMBOLS), local)
    sym = syms.get("LLAMA_BUILD_NUMBER")
    if sym:
        raw = img.read(sym[0], 4)
        if len(raw) == 4:
            out["build_number"] = int.from_bytes(raw, "little" if img.little else "big", signed=True)
    for key, name in (("commit", "LLAMA_COMMIT"), ("compiler", "LLAMA_COMPILER"), ("target", "LLAMA_BUILD_TARGET")):
        sym = syms.get(name)
        if not sym:
            continue
        ptr = img.pointer(sym[0])
        if ptr:
            text = img.cstring(ptr)
            if text is not None:
                out[key] = text
    for key, name in (("version", "llama_version"), ("ggml_version", "ggml_version"), ("ggml_commit", "ggml_commit")):
        sym = syms.get(name)
        if sym:
            text = returned_string(img, arch, sym[0])
            if text:
                out[key] = text
    if "compiler" not in out and ".symtab" not in img.sections and _looks_like_common(img):
        out.update(_rodata_guess(img))
    return out


def _looks_like_common(img: Image) -> bool:
    """A stripped file that carries llama.cpp's common library (its --version printer)."""
    return img.find_in(".rodata", b"version: %s (build %d, commit %s)", limit=64 << 20) >= 0


def _rodata_guess(img: Image) -> dict[str, Any]:
    blob = bytes(img.section_bytes(".rodata", limit=64 << 20))
    for m in _COMPILER.finditer(blob):
        compiler = m.group(1).decode("utf-8", "replace")
        # neighbours: "<commit>\0<compiler>\0<target>\0" (the order build-info.cpp defines them)
        before = blob[max(0, m.start() - 64) : m.start()].split(b"\x00")
        after = blob[m.end() : m.end() + 80].split(b"\x00")
        commit = before[-1].decode("ascii", "replace") if before else ""
        target = after[0].decode("ascii", "replace") if after else ""
        got: dict[str, Any] = {"compiler": compiler}
        if _COMMIT.match(commit):
            got["commit"] = commit
        if _TARGET.match(target):
            got["target"] = target
        if "commit" in got or "target" in got:
            return got
    return {}


def returned_string(img: Image, arch: str, addr: int) -> str | None:
    code = img.read(addr, 48)
    if not code:
        return None
    target: int | None = None
    if arch == "x86_64":
        import iced_x86  # noqa: PLC0415 (iced-x86 is heavy: loaded when code is decoded)

        for n, ins in enumerate(iced_x86.Decoder(64, code, ip=addr)):
            if n > 8:
                break
            if ins.code == iced_x86.Code.LEA_R64_M and ins.is_ip_rel_memory_operand:
                target = ins.ip_rel_memory_address
                break
            if ins.flow_control != iced_x86.FlowControl.NEXT:
                break
    elif arch == "aarch64":
        page = None
        for i in range(0, len(code) - 3, 4):
            w = int.from_bytes(code[i : i + 4], "little")
            pc = addr + i
            if (w & 0x9F000000) == 0x90000000 and (w & 0x1F) == 0:  # adrp x0
                imm = ((w >> 5) & 0x7FFFF) << 2 | ((w >> 29) & 3)
                if imm & (1 << 20):
                    imm -= 1 << 21
                page = (pc & ~0xFFF) + (imm << 12)
            elif (w & 0xFF8003FF) == 0x91000000 and page is not None:  # add x0, x0, #imm
                imm = (w >> 10) & 0xFFF
                if w & (1 << 22):
                    imm <<= 12
                target = page + imm
                break
            elif w == 0xD65F03C0:
                break
    if target is None:
        return None
    return img.cstring(target, 256)
