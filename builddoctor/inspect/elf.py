"""One ELF file, read in named steps: its headers (pyelftools, headers only), its symbol tables
(inspect/image.py, in place in the mmap), then what they say: role, libraries and symbol versions
as this machine's loader sees them, CPU instruction sets, build info, GPU code.

pyelftools imports in ~0.1 s and parses lazily (it never reads a 100 MB library whole); its
section and segment objects parse their contents on creation, so only their headers are asked for.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from builddoctor import platforms
from builddoctor.inspect import buildinfo, fatbin
from builddoctor.inspect import isa as isa_mod
from builddoctor.inspect.discover import canonical_name
from builddoctor.inspect.filefacts import (
    BadFile,
    FileFacts,
    common_facts,
    decode_cpu_code,
    has_fattn,
    interesting_symbols,
    max_versions,
    producers,
    resolver,
    runs_on_host,
)
from builddoctor.inspect.headers import elf_header_problem, gnu_versions
from builddoctor.inspect.image import FileWindow, Image, Section, Segment, SymbolTable
from builddoctor.inspect.libs import defined_versions, load_problems, real, undefined_unversioned

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


@dataclass
class ElfHeaders:
    """What the program and section headers, the dynamic section and .gnu.version_r say."""

    e_type: int
    elf_class: int
    arch: str
    interp: str | None = None  # PT_INTERP's path; None: no PT_INTERP
    secs: list[Section] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)
    soname: str | None = None
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    required: dict[str, list[str]] = field(default_factory=dict)  # library -> versions asked of it


def analyze_elf(path: Path, fh: BinaryIO, head: bytes, facts: FileFacts, exec_bit: bool) -> None:
    """Fill ``facts`` from one ELF file (``fh`` open on it, ``head`` its first bytes)."""
    bf = facts.file
    hdr = _identify(head, bf.size)
    bf.arch = hdr.arch
    bf.archs = [hdr.arch]
    data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    img = Image(data=data, size=bf.size, is64=hdr.elf_class == 2, little=head[5] == 1)
    if hdr.arch == "aarch64":
        img.relative_types = (1027,)
    _read_headers(fh, img, hdr)
    bf.os = platforms.elf_os(head[7], hdr.interp or "", img.sections)
    _add_symbol_tables(img, hdr.secs)
    here = _set_role(facts, img, hdr, exec_bit)
    bf.needed = hdr.needed
    bf.symbol_versions = max_versions(v for names in hdr.required.values() for v in names)
    if here:
        _load_here(path, facts, img, hdr)
    bf.debug_info = ".debug_info" in img.sections
    img.prefetch(interesting_symbols())
    common_facts(path, facts, img)
    if "CPU" not in bf.backends and isa_mod.carries_cpu_backend(img, path.name, bf.needed):
        bf.backends.append("CPU")  # monolithic: the CPU backend linked into libllama, libggml, a module
    _cpu_code(path, facts, img, hdr.arch)
    _build_info(path, facts, img, hdr)
    _gpu_code(facts, img, fh)


def _identify(head: bytes, size: int) -> ElfHeaders:
    """Class, type and machine from the ELF header, after checking that its tables fit the file."""
    problem = elf_header_problem(head, size)
    if problem:
        raise BadFile(f"damaged ELF file, {problem}")
    (e_type, e_machine) = struct.unpack_from(("<" if head[5] == 1 else ">") + "HH", head, 16)
    arch = platforms.elf_arch(e_machine) or f"machine {e_machine}"
    return ElfHeaders(e_type=e_type, elf_class=head[4], arch=arch)


def _read_headers(fh: BinaryIO, img: Image, hdr: ElfHeaders) -> None:
    """Segments, sections, dynamic tags and required versions (pyelftools' errors as damage)."""
    from elftools.common.exceptions import ELFError  # noqa: PLC0415 (pyelftools is heavy: loaded when an ELF file is read)
    from elftools.elf.elffile import ELFFile  # noqa: PLC0415 (pyelftools is heavy: loaded when an ELF file is read)

    try:
        elf = ELFFile(fh)
        _read_segments(elf, img, hdr)
        dynamic, verneed = _read_sections(elf, img, hdr)
        if dynamic is not None:
            _read_dynamic(dynamic, hdr)
        if verneed is not None:
            for lib, names in gnu_versions(verneed):
                hdr.required.setdefault(lib, []).extend(names)
    except ELFError as exc:
        raise BadFile(f"damaged ELF file ({exc})") from None


def _read_segments(elf: Any, img: Image, hdr: ElfHeaders) -> None:
    """PT_INTERP's path and the PT_LOAD segments (one that ends past the file: truncated)."""
    size = img.size
    for i in range(elf.num_segments()):
        seg = elf._get_segment_header(i)
        ptype = seg["p_type"]
        if ptype == "PT_INTERP":
            raw = bytes(img.data[seg["p_offset"] : seg["p_offset"] + min(seg["p_filesz"], 512)])
            hdr.interp = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif ptype == "PT_LOAD":
            if seg["p_offset"] + seg["p_filesz"] > size:
                raise BadFile(
                    f"truncated ELF file: a code/data segment ends at byte "
                    f"{seg['p_offset'] + seg['p_filesz']}, but the file has only {size} bytes"
                )
            img.segments.append(Segment(seg["p_vaddr"], seg["p_offset"], seg["p_filesz"], seg["p_memsz"]))


def _read_sections(elf: Any, img: Image, hdr: ElfHeaders) -> tuple[Any, Any]:
    """The section headers into ``img``; (dynamic section, .gnu.version_r section) as pyelftools
    objects (their tags are typed loosely), None where absent."""
    dynamic: Any = None
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
        hdr.secs.append(sec)
        img.sections.setdefault(name, sec)
        if stype == "SHT_DYNAMIC":
            dynamic = elf.get_section(i)
        elif stype == "SHT_GNU_verneed":
            verneed = elf.get_section(i)
        if sec.type != 8 and sec.size and sec.offset + sec.size > img.size:
            raise BadFile(
                f"truncated ELF file: section {name} ends at byte {sec.offset + sec.size}, "
                f"but the file has only {img.size} bytes"
            )
    return dynamic, verneed


def _read_dynamic(dynamic: Any, hdr: ElfHeaders) -> None:
    for tag in dynamic.iter_tags():
        t = tag.entry.d_tag
        if t == "DT_NEEDED":
            hdr.needed.append(tag.needed)
        elif t == "DT_RPATH":
            hdr.rpath += [p for p in tag.rpath.split(":") if p]
        elif t == "DT_RUNPATH":
            hdr.runpath += [p for p in tag.runpath.split(":") if p]
        elif t == "DT_SONAME":
            hdr.soname = tag.soname


def _add_symbol_tables(img: Image, secs: list[Section]) -> None:
    """.dynsym and .symtab (each with its string table) and .rela.dyn, read in place."""
    for tab_name in (".dynsym", ".symtab"):
        symsec = img.sections.get(tab_name)
        if symsec is None or not symsec.size or symsec.link >= len(secs):
            continue
        strsec = secs[symsec.link]
        strtab = bytes(img.data[strsec.offset : strsec.offset + strsec.size])
        raw = memoryview(img.data)[symsec.offset : symsec.offset + symsec.size]
        tab = SymbolTable(strtab, raw, img.is64, img.little)
        tab.is_dynsym = tab_name == ".dynsym"
        img.symtabs.append(tab)
    rela = img.sections.get(".rela.dyn")
    if rela is not None:
        img.rela_sections.append(rela)


def _set_role(facts: FileFacts, img: Image, hdr: ElfHeaders, exec_bit: bool) -> bool:
    """Executable or library; whether this machine's loader takes the file."""
    bf = facts.file
    is_exec = hdr.e_type == 2 or hdr.interp is not None
    img.exported_only = not is_exec  # a library's API is in .dynsym: skip its big .symtab
    if is_exec:
        bf.role = "executable"
    elif bf.role == "unknown":
        bf.role = "library" if hdr.e_type == 3 else "unknown"
    here = runs_on_host(bf)
    facts.executable_here = is_exec and exec_bit and here
    return here


def _load_here(path: Path, facts: FileFacts, img: Image, hdr: ElfHeaders) -> None:
    """NEEDED resolved as ld.so would here; the versions and symbols the found libraries lack."""
    bf = facts.file
    origin = str(path.resolve().parent)
    res = resolver()
    for name in bf.needed:
        got = res.resolve(
            name, origin=origin, rpath=hdr.rpath, runpath=hdr.runpath, elf_class=hdr.elf_class, arch=hdr.arch
        )
        if got:
            facts.resolved[name] = got
        else:
            bf.missing_needed.append(name)
    for lib, versions in hdr.required.items():
        got = facts.resolved.get(lib)
        have = defined_versions(real(got)) if got else None
        if not have:
            continue
        bf.missing_versions += [f"{v} ({lib})" for v in versions if v not in have]
    imports = [] if bf.missing_needed else _unversioned_imports(img, hdr.secs)
    bf.load_problems = load_problems(hdr.required, facts.resolved, imports, resolver=res)


def _unversioned_imports(img: Image, secs: list[Section]) -> list[str]:
    """The file's strong undefined symbols without a version (what ld.so looks up by name)."""
    dyn = img.sections.get(".dynsym")
    if dyn is None or dyn.type != 11 or dyn.link >= len(secs):
        return []
    strsec = secs[dyn.link]
    ver = img.sections.get(".gnu.version")
    view = memoryview(img.data)
    return undefined_unversioned(
        view[dyn.offset : dyn.offset + dyn.size],
        bytes(view[strsec.offset : strsec.offset + strsec.size]),
        view[ver.offset : ver.offset + ver.size] if ver is not None else None,
        img.is64,
        img.little,
    )


def _cpu_code(path: Path, facts: FileFacts, img: Image, arch: str) -> None:
    """The CPU instruction sets the file's code uses (and how that was read)."""
    bf = facts.file
    text = img.sections.get(".text")
    text_t = (text.vaddr, text.offset, text.size) if text is not None and text.size else None
    res_isa = isa_mod.analyze(img, arch, text=text_t, cpu_code=decode_cpu_code(facts, canonical_name(path.name)))
    bf.isa = sorted(res_isa.features)
    bf.isa_detail = sorted(res_isa.detail)
    if arch in ("x86_64", "i386") and (res_isa.features or res_isa.decoded_bytes):
        bf.isa_level = res_isa.level or "sse"
    facts.compiled_for = res_isa.compiled_for
    facts.unoptimized = res_isa.unoptimized
    facts.isa_how = res_isa.how


def _build_info(path: Path, facts: FileFacts, img: Image, hdr: ElfHeaders) -> None:
    """Embedded build info (commit, version...), the SONAME's, and the compiler's switches."""
    facts.info = buildinfo.read(img, hdr.arch, local="CPU" in facts.file.backends)
    for key, value in buildinfo.from_soname(hdr.soname, path.name).items():
        facts.info.setdefault(key, value)
    if facts.file.debug_info:
        facts.producers, facts.opt_flags = producers(img)


def _gpu_code(facts: FileFacts, img: Image, fh: BinaryIO) -> None:
    """The GPU architectures of a CUDA fatbin or HIP bundle, and whether FlashAttention is in.

    A CUDA fatbin's headers are read one by one (FileWindow: not mapped, so a 300 MB section does
    not become resident); a HIP bundle's names are searched in place in the mmap, at most 64 MB."""
    bf = facts.file
    size = img.size
    for name, reader, src, cap in (
        (".nv_fatbin", fatbin.cuda_archs, FileWindow(fh.fileno(), size), None),
        (".hip_fatbin", fatbin.hip_targets, img.data, 64 << 20),
    ):
        gpusec = img.sections.get(name)
        if gpusec is not None and gpusec.type != 8 and gpusec.offset < size:
            end = min(gpusec.offset + min(gpusec.size, cap or gpusec.size), size)
            bf.cuda_archs += reader(src, gpusec.offset, end)
    if {"CUDA", "HIP", "MUSA"} & set(bf.backends):
        facts.flash_attn = has_fattn(img)
