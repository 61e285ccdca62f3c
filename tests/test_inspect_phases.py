"""The named steps of the inspector that carry logic of their own, each on its own input: the
grouping of files into builds, the readings of names, producers and versions, and the ELF header
check that comes before pyelftools."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from builddoctor.inspect import _skipped_lines, elf, filefacts, grouping
from builddoctor.inspect.discover import Candidate
from builddoctor.inspect.filefacts import BadFile


def test_group_root_is_the_parent_of_sibling_folders_else_the_first():
    assert grouping.group_root(["/p/bin", "/p/lib"]) == Path("/p")
    assert grouping.group_root(["/p/bin"]) == Path("/p/bin")
    # a wheel's loose files and its <dist>.libs/ below them: the wheel's folder
    assert grouping.group_root(["/site", "/site/pkg.libs"]) == Path("/site")


def _files(tmp_path: Path, *rel: str) -> list[Path]:
    out = []
    for r in rel:
        p = tmp_path / r
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        out.append(p)
    return out


def test_an_unresolved_needed_name_joins_a_file_nearby_not_a_far_one(tmp_path):
    exe, lib, far = _files(tmp_path, "pkg/bin/llama-cli", "pkg/lib/libllama.dylib", "other/deep/x/libllama.dylib")
    g = grouping.Grouping.start([Candidate(p, "given") for p in (exe, lib, far)])
    for p in (exe, lib, far):
        g.add(p, "given")
    g.unresolved.append((exe, "libllama.dylib"))
    grouping.join_unresolved(g)
    assert g.uf.find(str(exe.parent)) == g.uf.find(str(lib.parent))
    assert g.uf.find(str(far.parent)) != g.uf.find(str(exe.parent))


def test_bin_and_lib_of_one_prefix_are_one_build(tmp_path):
    exe, lib, alone = _files(tmp_path, "prefix/bin/llama-cli", "prefix/lib/libllama.so", "elsewhere/lib/libggml.so")
    g = grouping.Grouping.start([Candidate(p, "install-prefix") for p in (exe, lib, alone)])
    for p in (exe, lib, alone):
        g.add(p, "install-prefix")
    grouping.join_layouts(g)
    groups = grouping.make_groups(g)
    assert [(gr.root, len(gr.files)) for gr in groups] == [(tmp_path / "elsewhere/lib", 1), (tmp_path / "prefix", 2)]


def test_a_file_is_met_once_with_the_origin_it_first_came_by(tmp_path):
    (p,) = _files(tmp_path, "b/llama-cli")
    g = grouping.Grouping.start([Candidate(p, "path"), Candidate(p, "given")])
    g.meet(p, "site")
    assert g.order == [p] and g.origin_of[p] == "path"


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("libggml-cpu-haswell.so", ("CPU", "haswell", True)),
        ("libggml-cuda.so", ("CUDA", None, True)),
        ("ggml-vulkan.dll", ("Vulkan", None, True)),
        ("libggml-nosuch.so", (None, None, True)),  # named like a backend, not one llama.cpp builds
        ("libllama.so", (None, None, False)),
    ],
)
def test_backend_by_name(name, want):
    assert filefacts.backend_by_name(name) == want


def test_producer_switches_take_the_level_most_units_used():
    prods = [
        "GNU C++17 13.2.0 -mavx2 -O3 -g",
        "GNU C++17 13.2.0 -mavx2 -O3",
        "GNU C17 13.2.0 -O0",
        "clang version 18.1.3",  # clang records no switches: not counted
    ]
    assert filefacts.producer_switches(prods) == {"g": True, "opt": "-O3", "levels": ["-O0", "-O3"]}
    # no -O at all is GCC's default, -O0; a bare -O is -O1
    assert filefacts.producer_switches(["GNU C17 12.2.0 -march=x86-64"])["opt"] == "-O0"
    assert filefacts.producer_switches(["GNU C17 12.2.0 -O"])["opt"] == "-O1"
    assert filefacts.producer_switches(["clang version 18.1.3"]) == {}


def test_max_versions_keeps_the_highest_per_prefix_and_ignores_a_forged_one():
    names = ["GLIBC_2.17", "GLIBC_2.34", "GLIBC_2.4", "GLIBCXX_3.4.30", "GLIBC_" + "9" * 5000, "CXXABI_1.3.13"]
    assert filefacts.max_versions(names) == {"CXXABI": "1.3.13", "GLIBC": "2.34", "GLIBCXX": "3.4.30"}


def _elf_head(*, machine: int = 62, e_type: int = 3, phnum: int = 0, phoff: int = 64) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    rest = struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    return ident + rest


def test_identify_reads_class_type_and_machine():
    hdr = elf._identify(_elf_head(machine=183, e_type=2), 4096)
    assert (hdr.elf_class, hdr.e_type, hdr.arch) == (2, 2, "aarch64")
    assert elf._identify(_elf_head(machine=9999), 4096).arch == "machine 9999"


def test_identify_refuses_program_headers_past_the_end():
    with pytest.raises(BadFile, match="truncated: its program headers end at byte 624"):
        elf._identify(_elf_head(phnum=10), 200)


def test_more_than_three_unusable_files_of_a_folder_are_one_line():
    three = {"/d": ["/d/a: x.", "/d/b: y.", "/d/c: z."]}
    assert _skipped_lines(three) == three["/d"]
    four = {"/d": ["/d/a: x.", "/d/b: y.", "/d/c: z.", "/d/e: w."]}
    (line,) = _skipped_lines(four)
    assert line.startswith("/d: 4 files there are not usable") and "/d/a: x." in line
