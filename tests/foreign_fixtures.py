"""Small real files for other platforms, made at test time.

* Linux aarch64 ELF: compiled with Debian's cross compiler (gcc-aarch64-linux-gnu).
* Windows x86_64 PE DLL: compiled with mingw-w64 (gcc-mingw-w64-x86-64).
* Mach-O (thin and fat): there is no Mach-O toolchain on Linux here, so ``macho_dylib`` writes one
  byte by byte with ``struct`` from the layout in Apple's <mach-o/loader.h> and <mach-o/fat.h>:
  a header, a __TEXT segment with one __text section, LC_ID_DYLIB, LC_LOAD_DYLIB entries and an
  LC_SYMTAB whose external symbols are the names given. LIEF (which builddoctor reads Mach-O with)
  and any Mach-O reader parse it like a linker's output.

Each ``make_*`` raises ``Missing`` with the package to install when its compiler is absent, so that
tests skip with that reason.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from builddoctor import proc

AARCH64_GCC = shutil.which("aarch64-linux-gnu-gcc")
MINGW_GCC = shutil.which("x86_64-w64-mingw32-gcc")

# the symbols the inspector recognises a CPU backend by (ggml_backend_cpu_reg), plain C for any target
CPU_BACKEND_C = r"""
int ggml_backend_cpu_reg(void) { return 1; }
float ggml_vec_dot_f32(int n, const float *x, const float *y) {
    float s = 0; for (int i = 0; i < n; i++) s += x[i] * y[i]; return s;
}
const char *ggml_cpu_name = "ggml-cpu";
/* what ggml-cpu.c answers for a baseline build (compile-time constants) */
int ggml_cpu_has_neon(void) { return 1; }
int ggml_cpu_has_dotprod(void) { return 0; }
"""


class Missing(RuntimeError):
    """A cross compiler is not installed: the message says which package brings it."""


def _compile(cc: str | None, package: str, args: list[str], d: Path) -> None:
    if cc is None:
        raise Missing(f"{package} is not installed (apt-get install {package})")
    res = proc.run([cc, *args], cwd=d, timeout=120)
    if not res.ok:
        raise RuntimeError(f"{cc} {' '.join(args)} failed:\n{res.stderr}")


def make_aarch64_cpu_backend(d: Path, name: str = "libggml-cpu.so") -> Path:
    """<d>/libggml-cpu.so for Linux aarch64 (NEON baseline), with the CPU backend's symbols."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "cpu.c").write_text(CPU_BACKEND_C)
    lib = d / name
    _compile(AARCH64_GCC, "gcc-aarch64-linux-gnu", ["-O2", "-shared", "-fPIC", "cpu.c", "-o", str(lib)], d)
    (d / "cpu.c").unlink()
    return lib


def make_aarch64_program(d: Path, name: str = "llama-cli") -> Path:
    """<d>/llama-cli: an aarch64 Linux executable (exec bit set) with llama.cpp's entry symbols."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "main.c").write_text(
        "int llama_backend_init(void) { return 0; }\nint main(void) { return llama_backend_init(); }\n"
    )
    exe = d / name
    _compile(AARCH64_GCC, "gcc-aarch64-linux-gnu", ["-O1", "main.c", "-o", str(exe)], d)
    (d / "main.c").unlink()
    return exe


def make_windows_cpu_backend(d: Path, name: str = "ggml-cpu.dll") -> Path:
    """<d>/ggml-cpu.dll for Windows x86_64 (imports KERNEL32.dll and the C runtime)."""
    d.mkdir(parents=True, exist_ok=True)
    exported = "__declspec(dllexport) int ggml_backend_cpu_reg"
    (d / "cpu.c").write_text(CPU_BACKEND_C.replace("int ggml_backend_cpu_reg", exported))
    lib = d / name
    _compile(MINGW_GCC, "gcc-mingw-w64-x86-64", ["-O2", "-shared", "cpu.c", "-o", str(lib)], d)
    (d / "cpu.c").unlink()
    return lib


# --------------------------------------------------------------------------- Mach-O, by hand

MH_MAGIC_64 = 0xFEEDFACF
FAT_MAGIC = 0xCAFEBABE
CPU_TYPE = {"x86_64": (0x01000007, 3), "arm64": (0x0100000C, 0)}  # cputype, cpusubtype (ALL)
MH_EXECUTE, MH_DYLIB = 2, 6
LC_SYMTAB, LC_ID_DYLIB, LC_LOAD_DYLIB, LC_SEGMENT_64 = 0x2, 0xD, 0xC, 0x19


def _pad(b: bytes, n: int = 8) -> bytes:
    return b + b"\0" * (-len(b) % n)


def _dylib_cmd(cmd: int, name: str) -> bytes:
    s = _pad(name.encode() + b"\0")
    return struct.pack("<IIIIII", cmd, 24 + len(s), 24, 2, 0x10000, 0x10000) + s


def macho_dylib(
    arch: str,
    symbols: list[str],
    *,
    needs: list[str] = (),
    install_name: str = "@rpath/libggml.dylib",
    filetype: int = MH_DYLIB,
    section_name: bytes = b"__text",
) -> bytes:
    """A thin 64-bit little-endian Mach-O: __TEXT,__text with a `ret` per symbol, the symbols
    external and defined there, LC_LOAD_DYLIB for each of ``needs``."""
    cputype, subtype = CPU_TYPE[arch]
    ret = b"\xc0\x03\x5f\xd6" if arch == "arm64" else b"\xc3\x90\x90\x90"  # ret (AArch64) / ret; nop (x86)
    code = ret * max(1, len(symbols))
    strtab = b"\0" + b"".join(b"_" + s.encode() + b"\0" for s in symbols)
    strtab = _pad(strtab)

    cmds_wo_seg = _dylib_cmd(LC_ID_DYLIB, install_name) + b"".join(_dylib_cmd(LC_LOAD_DYLIB, n) for n in needs)
    seg_size = 72 + 80
    symtab_size = 24
    sizeofcmds = seg_size + len(cmds_wo_seg) + symtab_size
    ncmds = 2 + 1 + len(needs)
    header_size = 32
    text_off = _align(header_size + sizeofcmds, 16)
    nlist_off = _align(text_off + len(code), 8)
    str_off = nlist_off + 16 * len(symbols)
    file_size = str_off + len(strtab)
    vm_base = 0
    segment = struct.pack(
        "<II16sQQQQiiII", LC_SEGMENT_64, seg_size, b"__TEXT", vm_base, _align(file_size, 4096), 0, file_size, 5, 5, 1, 0
    )
    section = struct.pack(
        "<16s16sQQIIIIIIII",
        section_name,
        b"__TEXT",
        vm_base + text_off,
        len(code),
        text_off,
        2,
        0,
        0,
        0x80000400,
        0,
        0,
        0,
    )
    nlists = b""
    pos = 1
    for i, s in enumerate(symbols):
        nlists += struct.pack("<IBBHQ", pos, 0x0F, 1, 0, vm_base + text_off + 4 * i)  # N_SECT | N_EXT, section 1
        pos += len(s) + 2
    symtab = struct.pack("<IIIIII", LC_SYMTAB, symtab_size, nlist_off, len(symbols), str_off, len(strtab))
    header = struct.pack("<IiiIIIII", MH_MAGIC_64, cputype, subtype, filetype, ncmds, sizeofcmds, 0x100085, 0)
    out = bytearray(header + segment + section + cmds_wo_seg + symtab)
    assert len(out) == header_size + sizeofcmds
    out += b"\0" * (text_off - len(out)) + code
    out += b"\0" * (nlist_off - len(out)) + nlists + strtab
    assert len(out) == file_size
    return bytes(out)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def fat_macho(slices: dict[str, bytes]) -> bytes:
    """A fat (universal) file: the big-endian fat header, one fat_arch per slice, slices 4 KiB aligned."""
    head = struct.pack(">II", FAT_MAGIC, len(slices))
    offset = 4096
    archs = b""
    body = b""
    for arch, data in slices.items():
        cputype, subtype = CPU_TYPE[arch]
        archs += struct.pack(">iiIII", cputype, subtype, offset, len(data), 12)
        chunk = data + b"\0" * (-len(data) % 4096)
        body += chunk
        offset += len(chunk)
    return head + archs + b"\0" * (4096 - len(head) - len(archs)) + body


METAL_SYMBOLS = ["ggml_backend_metal_reg", "ggml_backend_cpu_reg", "ggml_init", "llama_model_load"]
METAL_NEEDS = [
    "/System/Library/Frameworks/Metal.framework/Versions/A/Metal",
    "/System/Library/Frameworks/Foundation.framework/Versions/C/Foundation",
    "/usr/lib/libSystem.B.dylib",
]


def make_macho_metal_lib(d: Path, arch: str = "arm64", name: str = "libggml.dylib") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_bytes(macho_dylib(arch, METAL_SYMBOLS, needs=METAL_NEEDS))
    return p


def make_fat_macho_lib(d: Path, name: str = "libggml.dylib") -> Path:
    """x86_64 (CPU backend only) + arm64 (Metal and CPU): the slices differ, so a test can tell
    which one was read."""
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_bytes(
        fat_macho(
            {
                "x86_64": macho_dylib("x86_64", ["ggml_backend_cpu_reg", "ggml_init"], needs=METAL_NEEDS[2:]),
                "arm64": macho_dylib("arm64", METAL_SYMBOLS, needs=METAL_NEEDS),
            }
        )
    )
    return p


# --------------------------------------------------------------------------- large Windows DLLs


def make_windows_many_exports(d: Path, n: int, name: str = "llama-common.dll") -> Path:
    """<d>/<name>: a Windows x86_64 DLL exporting ``n`` C functions ``llama_common_fn_<i>`` (a real
    ``llama-common.dll`` exports 18,000 names), the CPU backend's registration among them."""
    d.mkdir(parents=True, exist_ok=True)
    body = [f"__declspec(dllexport) int llama_common_fn_{i:06d}(int x) {{ return x + {i}; }}" for i in range(n)]
    (d / "many.c").write_text(
        "\n".join(body)
        + "\n"
        + CPU_BACKEND_C.replace("int ggml_backend_cpu_reg", "__declspec(dllexport) int ggml_backend_cpu_reg")
    )
    lib = d / name
    _compile(MINGW_GCC, "gcc-mingw-w64-x86-64", ["-O0", "-shared", "many.c", "-o", str(lib)], d)
    (d / "many.c").unlink()
    return lib


def make_big_cuda_dll(d: Path, mb: int = 150) -> Path:
    """<d>/ggml-cuda.dll: a Windows x86_64 DLL (mingw-w64) whose ``.nv_fatb`` section holds ``mb`` MB of
    the real fatbin containers nvcc writes (tests/elf_fixtures.make_cuda_fatbin: sm_86 SASS, compute_89
    PTX), one after another as in a ``ggml-cuda.dll`` of 145 MB, where one container comes per
    translation unit. Raises Missing without mingw-w64, RuntimeError without nvcc."""
    from tests import elf_fixtures as fx

    if MINGW_GCC is None:
        raise Missing("gcc-mingw-w64-x86-64 is not installed (apt-get install gcc-mingw-w64-x86-64)")
    d.mkdir(parents=True, exist_ok=True)
    elf = fx.make_cuda_fatbin(d / "elf")
    one = d / "one.bin"
    res = proc.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", str(elf), str(one)], timeout=60)
    if not res.ok:
        raise RuntimeError(res.stderr)
    blob = one.read_bytes()
    blob += b"\0" * (-len(blob) % 8)  # containers are 8-aligned
    fat = d / "fat.bin"
    with open(fat, "wb") as fh:
        for _ in range(mb * 1_000_000 // len(blob) + 1):
            fh.write(blob)
    (d / "cuda.c").write_text("__declspec(dllexport) int ggml_backend_cuda_reg(void) { return 1; }\n")
    dll = d / "ggml-cuda.dll"
    _compile(MINGW_GCC, "gcc-mingw-w64-x86-64", ["-shared", "-O1", "cuda.c", "-o", str(dll)], d)
    res = proc.run(
        [
            "objcopy",
            "--add-section",
            f".nv_fatb={fat}",
            "--set-section-flags",
            ".nv_fatb=contents,alloc,load,readonly,data",
            str(dll),
        ],
        cwd=d,
        timeout=300,
    )
    if not res.ok:
        raise RuntimeError(f"objcopy failed:\n{res.stderr}")
    shutil.rmtree(d / "elf")
    for p in (one, fat, d / "cuda.c"):
        p.unlink()
    return dll
