"""GPU code compiled into a binary: CUDA fatbins (.nv_fatbin) and HIP offload bundles.

A CUDA fatbin section holds one or more containers (16-byte header: magic 0xBA55ED50,
u16 version, u16 header size, u64 size of the entries). Each entry starts with u16 kind
(1 = PTX, 2 = ELF cubin, i.e. SASS), u16, u32 entry header size, u64 padded payload size,
and at byte 28 the u32 SM architecture (86 = sm_86). The next entry starts after the
entry header plus the padded payload. Layout checked against fatbins nvcc 13.0 writes
here (tests/elf_fixtures.py makes one); the payload itself may be zstd-compressed and is
not needed.
"""

from __future__ import annotations

import re
import struct

FATBIN_MAGIC = 0xBA55ED50
# nvcc writes one container per translation unit, each with the same -gencode list: after this many
# containers in a row that add no architecture, the rest (thousands, in a big extension) are not read.
QUIET_CONTAINERS = 256
KIND_PTX = 1
KIND_ELF = 2


def cuda_archs(blob, start: int = 0, end: int | None = None) -> list[str]:
    """Sorted unique "sm_86" (SASS) and "compute_89" (PTX) names in a .nv_fatbin section.

    ``blob`` is the section's bytes, or the whole file (an mmap, or better an image.FileWindow,
    which does not map the pages around each header into memory) with the section's ``start``
    and ``end`` offsets: a CUDA library's fatbin is hundreds of MB, and only its headers are read
    (one container header, then entry headers hop over the payloads), never a copy of it."""
    found: set[tuple[int, str]] = set()
    quiet = 0  # containers in a row that named no new arch
    off = start
    n = len(blob) if end is None else min(end, len(blob))
    magic_bytes = struct.pack("<I", FATBIN_MAGIC)
    while off + 16 <= n:
        magic, _version, hsize, fsize = struct.unpack("<IHHQ", blob[off : off + 16])
        if magic != FATBIN_MAGIC or hsize < 16:
            # containers are 8-aligned; skip padding between them
            nxt = blob.find(magic_bytes, off + 1, n)
            if nxt < 0:
                break
            off = nxt
            continue
        stop = min(off + hsize + fsize, n)
        e = off + hsize
        before = len(found)
        while e + 32 <= stop:
            kind, _v, ehsize, padded, _skip, arch = struct.unpack("<HHIQ12sI", blob[e : e + 32])
            if ehsize < 32 or ehsize > 4096:
                break
            if 10 <= arch < 1000:
                if kind == KIND_PTX:
                    found.add((arch, f"compute_{arch}"))
                elif kind in (KIND_ELF, 0x10):
                    found.add((arch, f"sm_{arch}"))
            e += ehsize + padded
        off = max(stop, off + 16)
        quiet = quiet + 1 if len(found) == before else 0
        if quiet >= QUIET_CONTAINERS:
            break
    return [name for _arch, name in sorted(found, key=lambda t: (t[0], t[1].startswith("compute")))]


# A PE section name has at most 8 characters: nvcc's .nv_fatbin is ".nv_fatb" in a Windows DLL.
PE_FATBIN_SECTIONS = (".nv_fatb", ".nv_fatbin")


def pe_cuda_archs(data, sections: list[tuple[str, int, int]]) -> list[str]:
    """CUDA archs of a PE file, from its (name, file offset, size) sections, read in ``data`` (the
    file, as an image.FileWindow or mmap): only the container and entry headers are read."""
    archs: list[str] = []
    for name, off, size in sections:
        if name in PE_FATBIN_SECTIONS and size and off < len(data):
            archs += [a for a in cuda_archs(data, off, min(off + size, len(data))) if a not in archs]
    return archs


_GFX = re.compile(rb"amdgcn-amd-amdhsa-[a-z0-9]*-(gfx[0-9a-f]+)")


def hip_targets(blob, start: int = 0, end: int | None = None) -> list[str]:
    """gfx targets named in a HIP offload bundle (__CLANG_OFFLOAD_BUNDLE__ entries); ``blob`` may be
    the file's mmap (searched in place)."""
    return sorted({m.group(1).decode() for m in _GFX.finditer(blob, start, len(blob) if end is None else end)})
