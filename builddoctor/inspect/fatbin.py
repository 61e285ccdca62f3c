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
KIND_PTX = 1
KIND_ELF = 2


def cuda_archs(blob: bytes) -> list[str]:
    """Sorted unique "sm_86" (SASS) and "compute_89" (PTX) names in a .nv_fatbin section."""
    found: set[tuple[int, str]] = set()
    off = 0
    n = len(blob)
    while off + 16 <= n:
        magic, _version, hsize, fsize = struct.unpack_from("<IHHQ", blob, off)
        if magic != FATBIN_MAGIC or hsize < 16:
            # containers are 8-aligned; skip padding between them
            nxt = blob.find(struct.pack("<I", FATBIN_MAGIC), off + 1)
            if nxt < 0:
                break
            off = nxt
            continue
        end = min(off + hsize + fsize, n)
        e = off + hsize
        while e + 32 <= end:
            kind, _v, ehsize, padded = struct.unpack_from("<HHIQ", blob, e)
            (arch,) = struct.unpack_from("<I", blob, e + 28)
            if ehsize < 32 or ehsize > 4096:
                break
            if 10 <= arch < 1000:
                if kind == KIND_PTX:
                    found.add((arch, f"compute_{arch}"))
                elif kind in (KIND_ELF, 0x10):
                    found.add((arch, f"sm_{arch}"))
            e += ehsize + padded
        off = max(end, off + 16)
    return [name for _arch, name in sorted(found, key=lambda t: (t[0], t[1].startswith("compute")))]


_GFX = re.compile(rb"amdgcn-amd-amdhsa-[a-z0-9]*-(gfx[0-9a-f]+)")


def hip_targets(blob) -> list[str]:
    """gfx targets named in a HIP offload bundle (__CLANG_OFFLOAD_BUNDLE__ entries)."""
    return sorted({m.group(1).decode() for m in _GFX.finditer(bytes(blob))})
