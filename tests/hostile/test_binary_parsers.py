"""Hostile and damaged binaries: each gets one clear sentence, fast, never a hang or exit 70.

The inputs are made here: real files from gcc / mingw-w64 (then patched where a field is to be
hostile), Mach-O files written byte by byte (tests/foreign_fixtures.py), and random bytes after
each format's magic (seeded, so a failure repeats).
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builddoctor import errors
from builddoctor.inspect import inspect_binary
from tests import elf_fixtures as fx
from tests import foreign_fixtures as ff


def check(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", "check", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def _section_header_offset(path: Path, name: str) -> int:
    """File offset of a section's header (Elf64_Shdr), found with pyelftools."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        for i in range(elf.num_sections()):
            if elf.get_section(i).name == name:
                return elf["e_shoff"] + i * elf["e_shentsize"]
    raise AssertionError(f"{path} has no {name}")


def _patch_sh_info(path: Path, section: str, value: int) -> None:
    """sh_info of a version section is its entry count: a huge one makes a reader that follows it
    read the last entry (whose next is 0) again and again."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, _section_header_offset(path, section) + 44, value)  # Elf64_Shdr.sh_info
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- ELF version chains


def test_looping_version_needs_do_not_hang(elf_dir, tmp_path):
    d = tmp_path / "verneed"
    d.mkdir()
    (d / "base.c").write_text('#include <stdio.h>\nint ggml_init(void) { return puts("ggml"); }\n')
    lib = d / "libggml-base.so"
    fx._cc(["-shared", "-fPIC", "base.c", "-o", str(lib)], d)
    _patch_sh_info(lib, ".gnu.version_r", 0xFFFFFFFF)
    t0 = time.monotonic()
    bf = inspect_binary(lib)
    assert time.monotonic() - t0 < 2
    assert bf.error is None and "GLIBC" in bf.symbol_versions  # the real entries are still read
    done = check(lib)
    assert "Traceback" not in done.stderr and done.returncode in (errors.OK, errors.PROBLEMS), done.stderr


def test_looping_version_definitions_of_a_needed_library_do_not_hang(elf_dir, tmp_path):
    """The chain of a library found for a NEEDED entry (its .gnu.version_d) is read too."""
    d = tmp_path / "verdef"
    d.mkdir()
    (d / "stub.c").write_text("int stub_call(void) { return 0; }\n")
    (d / "stub.map").write_text("STUB_1.0 { global: stub_call; local: *; };\n")
    fx._cc(
        ["-shared", "-fPIC", "-Wl,-soname,libstub.so", "-Wl,--version-script=stub.map", "stub.c", "-o", "libstub.so"], d
    )
    (d / "base.c").write_text("int stub_call(void);\nint ggml_init(void) { return stub_call(); }\n")
    fx._cc(["-shared", "-fPIC", "base.c", "-o", "libggml-base.so", "-L.", "-lstub", "-Wl,-rpath,$ORIGIN"], d)
    _patch_sh_info(d / "libstub.so", ".gnu.version_d", 0xFFFFFFFF)
    t0 = time.monotonic()
    bf = inspect_binary(d / "libggml-base.so")
    assert time.monotonic() - t0 < 2
    assert bf.error is None and bf.missing_versions == []  # STUB_1.0 is still found among the definitions


# --------------------------------------------------------------------------- garbage after a magic

MAGICS = {
    "libggml-cpu.dylib": b"\xcf\xfa\xed\xfe",  # thin 64-bit Mach-O
    "libggml-base.dylib": b"\xca\xfe\xba\xbe\x00\x00\x00\x02",  # fat Mach-O, 2 slices
    "ggml-cpu.dll": b"MZ",
}


def _pe_signature_then_garbage(rng: random.Random) -> bytes:
    """MZ whose e_lfanew points at a real 'PE\\0\\0' signature, then random bytes."""
    data = bytearray(rng.randbytes(4096))
    data[:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, 0x80)
    data[0x80:0x84] = b"PE\0\0"
    return bytes(data)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", [*MAGICS, "llama.dll"])
def test_random_bytes_after_a_magic_are_damaged_not_healthy(tmp_path, name, seed):
    rng = random.Random(seed)
    if name == "llama.dll":
        data = _pe_signature_then_garbage(rng)
    else:
        data = MAGICS[name] + rng.randbytes(4096 - len(MAGICS[name]))
    path = tmp_path / name
    path.write_bytes(data)
    t0 = time.monotonic()
    bf = inspect_binary(path)
    assert time.monotonic() - t0 < 1
    assert bf.error and "damaged" in bf.error, bf
    done = check(path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == errors.USAGE, (done.returncode, done.stdout)  # nothing to check; never "healthy"
    assert name in done.stderr and "damaged" in done.stderr, done.stderr
    assert done.stderr.count("\n") <= 2  # one paragraph


# --------------------------------------------------------------------------- names that are not UTF-8


def test_non_utf8_macho_names(tmp_path):
    # a section name and a symbol name that are not UTF-8 (the symbol's "\xff" is written as UTF-8
    # "\xc3\xbf", then replaced by the same number of bytes that decode as nothing)
    bad = ff.macho_dylib(
        "arm64", ff.METAL_SYMBOLS + ["ggml_\xff_odd"], needs=ff.METAL_NEEDS, section_name=b"\xff\xfe\x80text"
    )
    bad = bad.replace(b"ggml_\xc3\xbf_odd", b"ggml_\xff\x80_odd")
    assert b"ggml_\xff\x80_odd" in bad
    lib = tmp_path / "libggml.dylib"
    lib.write_bytes(bad)
    bf = inspect_binary(lib)
    assert bf.error is None and "Metal" in bf.backends, bf
    done = check("--json", lib)
    assert done.returncode != errors.INTERNAL and "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (errors.OK, errors.PROBLEMS)


# --------------------------------------------------------------------------- truncated real files


def test_truncated_foreign_files_get_one_sentence_fast(tmp_path):
    sources = {
        "libggml.dylib": ff.macho_dylib("arm64", ff.METAL_SYMBOLS, needs=ff.METAL_NEEDS),
        "fat.dylib": ff.fat_macho(
            {"x86_64": ff.macho_dylib("x86_64", ["ggml_init"]), "arm64": ff.macho_dylib("arm64", ["ggml_init"])}
        ),
    }
    try:
        sources["ggml.dll"] = ff.make_windows_cpu_backend(tmp_path / "win").read_bytes()
    except ff.Missing:
        pass  # the Mach-O cases still run; the DLL needs mingw-w64
    for name, data in sources.items():
        # the last 10 bytes: the symbol table's end (a fat file's slices end before its padding)
        cuts = (len(data) // 2, 200, 40) if name == "fat.dylib" else (len(data) - 10, len(data) // 2, 200, 40)
        for cut in cuts:
            path = tmp_path / f"cut{cut}-{name}"
            path.write_bytes(data[:cut])
            t0 = time.monotonic()
            bf = inspect_binary(path)
            assert time.monotonic() - t0 < 1, (name, cut)
            assert bf.error and ("truncated" in bf.error or "damaged" in bf.error), (name, cut, bf.error)
