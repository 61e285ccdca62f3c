"""Read one file of a build statically (never running it).

ELF files are read with pyelftools, PE with pefile, Mach-O with the load-command reader of
inspect/foreign.py. None uses LIEF: importing it costs about 0.9 s of CPU here (measured:
``python -X importtime -c "import lief"``), more than a whole ``check`` of three builds is
allowed, and it holds a whole PE or Mach-O plus a copy of its sections in memory; pyelftools
imports in ~0.1 s and parses lazily (it never reads a 100 MB library whole).

``inspect_binary(path) -> BinaryFile`` is the public entry; ``analyze(path)`` returns the
``FileFacts`` behind it (the BinaryFile plus what the build-level code needs: resolved
libraries, embedded build info, compiler switches...). The ELF reader is inspect/elf.py, the
readings all formats share inspect/filefacts.py; Mach-O and PE are read here.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import struct
from pathlib import Path

from builddoctor import platforms
from builddoctor.inspect import fatbin, foreign
from builddoctor.inspect import isa as isa_mod
from builddoctor.inspect.discover import canonical_name
from builddoctor.inspect.elf import analyze_elf
from builddoctor.inspect.filefacts import (
    _BACKEND_LIB,
    LLAMA_LIBS,
    BadFile,
    FileFacts,
    backend_data,
    common_facts,
    runs_on_host,
)
from builddoctor.inspect.headers import macho_slices, pe_machine
from builddoctor.inspect.image import FileWindow, ImageError
from builddoctor.profiles import BinaryFile

_TEXT_SNIFF = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e]*$")


def inspect_binary(path: Path, prefer_arch: str | None = None) -> BinaryFile:
    """One file, read statically. Never raises for a bad file: ``error`` says what is wrong."""
    return analyze(Path(path), prefer_arch).file


def guess_role(name: str) -> str:
    m = _BACKEND_LIB.match(name)
    if m and m.group(1) not in ("base",):
        known = {lib.split("-", 1)[1] for b in backend_data()["backend"] for lib in b.get("libs", [])}
        if m.group(1) in known:
            return "backend"
    if LLAMA_LIBS.match(name) or name.endswith((".so", ".dylib", ".dll")) or ".so." in name:
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
                analyze_elf(path, fh, head, facts, exec_bit)
            else:
                _analyze_other(path, facts, exec_bit, prefer_arch)
        except (BadFile, ImageError) as exc:
            bf.error = str(exc)
        except (ValueError, IndexError, struct.error, OverflowError, UnicodeError, TypeError) as exc:
            bf.error = f"damaged {fmt} file ({type(exc).__name__}: {exc})"
        except MemoryError:
            bf.error = f"too large to read ({bf.size} bytes)"
    return facts


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
                raise BadFile(str(exc)) from None
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
    common_facts(path, facts, None, symbol_names=symbols)
    if "CPU" not in bf.backends and (
        isa_mod.names_carry_cpu_backend(symbols, path.name, bf.needed)
        or isa_mod.module_carries_cpu_backend(path, path.name, bf.needed)
    ):
        bf.backends.insert(0, "CPU")  # ggml's CPU code linked into a module (monolithic), as for ELF
        facts.is_llama = True
