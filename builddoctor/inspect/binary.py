"""Read one file of a build statically (never running it).

ELF files are read with pyelftools, PE with pefile, Mach-O with the load-command reader of
inspect/foreign.py. None uses LIEF: importing it costs about 0.9 s of CPU here (measured:
``python -X importtime -c "import lief"``), more than a whole ``check`` of three builds is
allowed, and it holds a whole PE or Mach-O plus a copy of its sections in memory; pyelftools
imports in ~0.1 s and parses lazily (it never reads a 100 MB library whole).

``inspect_binary(path) -> BinaryFile`` is the public entry; ``analyze(path)`` returns the
``FileFacts`` behind it (the BinaryFile plus what the build-level code needs: resolved
libraries, embedded build info, compiler switches...).
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from builddoctor import platforms
from builddoctor.inspect import buildinfo, fatbin, foreign
from builddoctor.inspect import isa as isa_mod
from builddoctor.inspect.image import (
    FileWindow,
    Image,
    ImageError,
    Section,
    Segment,
    SymbolTable,
    elf_header_problem,
    gnu_versions,
    macho_slices,
    pe_machine,
)
from builddoctor.inspect.libs import (
    Resolver,
    defined_versions,
    load_problems,
    real,
    undefined_unversioned,
)
from builddoctor.profiles import BinaryFile

# llama.cpp's own libraries: their CPU code is not the ggml CPU backend's.
_LLAMA_LIBS = re.compile(r"^(lib)?(llama|llama-common|common|mtmd|ggml|ggml-base)(\.so.*|\.dylib|\.dll|\.a)?$")
_BACKEND_LIB = re.compile(r"^(?:lib)?ggml-([a-z0-9]+)(?:-([A-Za-z0-9_.]+))?(?:\.so(?:\.[0-9.]+)?|\.dylib|\.dll)$")
_VERSION_NAME = re.compile(r"^([A-Z][A-Z_]*?)_([0-9]+(?:\.[0-9]+)*)$")
_PRODUCER_PREFIXES = (b"GNU ", b"clang version ", b"Intel(R) oneAPI")
_GNU_PRODUCER = re.compile(r"^GNU (?:C|C\+\+|Fortran|Objective-C|Go|D)[0-9A-Za-z+]* [0-9]")
_TEXT_SNIFF = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e]*$")


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


def runs_on_host(bf: BinaryFile) -> bool:
    """Whether this machine's loader can take the file (its OS and one of its architectures)."""
    return bool(bf.format) and platforms.Platform(bf.os or "", tuple(bf.archs)).runs_on(*platforms.host())


def inspect_binary(path: Path, prefer_arch: str | None = None) -> BinaryFile:
    """One file, read statically. Never raises for a bad file: ``error`` says what is wrong."""
    return analyze(Path(path), prefer_arch).file


_RESOLVER: Resolver | None = None


def resolver() -> Resolver:
    global _RESOLVER
    if _RESOLVER is None:
        _RESOLVER = Resolver()
    return _RESOLVER


@lru_cache(maxsize=1)
def _backend_data() -> dict[str, Any]:
    from builddoctor.inspect.data import load

    return load("inspect_backends.toml")


def guess_role(name: str) -> str:
    m = _BACKEND_LIB.match(name)
    if m and m.group(1) not in ("base",):
        known = {lib.split("-", 1)[1] for b in _backend_data()["backend"] for lib in b.get("libs", [])}
        if m.group(1) in known:
            return "backend"
    if _LLAMA_LIBS.match(name) or name.endswith((".so", ".dylib", ".dll")) or ".so." in name:
        return "library"
    return "unknown"


def _sniff(head: bytes) -> tuple[str | None, str | None]:
    """(format, problem) from a file's first bytes."""
    if head[:4] == b"\x7fELF":
        return "ELF", None
    if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce"):
        return "Mach-O", None
    if head[:4] == b"\xca\xfe\xba\xbe" and len(head) >= 8 and 0 < struct.unpack(">I", head[4:8])[0] < 32:
        return "Mach-O", None
    if head[:2] == b"MZ":
        return "PE", None
    if head[:2] == b"#!":
        line = head[2:].split(b"\n", 1)[0].strip().decode("utf-8", "replace")[:80]
        return None, (f"a script (#!{line}), not a compiled program or library; check the program it runs instead")
    if head and _TEXT_SNIFF.match(head[:256]):
        return None, "a text file, not a compiled program or library"
    return None, "not an executable or library (not ELF, Mach-O or PE)"


def analyze(path: Path, prefer_arch: str | None = None) -> FileFacts:
    """``prefer_arch``: the slice of a fat Mach-O to read (the machine being diagnosed's
    architecture); default this machine's, else the first."""
    from builddoctor.inspect.discover import canonical_name

    bf = BinaryFile(path=str(path), role=guess_role(canonical_name(path.name)))
    facts = FileFacts(file=bf)
    try:
        st = os.stat(path)
    except OSError as exc:
        bf.error = _os_error(exc, path)
        return facts
    if stat.S_ISDIR(st.st_mode):
        bf.error = "a directory, not a file"
        return facts
    if not stat.S_ISREG(st.st_mode):
        bf.error = "not a regular file (device, FIFO or socket)"
        return facts
    bf.size = st.st_size
    if st.st_size == 0:
        bf.error = "empty file (0 bytes), not a program or library"
        return facts
    try:
        fh = open(path, "rb")  # noqa: SIM115 - the with below holds it; open errors and read errors say different things
    except OSError as exc:
        bf.error = _os_error(exc, path)
        return facts
    with fh:
        try:
            head = fh.read(4096)
        except OSError as exc:
            bf.error = _os_error(exc, path)
            return facts
        fmt, problem = _sniff(head)
        bf.format = fmt
        if fmt is None:
            bf.error = problem
            return facts
        exec_bit = bool(st.st_mode & 0o111)
        try:
            if fmt == "ELF":
                _analyze_elf(path, fh, head, facts, exec_bit)
            else:
                _analyze_other(path, facts, exec_bit, prefer_arch)
        except (_Bad, ImageError) as exc:
            bf.error = str(exc)
        except (ValueError, IndexError, struct.error, OverflowError, UnicodeError, TypeError) as exc:
            bf.error = f"damaged {fmt} file ({type(exc).__name__}: {exc})"
        except MemoryError:
            bf.error = f"too large to read ({bf.size} bytes)"
    return facts


class _Bad(Exception):
    pass


def _os_error(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop (the link points back to itself)"
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return f"a broken symlink (its target {os.readlink(path)} does not exist)"
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: cannot read it"
    return f"cannot read it ({exc.strerror or exc})"


# --------------------------------------------------------------------------- ELF


def _analyze_elf(path: Path, fh, head: bytes, facts: FileFacts, exec_bit: bool) -> None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    from builddoctor.inspect.discover import canonical_name

    bf = facts.file
    size = bf.size
    problem = elf_header_problem(head, size)
    if problem:
        raise _Bad(f"damaged ELF file, {problem}")
    elf_class = head[4]
    little = head[5] == 1
    (e_type, e_machine) = struct.unpack_from(("<" if little else ">") + "HH", head, 16)
    arch = platforms.elf_arch(e_machine) or f"machine {e_machine}"
    bf.arch = arch
    bf.archs = [arch]
    data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    img = Image(data=data, size=size, is64=elf_class == 2, little=little)
    if arch == "aarch64":
        img.relative_types = (1027,)
    try:
        elf = ELFFile(fh)
        # Headers only: pyelftools' section/segment objects parse their contents (a GNU hash
        # table, the dynamic segment) on creation, which costs ms per file for nothing here.
        has_interp = False
        interp = ""
        for i in range(elf.num_segments()):
            seg = elf._get_segment_header(i)
            ptype = seg["p_type"]
            if ptype == "PT_INTERP":
                has_interp = True
                raw = bytes(data[seg["p_offset"] : seg["p_offset"] + min(seg["p_filesz"], 512)])
                interp = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            elif ptype == "PT_LOAD":
                if seg["p_offset"] + seg["p_filesz"] > size:
                    raise _Bad(
                        f"truncated ELF file: a code/data segment ends at byte "
                        f"{seg['p_offset'] + seg['p_filesz']}, but the file has only {size} bytes"
                    )
                img.segments.append(Segment(seg["p_vaddr"], seg["p_offset"], seg["p_filesz"], seg["p_memsz"]))
        secs: list[Section] = []
        dynamic: Any = None  # pyelftools DynamicSection (its tags are typed loosely)
        verneed: Any = None
        for i in range(elf.num_sections()):
            h = elf._get_section_header(i)
            name = elf._get_section_name(h)
            stype = h["sh_type"]
            sec = Section(
                name,
                h["sh_offset"],
                h["sh_size"],
                h["sh_addr"],
                _SHT.get(stype, stype if isinstance(stype, int) else 0),
                h["sh_flags"],
                h["sh_link"],
            )
            secs.append(sec)
            img.sections.setdefault(name, sec)
            if stype == "SHT_DYNAMIC":
                dynamic = elf.get_section(i)
            elif stype == "SHT_GNU_verneed":
                verneed = elf.get_section(i)
            if sec.type != 8 and sec.size and sec.offset + sec.size > size:
                raise _Bad(
                    f"truncated ELF file: section {name} ends at byte {sec.offset + sec.size}, "
                    f"but the file has only {size} bytes"
                )
        needed: list[str] = []
        soname: str | None = None
        rpath: list[str] = []
        runpath: list[str] = []
        if dynamic is not None:
            for tag in dynamic.iter_tags():
                t = tag.entry.d_tag
                if t == "DT_NEEDED":
                    needed.append(tag.needed)
                elif t == "DT_RPATH":
                    rpath += [p for p in tag.rpath.split(":") if p]
                elif t == "DT_RUNPATH":
                    runpath += [p for p in tag.runpath.split(":") if p]
                elif t == "DT_SONAME":
                    soname = tag.soname
        required: dict[str, list[str]] = {}
        if verneed is not None:
            for lib, names in gnu_versions(verneed):
                required.setdefault(lib, []).extend(names)
    except ELFError as exc:
        raise _Bad(f"damaged ELF file ({exc})") from None
    bf.os = platforms.elf_os(head[7], interp, img.sections)
    for tab_name in (".dynsym", ".symtab"):
        symsec = img.sections.get(tab_name)
        if symsec is None or not symsec.size or symsec.link >= len(secs):
            continue
        strsec = secs[symsec.link]
        strtab = bytes(data[strsec.offset : strsec.offset + strsec.size])
        tab = SymbolTable(strtab, memoryview(data)[symsec.offset : symsec.offset + symsec.size], img.is64, little)
        tab.is_dynsym = tab_name == ".dynsym"
        img.symtabs.append(tab)
    rela = img.sections.get(".rela.dyn")
    if rela is not None:
        img.rela_sections.append(rela)

    # role
    is_exec = e_type == 2 or has_interp
    img.exported_only = not is_exec  # a library's API is in .dynsym: skip its big .symtab
    if is_exec:
        bf.role = "executable"
    elif bf.role == "unknown":
        bf.role = "library" if e_type == 3 else "unknown"
    here = runs_on_host(bf)
    facts.executable_here = is_exec and exec_bit and here

    # libraries and versions
    bf.needed = needed
    bf.symbol_versions = _max_versions(v for names in required.values() for v in names)
    if here:
        origin = str(path.resolve().parent)
        res = resolver()
        for name in bf.needed:
            got = res.resolve(name, origin=origin, rpath=rpath, runpath=runpath, elf_class=elf_class, arch=arch)
            if got:
                facts.resolved[name] = got
            else:
                bf.missing_needed.append(name)
        for lib, versions in required.items():
            got = facts.resolved.get(lib)
            if not got:
                continue
            have = defined_versions(real(got))
            if not have:
                continue
            for v in versions:
                if v not in have:
                    bf.missing_versions.append(f"{v} ({lib})")
        bf.load_problems = load_problems(
            required, facts.resolved, [] if bf.missing_needed else _unversioned_imports(img, secs, data), resolver=res
        )
    bf.debug_info = ".debug_info" in img.sections

    img.prefetch(_interesting_symbols())
    _common_facts(path, facts, img, arch)
    if "CPU" not in bf.backends and isa_mod.carries_cpu_backend(img, path.name, bf.needed):
        bf.backends.append("CPU")  # monolithic: the CPU backend linked into libllama, libggml, a module

    # CPU instruction sets
    text = img.sections.get(".text")
    text_t = (text.vaddr, text.offset, text.size) if text is not None and text.size else None
    res_isa = isa_mod.analyze(img, arch, text=text_t, cpu_code=_decode_cpu_code(facts, img, canonical_name(path.name)))
    bf.isa = sorted(res_isa.features)
    bf.isa_detail = sorted(res_isa.detail)
    if arch in ("x86_64", "i386") and (res_isa.features or res_isa.decoded_bytes):
        bf.isa_level = res_isa.level or "sse"
    facts.compiled_for = res_isa.compiled_for
    facts.unoptimized = res_isa.unoptimized
    facts.isa_how = res_isa.how

    # build info and compiler switches
    facts.info = buildinfo.read(img, arch, local="CPU" in bf.backends)
    for key, value in buildinfo.from_soname(soname, path.name).items():
        facts.info.setdefault(key, value)
    if bf.debug_info:
        facts.producers, facts.opt_flags = _producers(img)

    # GPU code
    # a CUDA fatbin's headers are read one by one (FileWindow: not mapped, so a 300 MB section does not
    # become resident); a HIP bundle's names are searched in place in the mmap, at most 64 MB of it
    for name, reader, src, cap in (
        (".nv_fatbin", fatbin.cuda_archs, FileWindow(fh.fileno(), size), None),
        (".hip_fatbin", fatbin.hip_targets, data, 64 << 20),
    ):
        gpusec = img.sections.get(name)
        if gpusec is not None and gpusec.type != 8 and gpusec.offset < size:
            end = min(gpusec.offset + min(gpusec.size, cap or gpusec.size), size)
            bf.cuda_archs += reader(src, gpusec.offset, end)
    if {"CUDA", "HIP", "MUSA"} & set(bf.backends):
        facts.flash_attn = _has_fattn(img)


def _unversioned_imports(img: Image, secs: list[Section], data) -> list[str]:
    """The file's strong undefined symbols without a version (what ld.so looks up by name)."""
    dyn = img.sections.get(".dynsym")
    if dyn is None or dyn.type != 11 or dyn.link >= len(secs):
        return []
    strsec = secs[dyn.link]
    ver = img.sections.get(".gnu.version")
    view = memoryview(data)
    return undefined_unversioned(
        view[dyn.offset : dyn.offset + dyn.size],
        bytes(view[strsec.offset : strsec.offset + strsec.size]),
        view[ver.offset : ver.offset + ver.size] if ver is not None else None,
        img.is64,
        img.little,
    )


_SHT = {
    "SHT_NULL": 0,
    "SHT_PROGBITS": 1,
    "SHT_SYMTAB": 2,
    "SHT_STRTAB": 3,
    "SHT_RELA": 4,
    "SHT_HASH": 5,
    "SHT_DYNAMIC": 6,
    "SHT_NOTE": 7,
    "SHT_NOBITS": 8,
    "SHT_REL": 9,
    "SHT_DYNSYM": 11,
}


@lru_cache(maxsize=1)
def _interesting_symbols() -> list[str]:
    names = [sym for b in _backend_data()["backend"] for sym in b.get("symbols", [])]
    names += [f"ggml_cpu_has_{k}" for k in isa_mod._data()["cpu_has"]]
    names += list(buildinfo.SYMBOLS)
    return names


def _max_versions(names) -> dict[str, str]:
    """The highest version each prefix asks for (GLIBC -> 2.34); a version no int() can read (a
    forged 5000-digit one) is ignored, not taken for damage."""
    from builddoctor.inspect.libs import _version_key

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


def _decode_cpu_code(facts: FileFacts, img: Image, name: str) -> bool:
    """Whether this file's own machine code says something about the build's CPU code."""
    bf = facts.file
    if "CPU" in bf.backends:
        return True
    if _LLAMA_LIBS.match(name) or (bf.backends and bf.role == "backend"):
        return False  # libllama, libggml-base, GPU backends: not the CPU backend's code
    # False for an executable whose CPU code lives in the shared ggml libraries
    return not any(n.startswith(("libggml", "libllama", "ggml", "llama")) for n in bf.needed)


def _common_facts(
    path: Path, facts: FileFacts, img: Image | None, arch: str, symbol_names: set[str] | None = None
) -> None:
    """Backends, llama markers and OpenMP, from names, symbols and NEEDED."""
    from builddoctor.inspect.discover import canonical_name

    bf = facts.file
    data = _backend_data()
    name = canonical_name(path.name)  # libggml-cpu-1a2b3c4d.so (auditwheel) is libggml-cpu.so

    def defines(sym: str) -> bool:
        if img is not None:
            return img.symbol(sym) is not None
        return symbol_names is not None and (sym in symbol_names or "_" + sym in symbol_names)

    # the names without Mach-O's leading "_", once, and joined: each prefix is then one search at
    # C speed (a llama-common.dll exports 20,000 names, and several prefixes are asked for)
    joined = "\0" + "\0".join(s.lstrip("_") for s in symbol_names) if img is None and symbol_names else ""

    def defines_prefix(prefix: str) -> bool:
        if img is not None:
            return img.defines_prefix(prefix)
        return ("\0" + prefix) in joined

    m = _BACKEND_LIB.match(name)
    by_name: str | None = None
    if m:
        lib = f"ggml-{m.group(1)}"
        for b in data["backend"]:
            if lib in b.get("libs", []):
                by_name = b["name"]
        if by_name == "CPU" and m.group(2):
            facts.cpu_variant = m.group(2)
    found: list[str] = []
    if by_name:
        found.append(by_name)
    has_reg = False
    for b in data["backend"]:
        for sym in b.get("symbols", []):
            if defines(sym):
                has_reg = True
                if b["name"] not in found:
                    found.append(b["name"])
    # a file with ggml inside (a monolithic module, or a llama.cpp from before the backend registry:
    # gpt4all's libllamamodel-*-cuda.so) is judged by the runtimes it links too
    is_ggml_file = bool(m) or name.startswith(("libggml", "ggml")) or has_reg or defines_prefix("ggml_")
    if is_ggml_file:
        needed = bf.needed
        for b in data["backend"]:
            prefixes = b.get("needed", [])
            if any(n.startswith(p) or ("/" in p and p in n) for n in needed for p in prefixes):
                if b["name"] not in found:
                    found.append(b["name"])
                over = b.get("overrides")
                if over and over in found and by_name != over:
                    found.remove(over)
    bf.backends = found
    facts.openmp = any(n.lower().startswith(p.lower()) for n in bf.needed for p in data["openmp"]["needed"])
    markers = (
        bool(found)
        or bool(m)
        or bool(_LLAMA_LIBS.match(name))
        or any(n.startswith(("libllama", "libggml", "llama.", "ggml")) for n in bf.needed)
        or defines_prefix("llama_")
        or defines_prefix("ggml_")
        or defines_prefix("gguf_")
    )
    if not markers and img is not None:
        markers = (
            img.find_in(".rodata", b"ggml_", limit=32 << 20) >= 0
            or img.find_in(".rodata", b"llama_model", limit=32 << 20) >= 0
        )
    facts.is_llama = markers


def _producers(img: Image) -> tuple[list[str], dict[str, Any]]:
    """DW_AT_producer strings (GCC records its switches there) and what they say.

    Found with ``bytes.find`` on fixed prefixes (memchr speed, GB/s) rather than a regex over
    a debug string table that can be tens of MB; at most 32 distinct producers are kept."""
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
        # the level most compile units used
        opts["opt"] = max(set(levels), key=levels.count)
        opts["levels"] = sorted(set(levels))
    return found, opts


def _has_fattn(img: Image) -> bool:
    return any(img.find_in(name, b"flash_attn") >= 0 for name in (".rodata", ".nv_fatbin", ".hip_fatbin"))


# --------------------------------------------------------------------------- Mach-O, PE


def _pick_slice(archs: list[str], prefer_arch: str | None) -> int:
    """The slice a loader on the machine being diagnosed would take: its arch, else this one's, else the first."""
    for want in (prefer_arch, platforms.host()[1]):
        for i, a in enumerate(archs):
            if want and platforms.canonical_arch(a) == platforms.canonical_arch(want):
                return i
    return 0


def _analyze_other(path: Path, facts: FileFacts, exec_bit: bool, prefer_arch: str | None = None) -> None:
    """Mach-O and PE, read from the file's mmap (inspect/foreign.py) after their headers are checked."""
    bf = facts.file
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if bf.format == "Mach-O":
            slices = macho_slices(data, bf.size)
            bf.os = "darwin"
            bf.archs = [a for a, _off in slices]
            pick = _pick_slice(bf.archs, prefer_arch)
            bf.arch = bf.archs[pick]
            macho = foreign.read_macho(data, bf.size, slices[pick][1])
        else:
            bf.archs = [pe_machine(data, bf.size)]
            bf.os = "windows"
            bf.arch = bf.archs[0]
            try:
                pe = foreign.read_pe(data, bf.size)
            except foreign.ForeignError as exc:
                raise _Bad(str(exc)) from None
            # the fatbin of a CUDA DLL is most of its 145 MB: its headers are read, not mapped
            bf.cuda_archs = fatbin.pe_cuda_archs(FileWindow(fh.fileno(), bf.size), pe.sections)
    if bf.format == "Mach-O":
        bf.needed = macho.libraries
        is_exec = macho.filetype == foreign.MH_EXECUTE
        symbols = macho.symbols
        bf.debug_info = any(name.startswith("__debug_") for name in macho.sections)
    else:
        bf.needed = pe.needed
        is_exec = not pe.is_dll
        symbols = set(pe.exports)
        bf.debug_info = pe.has_debug
    if is_exec:
        bf.role = "executable"
    elif bf.role == "unknown":
        bf.role = "library"
    facts.executable_here = bf.format == "Mach-O" and is_exec and exec_bit and runs_on_host(bf)
    _common_facts(path, facts, None, bf.arch or "", symbol_names=symbols)
    if "CPU" not in bf.backends and (
        isa_mod.names_carry_cpu_backend(symbols, path.name, bf.needed)
        or isa_mod.module_carries_cpu_backend(path, path.name, bf.needed)
    ):
        bf.backends.insert(0, "CPU")  # ggml's CPU code linked into a module (monolithic), as for ELF
        facts.is_llama = True
