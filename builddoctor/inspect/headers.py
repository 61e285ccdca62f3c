"""Header checks: whether a file's own tables fit in it, before anything reads them.

pyelftools reads whatever a damaged header says (and a forged version chain makes it loop), so the
few fields that say where a file runs and where its tables end are checked here first, and a damaged
file gets one sentence (ImageError) instead of a diagnosis.
"""

from __future__ import annotations

import struct

from builddoctor.inspect.image import ImageError
from builddoctor.platforms import macho_arch, pe_arch


def elf_header_problem(head: bytes, size: int) -> str | None:
    """Why an ELF file cannot be complete, from its header alone; None when it looks whole."""
    if len(head) < 16:
        return f"only {size} bytes: a truncated ELF header"
    is64 = head[4] == 2
    little = head[5] == 1
    if head[4] not in (1, 2) or head[5] not in (1, 2):
        return "damaged ELF header (unknown class or byte order)"
    e = "<" if little else ">"
    need = 64 if is64 else 52
    if len(head) < need:
        return f"only {size} bytes: a truncated ELF header"
    if is64:
        phoff, shoff = struct.unpack_from(e + "QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(e + "HHHH", head, 54)
    else:
        phoff, shoff = struct.unpack_from(e + "II", head, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(e + "HHHH", head, 42)
    if phnum and phoff + phentsize * phnum > size:
        return (
            f"truncated: its program headers end at byte {phoff + phentsize * phnum}, "
            f"but the file has only {size} bytes"
        )
    if shnum and shoff + shentsize * shnum > size:
        return (
            f"truncated: its section headers end at byte {shoff + shentsize * shnum}, "
            f"but the file has only {size} bytes"
        )
    return None


# --------------------------------------------------------------------------- Mach-O and PE headers
#
# LIEF reads whatever follows a Mach-O or PE magic, random bytes included (it parses them as a
# library with an unknown CPU type and no symbols). These checks read the few header fields that
# say where the file runs and whether its tables fit in it, so that a damaged file gets one
# sentence instead of a diagnosis.

MACHO_THIN = {
    b"\xcf\xfa\xed\xfe": ("<", 32),
    b"\xce\xfa\xed\xfe": ("<", 28),
    b"\xfe\xed\xfa\xcf": (">", 32),
    b"\xfe\xed\xfa\xce": (">", 28),
}
_MACHO_MAX_FILETYPE = 12  # MH_FILESET, the highest in <mach-o/loader.h>


def macho_slices(data, size: int) -> list[tuple[str, int]]:
    """(arch, offset) of each slice of a Mach-O file (one for a thin file), header checked.

    Raises ImageError with the reason when the header is not a Mach-O's a loader would take."""
    head = bytes(data[:8])
    if head[:4] == b"\xca\xfe\xba\xbe":
        (n,) = struct.unpack_from(">I", head, 4)
        if 8 + 20 * n > size:
            raise ImageError(f"damaged or truncated fat Mach-O file: its {n} slice headers end past its {size} bytes")
        out = []
        for i in range(n):
            cputype, _sub, off, length, _align = struct.unpack_from(">iiIII", bytes(data[8 + 20 * i : 28 + 20 * i]))
            if off + length > size or length < 28:
                raise ImageError(
                    f"damaged or truncated fat Mach-O file: slice {i + 1} of {n} ends at byte "
                    f"{off + length}, but the file has only {size} bytes"
                )
            arch = _macho_thin(data, off, length)
            if macho_arch(cputype & 0xFFFFFFFF) != arch:
                raise ImageError(
                    f"damaged fat Mach-O file: slice {i + 1} says CPU type {cputype:#x} in the fat "
                    f"header and {arch} in its own"
                )
            out.append((arch, off))
        return out
    return [(_macho_thin(data, 0, size), 0)]


def _macho_thin(data, off: int, size: int) -> str:
    magic = bytes(data[off : off + 4])
    if magic not in MACHO_THIN:
        raise ImageError("damaged Mach-O file: a slice does not start with a Mach-O header")
    e, hsize = MACHO_THIN[magic]
    if size < hsize:
        raise ImageError(f"only {size} bytes: a truncated Mach-O header")
    cputype, _sub, filetype, ncmds, sizeofcmds = struct.unpack_from(e + "iiIII", bytes(data[off + 4 : off + 24]))
    arch = macho_arch(cputype & 0xFFFFFFFF)
    if arch is None:
        raise ImageError(f"damaged Mach-O file: unknown CPU type {cputype & 0xFFFFFFFF:#x} in its header")
    if not 1 <= filetype <= _MACHO_MAX_FILETYPE:
        raise ImageError(f"damaged Mach-O file: unknown file type {filetype} in its header")
    if hsize + sizeofcmds > size or ncmds * 8 > sizeofcmds:
        raise ImageError(
            f"damaged or truncated Mach-O file: {ncmds} load commands of {sizeofcmds} bytes do not fit in {size} bytes"
        )
    pos, end = off + hsize, off + hsize + sizeofcmds
    for i in range(ncmds):
        (cmd, cmdsize) = struct.unpack_from(e + "II", bytes(data[pos : pos + 8]))
        if cmdsize < 8 or cmdsize % 4 or pos + cmdsize > end:
            raise ImageError(
                f"damaged Mach-O file: load command {i + 1} of {ncmds} has a size of {cmdsize} bytes "
                "that does not fit its header"
            )
        body = bytes(data[pos : pos + min(cmdsize, 56)])
        reach = None  # where the bytes this command points at end, inside the slice
        if cmd == _LC_SEGMENT_64 and len(body) >= 56:
            fileoff, filesize = struct.unpack_from(e + "QQ", body, 40)
            reach = (fileoff + filesize, "a segment")
        elif cmd == _LC_SEGMENT and len(body) >= 40:
            fileoff, filesize = struct.unpack_from(e + "II", body, 32)
            reach = (fileoff + filesize, "a segment")
        elif cmd == _LC_SYMTAB and len(body) >= 24:
            symoff, nsyms, stroff, strsize = struct.unpack_from(e + "IIII", body, 8)
            reach = (max(symoff + nsyms * (16 if hsize == 32 else 12), stroff + strsize), "its symbol table")
        if reach and reach[0] > size:
            raise ImageError(
                f"truncated Mach-O file: {reach[1]} ends at byte {reach[0]}, but the "
                f"{'slice' if off else 'file'} has only {size} bytes"
            )
        pos += cmdsize
    return arch


_LC_SEGMENT, _LC_SYMTAB, _LC_SEGMENT_64 = 0x1, 0x2, 0x19


_PE_MAX_SECTIONS = 96  # the PE format's limit (the Windows loader refuses more)


def pe_machine(data, size: int) -> str:
    """The architecture of a PE file, its headers checked (ImageError with the reason)."""
    if size < 64:
        raise ImageError(f"only {size} bytes: a truncated MZ/PE header")
    (lfanew,) = struct.unpack_from("<I", bytes(data[0x3C:0x40]))
    if lfanew + 24 > size or bytes(data[lfanew : lfanew + 4]) != b"PE\0\0":
        raise ImageError("damaged PE file (or an MS-DOS program): no 'PE' signature where its MZ header points")
    machine, nsec, _t, symptr, nsyms, opt_size, _c = struct.unpack_from(
        "<HHIIIHH", bytes(data[lfanew + 4 : lfanew + 24])
    )
    arch = pe_arch(machine)
    if arch is None:
        raise ImageError(f"damaged PE file: unknown machine type {machine:#06x} in its header")
    opt = lfanew + 24
    if opt_size < 2 or opt + opt_size > size or bytes(data[opt : opt + 2]) not in (b"\x0b\x01", b"\x0b\x02"):
        raise ImageError("damaged PE file: no optional header (PE32/PE32+) after its COFF header")
    table = opt + opt_size
    if not 0 < nsec <= _PE_MAX_SECTIONS or table + 40 * nsec > size:
        raise ImageError(f"damaged or truncated PE file: {nsec} section headers do not fit in {size} bytes")
    if symptr:  # the COFF symbol table and its string table (mingw keeps them) end the file
        strtab = symptr + 18 * nsyms
        sym_end = strtab + (struct.unpack("<I", bytes(data[strtab : strtab + 4]))[0] if strtab + 4 <= size else 4)
        if sym_end > size:
            raise ImageError(
                f"truncated PE file: its symbol table ends at byte {sym_end}, but the file has only {size} bytes"
            )
    for i in range(nsec):
        raw_size, raw_ptr = struct.unpack_from("<II", bytes(data[table + 40 * i + 16 : table + 40 * i + 24]))
        if raw_size and raw_ptr + raw_size > size:
            raise ImageError(
                f"truncated PE file: section {i + 1} ends at byte {raw_ptr + raw_size}, "
                f"but the file has only {size} bytes"
            )
    return arch


# --------------------------------------------------------------------------- ELF symbol versions


def gnu_versions(section) -> list[tuple[str, list[str]]]:
    """(name, [auxiliary names]) of a pyelftools .gnu.version_r / .gnu.version_d section, bounded.

    pyelftools follows each entry's ``next`` offset ``sh_info`` times; a ``next`` of 0 (or one
    pointing back) with a huge ``sh_info`` makes it read the same 16 bytes billions of times, a hang
    from a 4 KB file. Each entry and each auxiliary entry takes at least 8 bytes (Elf_Verdaux; the
    others 16 or 20), so a section holds at most ``sh_size // 8`` of them: that is the budget, and a
    chain ends where its ``next`` is 0."""
    budget = max(1, section["sh_size"] // 8)
    prefix = section.field_prefix  # "vn" (needed) or "vd" (defined)
    out: list[tuple[str, list[str]]] = []
    versions = section.iter_versions()
    while budget > 0:
        try:
            ver, auxs = next(versions)
        except StopIteration:
            break
        budget -= 1
        names = []
        for aux in auxs:
            names.append(aux.name)
            budget -= 1
            if budget <= 0 or not aux.entry[prefix + "a_next"]:
                break
        out.append((ver.name or "", names))
        if not ver.entry[prefix + "_next"]:
            break
    return out
