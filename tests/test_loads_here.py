"""Loads-here, honestly: a file whose symbols the libraries found here do not provide is reported as
unable to load, with the loader's reason, and the load line never says "all found" beside a backend that
cannot load.

Files are compiled here (tests/elf_fixtures.py): a C++ shared object that asks this machine's libstdc++
for a version it does not define (linked against a stub that defines it, then removed), one whose
unversioned symbol its libggml-base.so lacks, an extension module that leaves the Python C API to the
interpreter. The ground truth for each is a real dlopen in a child process; the versions this machine's
libstdc++ has are read with pyelftools, independently of builddoctor's own reader.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from builddoctor.probe import machine_profile
from tests import elf_fixtures as fx


def check_json(*args) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "builddoctor", "check", "--json", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def dlopen_error(path: Path) -> str:
    """'' when a child process loads it (RTLD_NOW), else the loader's message."""
    code = "import ctypes, sys\ntry:\n    ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)\nexcept OSError as e:\n    print(e)\n"
    return subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30
    ).stdout.strip()


def newest_in_libstdcxx(prefix: str) -> str:
    from elftools.elf.elffile import ELFFile

    from builddoctor.inspect.libs import Resolver

    path = Resolver().resolve("libstdc++.so.6", origin="/", rpath=[], runpath=[], elf_class=2, arch="x86_64")
    names = set()
    with open(path, "rb") as fh:
        for sec in ELFFile(fh).iter_sections():
            if sec.header["sh_type"] == "SHT_GNU_verdef":
                for _v, auxs in sec.iter_versions():
                    names |= {a.name for a in auxs if re.match(re.escape(prefix) + r"_[0-9.]+$", a.name)}
    return max(names, key=lambda n: tuple(int(x) for x in n.split("_")[-1].split(".")))


def load_findings(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["area"] == "load"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    if fx.GXX is None or fx.GCC is None:
        pytest.skip("gcc/g++ are not installed")
    d = tmp_path_factory.mktemp("loads")
    return {
        "glibcxx": fx.make_future_abi_module(d / "glibcxx"),
        "cxxabi": fx.make_future_abi_module(d / "cxxabi", "CXXABI_1.3.99"),
        "symbol": fx.make_missing_symbol_lib(d / "symbol"),
    }


@pytest.mark.parametrize("run", [False, True])
def test_newer_glibcxx_cannot_load(made, run):
    lib = made["glibcxx"]
    assert "GLIBCXX_3.4.99" in dlopen_error(lib)
    rc, data = check_json(*([] if run else ["--no-run"]), lib)
    (line,) = load_findings(data["builds"][0])  # one load line, no "all linked libraries found"
    have = machine_profile().libstdcxx_version
    assert line["severity"] == "error"
    assert line["title"].startswith(f"cannot load here: needs GLIBCXX_3.4.99, this machine has up to GLIBCXX_{have}")
    assert rc == 1


@pytest.mark.parametrize("run", [False, True])
def test_newer_cxxabi_cannot_load(made, run):
    """CXXABI versions were not compared at all: the build was reported healthy."""
    lib = made["cxxabi"]
    assert "CXXABI_1.3.99" in dlopen_error(lib)
    rc, data = check_json(*([] if run else ["--no-run"]), lib)
    (line,) = load_findings(data["builds"][0])
    assert line["code"] == "BD174" and line["severity"] == "error"
    assert line["title"] == (
        f"cannot load here: needs CXXABI_1.3.99, this machine has up to "
        f"{newest_in_libstdcxx('CXXABI')} (libstdc++.so.6)"
    )
    if run:
        assert "dlopen in a child process agrees" in line["evidence"] and "CXXABI_1.3.99" in line["evidence"]
    assert rc == 1


def test_unversioned_symbol_no_library_defines(made, tmp_path):
    lib = made["symbol"]
    assert "undefined symbol: ggml_future_op" in dlopen_error(lib)
    rc, data = check_json("--no-run", lib)
    (line,) = load_findings(data["builds"][0])
    assert line["code"] == "BD174" and line["title"] == "cannot load here: undefined symbol ggml_future_op"
    assert "libggml-base.so" in line["evidence"]
    # but an extension module's Py* symbols come from the interpreter that imports it, not a NEEDED library
    src = tmp_path / "m.c"
    src.write_text(
        "long PyLong_AsLong(void *); void *PyInit__m(void) { return (void *)PyLong_AsLong(0); }\n"
        "int llama_backend_init(void) { return 0; }\n"
    )
    mod = tmp_path / "_m.cpython-311-x86_64-linux-gnu.so"
    subprocess.run([fx.GCC, "-shared", "-fPIC", str(src), "-o", str(mod)], check=True, timeout=60)
    rc, data = check_json("--no-run", mod)
    assert [f["code"] for f in load_findings(data["builds"][0])] == ["ok:load"]


def test_load_line_never_contradicts_the_gpu_line(elf_dir, sse_build):
    """A CUDA backend whose runtime is not here: the GPU line says it cannot load (naming the library),
    and no ✓ load line stands beside it (a dlopen of that file fails: nothing about loading is "ok")."""
    lib = fx.make_fake_cuda(elf_dir / "cuda-load")
    rc, data = check_json("--no-run", lib)
    report = data["builds"][0]
    gpu = [f for f in report["findings"] if f["code"] == "BD112"]
    assert gpu and "libcudart.so.99" in gpu[0]["title"] + gpu[0].get("evidence", ""), gpu
    assert not [f for f in load_findings(report) if f["severity"] == "ok"], load_findings(report)
    # a real build whose libraries are all here still says so
    rc, data = check_json("--no-run", sse_build)
    (line,) = load_findings(data["builds"][0])
    assert line["code"] == "ok:load" and line["title"].startswith("all ")
