"""PE files read without holding them in memory (issue 13, item 7), checked against binutils.

The DLLs are real (mingw-w64; the CUDA fatbin nvcc's); the export and import tables are compared
with what ``objdump -p`` lists, and a 150 MB CUDA DLL is read in a child process whose peak
memory (VmHWM) is measured: LIEF held the whole file plus a copy of its sections (338 MB for the
145 MB ``ggml-cuda.dll`` of a real Windows CUDA build).
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from builddoctor import proc
from builddoctor.inspect import foreign, inspect_binary
from builddoctor.inspect.image import FileWindow
from tests import elf_fixtures as fx
from tests import foreign_fixtures as ff

ROOT = Path(__file__).resolve().parent.parent
OBJDUMP = shutil.which("objdump")


def _objdump_tables(dll: Path) -> tuple[list[str], list[str]]:
    """(exported names, imported DLL names) as GNU objdump lists them."""
    res = proc.run([OBJDUMP, "-p", str(dll)], timeout=120)
    assert res.ok, res.stderr
    text = res.stdout
    names = text.split("[Ordinal/Name Pointer] Table", 1)[1] if "[Ordinal/Name Pointer] Table" in text else ""
    exports = re.findall(r"^\s*\[\s*\d+\]\s+(\S+)\s*$", names.split("\n\n", 1)[0], re.M)
    dlls = re.findall(r"^\s*DLL Name: (\S+)", text, re.M)
    return exports, dlls


@pytest.fixture(scope="module")
def many_exports(tmp_path_factory) -> Path:
    try:
        return ff.make_windows_many_exports(tmp_path_factory.mktemp("pe-exports"), 3000)
    except ff.Missing as exc:
        pytest.skip(str(exc))


@pytest.mark.skipif(OBJDUMP is None, reason="binutils (objdump) is not installed")
def test_pe_tables_match_objdump(many_exports):
    with open(many_exports, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pe = foreign.read_pe(data, len(data))
    exports, dlls = _objdump_tables(many_exports)
    assert len(exports) == 3001  # the 3000 functions and ggml_backend_cpu_reg
    assert sorted(pe.exports) == sorted(exports)
    assert pe.needed == dlls and pe.is_dll
    bf = inspect_binary(many_exports)
    assert bf.format == "PE" and bf.backends == ["CPU"] and bf.role == "library"


def test_pe_imports_name_the_functions(many_exports, tmp_path):
    """A program importing ggml_* from a DLL is found by its imports (discovery reads them)."""
    from builddoctor.inspect.symbols import mentions_prefixes

    (tmp_path / "main.c").write_text(
        "int ggml_backend_cpu_reg(void);\nint main(void) { return ggml_backend_cpu_reg(); }\n"
    )
    exe = tmp_path / "app.exe"
    res = proc.run([ff.MINGW_GCC, "main.c", str(many_exports), "-o", str(exe)], cwd=tmp_path, timeout=120)
    assert res.ok, res.stderr
    with open(exe, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pe = foreign.read_pe(data, len(data))
    assert "ggml_backend_cpu_reg" in pe.imported and many_exports.name in pe.needed and not pe.is_dll
    assert mentions_prefixes(exe, ["ggml_"]) and not mentions_prefixes(exe, ["whisper_"])


def test_a_damaged_pe_is_one_sentence(many_exports, tmp_path):
    """Export and import directories pointing outside the file: no crash, and what can be read is."""
    raw = bytearray(many_exports.read_bytes())
    lfanew = int.from_bytes(raw[0x3C:0x40], "little")
    dirs = lfanew + 24 + 112  # PE32+ optional header: the data directories
    raw[dirs : dirs + 8] = (0x7FFFFFF0).to_bytes(4, "little") + (40).to_bytes(4, "little")  # exports
    raw[dirs + 8 : dirs + 16] = (0x7FFFFF00).to_bytes(4, "little") + (40).to_bytes(4, "little")  # imports
    bad = tmp_path / "llama-common.dll"
    bad.write_bytes(bytes(raw))
    with open(bad, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pe = foreign.read_pe(data, len(data))
    assert pe.exports == [] and pe.needed == []
    bf = inspect_binary(bad)
    assert bf.format == "PE" and bf.arch == "x86_64" and bf.backends == []


CHILD = """
import json, sys
from builddoctor.inspect import inspect_binary
import builddoctor.inspect.binary, builddoctor.inspect.foreign, pefile  # start-up, not the file's memory
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
base = hwm()
bf = inspect_binary(sys.argv[1])
print(json.dumps({"base": base, "peak": hwm(), "archs": bf.cuda_archs, "backends": bf.backends, "error": bf.error}))
"""


def test_a_big_cuda_dll_is_not_held_in_memory(tmp_path):
    """150 MB of real nvcc fatbin containers in .nv_fatb: the archs are read, and reading the file
    raises the reader's peak memory by far less than its size."""
    if fx.NVCC is None:
        pytest.skip("nvcc is not installed")
    try:
        dll = ff.make_big_cuda_dll(tmp_path / "big", mb=150)
    except ff.Missing as exc:
        pytest.skip(str(exc))
    size_mb = dll.stat().st_size / 1e6
    assert size_mb > 150
    res = proc.run([sys.executable, "-c", CHILD, str(dll)], timeout=300, cwd=str(ROOT))
    assert res.ok, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["error"] is None and got["backends"] == ["CUDA"]
    assert got["archs"] == ["sm_86", "compute_89"]
    assert got["peak"] - got["base"] < 40, got  # LIEF: +2x the file; an mmap walk of it: +1x


def test_file_window_reads_like_the_bytes(tmp_path):
    """FileWindow (pread) answers slices and find() like the bytes themselves, across its windows."""
    blob = bytes(range(256)) * 20000 + b"NEEDLE" + b"\0" * 5000
    p = tmp_path / "f.bin"
    p.write_bytes(blob)
    with open(p, "rb") as fh:
        w = FileWindow(fh.fileno(), len(blob))
        assert len(w) == len(blob)
        for a, b in ((0, 16), (4090, 4110), (len(blob) - 3, len(blob) + 10), (100, 50)):
            assert w[a:b] == blob[a:b]
        for needle, start in (
            (b"NEEDLE", 0),
            (b"\xff\x00\x01", 1_048_570),
            (b"absent", 0),
            (b"NEEDLE", len(blob) - 10),
        ):
            assert w.find(needle, start, len(blob)) == blob.find(needle, start)
        # a needle that straddles the 1 MB window edge
        edge = FileWindow._FIND_CHUNK - 2
        assert w.find(blob[edge : edge + 5], edge - 10) == blob.find(blob[edge : edge + 5], edge - 10)


def test_macho_reader_on_hand_made_fat_dylib(tmp_path):
    """Each slice of a fat Mach-O (tests/foreign_fixtures.py writes it from <mach-o/loader.h>): its own
    install name, its dylibs and its external symbols, read in place."""
    from builddoctor.inspect.headers import macho_slices

    lib = ff.make_fat_macho_lib(tmp_path)
    with open(lib, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        slices = macho_slices(data, len(data))
        got = [(arch, foreign.read_macho(data, len(data), off)) for arch, off in slices]
    assert [a for a, _f in got] == ["x86_64", "aarch64"]
    for _arch, facts in got:
        assert facts.filetype == 6 and facts.libraries[0] == "@rpath/libggml.dylib"
        assert "_ggml_backend_cpu_reg" in facts.symbols and "__text" in facts.sections


ENABLED = os.environ.get("BUILDDOCTOR_TEST_NETWORK", "") not in ("", "0")


@pytest.mark.network
@pytest.mark.skipif(not ENABLED, reason="the real-file corpus: set BUILDDOCTOR_TEST_NETWORK=1")
def test_readers_match_lief_on_the_corpus():
    """On every PE and Mach-O file of the real-file corpus, the names the readers give are LIEF's
    (an independent, complete parser): PE exports, DLLs and imported names; each Mach-O slice's
    dylibs, nlist and export-trie names, sections and file type."""
    import lief

    from builddoctor.inspect.headers import macho_slices
    from tests.corpus import fetch

    lief.logging.disable()
    cases, _shapes = fetch.load()
    files = []
    for case in cases:
        base = fetch.fetch_case(case)
        for p in sorted(base.rglob("*")):
            if (
                p.is_file()
                and not p.is_symlink()
                and p.suffix.lower() in (".dll", ".exe", ".pyd", ".dylib", ".so", ".node")
            ):
                with open(p, "rb") as fh:
                    head = fh.read(4)
                if head[:2] == b"MZ" or head in (b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"\xce\xfa\xed\xfe"):
                    files.append(p)
    assert len(files) > 50
    for p in files:
        with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:2] == b"MZ":
                pe = foreign.read_pe(data, len(data))
                ref = lief.PE.parse(str(p))
                assert sorted(pe.exports) == sorted(e.name for e in ref.exported_functions), p
                assert pe.needed == [i.name for i in ref.imports], p
                assert pe.imported == [e.name for i in ref.imports for e in i.entries if e.name], p
                assert pe.sections == [(s.name, s.offset, s.size) for s in ref.sections], p
                continue
            mine = [foreign.read_macho(data, len(data), off) for _a, off in macho_slices(data, len(data))]
        fat = lief.MachO.parse(str(p))
        assert len(fat) == len(mine), p
        for i, facts in enumerate(mine):
            b = fat.at(i)
            assert facts.symbols == {s.name for s in b.exported_functions} | {s.name for s in b.symbols}, p
            assert facts.libraries == [lib.name for lib in b.libraries], p
            assert facts.sections == [s.name for s in b.sections], p
            assert (facts.filetype == foreign.MH_EXECUTE) == (str(b.header.file_type).endswith("EXECUTE")), p


def _trie(nodes: list[bytes]) -> tuple[bytes, list[int]]:
    return b"".join(nodes), [sum(len(n) for n in nodes[:i]) for i in range(len(nodes))]


def test_export_trie_names_and_forged_tries():
    """dyld's export trie (<mach-o/loader.h>: terminal info, then labelled edges to child offsets):
    the names it spells, and a trie whose edges loop back or chain long labels ends, bounded."""
    from builddoctor.inspect.foreign import _trie_names

    # root -"_ggml_"-> X ; X -"init"-> Y (terminal), X -"free"-> Z (terminal); offsets are one byte here
    root = lambda x: b"\x00\x01_ggml_\x00" + bytes([x])  # noqa: E731
    node_x = lambda y, z: b"\x00\x02init\x00" + bytes([y]) + b"free\x00" + bytes([z])  # noqa: E731
    leaf = b"\x02\x00\x10\x00"
    x = len(root(0))
    y = x + len(node_x(0, 0))
    blob = root(x) + node_x(y, y + len(leaf)) + leaf + leaf
    assert _trie_names(blob, 0, len(blob), len(blob)) == {"_ggml_init", "_ggml_free"}
    assert _trie_names(b"xx" + blob, 2, len(blob), len(blob) + 2) == {"_ggml_init", "_ggml_free"}
    loop = b"\x00\x01_a\x00\x00"  # the only edge leads back to the root
    assert _trie_names(loop, 0, len(loop), len(loop)) == set()
    # each node terminal, with a 1000-byte label to the next: names stop growing at 4096 bytes
    label = b"L" * 1000
    chain = b"".join(
        b"\x01\x00\x01" + label + b"\x00" + bytes([0x80 | ((i + 1) * 1006 & 0x7F), (i + 1) * 1006 >> 7])
        for i in range(10)
    )
    names = _trie_names(chain, 0, len(chain), len(chain))
    assert names and max(len(n) for n in names) <= 4096
    with pytest.raises(ValueError):
        _trie_names(b"\xff\xff", 0, 2, 2)  # a ULEB128 that never ends: damage, reported as such
