"""inspect on small real ELF files (gcc-compiled at test time) and on bad input."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builddoctor import proc
from builddoctor.inspect import inspect_binary, inspect_paths, read_cmake_cache
from builddoctor.inspect.cmakecache import user_options
from builddoctor.inspect.runtime import parse_devices, parse_version
from builddoctor.profiles import BuildProfile
from tests import elf_fixtures as fx


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# --------------------------------------------------------------------------- ISA


@pytest.fixture(scope="module")
def cpu_libs(elf_dir):
    return {level: fx.make_cpu_backend(elf_dir / "isa", level) for level in ("avx512", "avx2", "sse")}


def test_isa_levels_told_apart(cpu_libs):
    got = {level: inspect_binary(p) for level, p in cpu_libs.items()}
    assert got["avx512"].isa_level == "avx512"
    assert got["avx2"].isa_level == "avx2"
    assert got["sse"].isa_level == "sse"
    assert "AVX512" in got["avx512"].isa and "AVX512F" in got["avx512"].isa_detail
    assert {"AVX2", "FMA"} <= set(got["avx2"].isa) and "AVX512" not in got["avx2"].isa
    assert not {"AVX", "AVX2", "AVX512", "FMA"} & set(got["sse"].isa)
    for bf in got.values():
        assert bf.backends == ["CPU"] and bf.role == "backend" and bf.format == "ELF"


def test_avx512_build_profile_on_any_cpu(cpu_libs):
    """The finding 'AVX-512 code on a CPU without it' needs: the build's isa says AVX512,
    statically, whatever this CPU is (the lead compares with a CpuProfile without it)."""
    builds, messages = inspect_paths([cpu_libs["avx512"]], run=False)
    assert messages == []
    (b,) = builds
    assert b.is_llama_cpp and b.backends == ["CPU"]
    assert "AVX512" in b.isa and b.isa_level == "avx512"
    assert "hot functions" in b.evidence["isa"]
    assert BuildProfile.from_json(b.to_json()) == b


def test_build_type_from_code_without_cache(elf_dir):
    opt = fx.make_cpu_backend(elf_dir / "bt-opt", "avx2", opt="-O2")
    dbg = fx.make_cpu_backend(elf_dir / "bt-dbg", "avx2", opt="-O0", debug=True)
    (b_opt,), _ = inspect_paths([opt], run=False)
    (b_dbg,), _ = inspect_paths([dbg], run=False)
    assert b_opt.build_type == "Release"
    assert b_dbg.build_type == "Debug"
    assert "DW_AT_producer" in b_dbg.evidence["build_type"]
    assert b_dbg.files[0].debug_info and not b_opt.files[0].debug_info


# --------------------------------------------------------------------------- libraries


def test_fake_cuda_backend_missing_cudart(elf_dir):
    lib = fx.make_fake_cuda(elf_dir / "cuda")
    bf = inspect_binary(lib)
    assert bf.backends == ["CUDA"]
    assert bf.missing_needed == ["libcudart.so.99"]
    assert "libc.so.6" in bf.needed and "libc.so.6" not in bf.missing_needed
    (b,), msgs = inspect_paths([lib], run=False)
    assert b.backends == ["CUDA"] and b.flash_attn_kernels is True
    assert b.files[0].missing_needed == ["libcudart.so.99"]


def test_newer_glibc_version_required(elf_dir):
    lib = fx.make_new_glibc_lib(elf_dir / "glibc")
    bf = inspect_binary(lib)
    assert bf.symbol_versions["GLIBC"] == "2.99"
    assert bf.missing_versions == ["GLIBC_2.99 (libc.so.6)"]
    assert bf.missing_needed == []


def test_system_library_needs_nothing_missing():
    libstdcxx = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
    if not libstdcxx.exists():
        pytest.skip("no Debian multiarch libstdc++ here")
    bf = inspect_binary(libstdcxx)
    assert bf.missing_needed == [] and bf.missing_versions == []
    assert bf.symbol_versions["GLIBC"].startswith("2.")


def test_cuda_fatbin_archs(elf_dir):
    if fx.NVCC is None:
        pytest.skip("nvcc is not installed")
    lib = fx.make_cuda_fatbin(elf_dir / "fatbin")
    bf = inspect_binary(lib)
    assert bf.cuda_archs == ["sm_86", "compute_89"]
    assert bf.backends == ["CUDA"]
    (b,), _ = inspect_paths([lib], run=False)
    assert b.cuda_archs == ["sm_86", "compute_89"] and b.flash_attn_kernels is True
    assert any(n.startswith("libcudart.so.13") for n in bf.needed)


def test_cuda_archs_in_a_windows_dll(elf_dir):
    """A PE names nvcc's .nv_fatbin ".nv_fatb" (8 characters at most): the archs are read from it too."""
    if fx.NVCC is None or fx.MINGW is None:
        pytest.skip("nvcc or mingw-w64 is not installed")
    dll = fx.make_cuda_dll(elf_dir / "fatbin-dll")
    bf = inspect_binary(dll)
    assert bf.format == "PE" and bf.backends == ["CUDA"]
    assert bf.cuda_archs == ["sm_86", "compute_89"]


def test_build_number_from_an_old_libllama_soname(elf_dir):
    """Before semver versions, libllama's soname was libllama.so.0.0.<build number>: the build is named by it."""
    d = elf_dir / "oldsoname"
    d.mkdir()
    (d / "l.c").write_text("int llama_backend_init(void) { return 0; }\n")
    lib = d / "libllama.so.0.0.4965"
    subprocess.run(
        [fx.GCC, "-shared", "-fPIC", "-Wl,-soname,libllama.so.0.0.4965", str(d / "l.c"), "-o", str(lib)],
        check=True,
        timeout=60,
    )
    (b,), _ = inspect_paths([lib], run=False)
    assert b.build_number == 4965


def test_not_llama(elf_dir):
    exe = fx.make_not_llama(elf_dir)
    (b,), _ = inspect_paths([exe], run=True)
    assert b.is_llama_cpp is False
    assert b.runtime == []  # never runs a program that is not llama.cpp
    # and discovery-style grouping does not invent backends
    assert b.backends == []


# --------------------------------------------------------------------------- runtime


def test_runtime_parses_version_and_devices(elf_dir):
    exe = fx.make_version_printer(elf_dir)
    (b,), _ = inspect_paths([exe], run=True, timeout=5)
    assert b.build_number == 4242 and b.commit == "abc1234"
    assert b.compiler == "cc (Debian 12.2.0-14) 12.2.0" and b.target == "x86_64-linux-gnu"
    assert b.devices[0].startswith("CUDA0: NVIDIA GeForce RTX 4090")
    assert len(b.devices) == 2
    assert [r.argv[1] for r in b.runtime] == ["--version", "--list-devices"]


def test_sleeper_times_out_not_hangs(elf_dir):
    exe = fx.make_sleeper(elf_dir)
    t0 = time.monotonic()
    (b,), _ = inspect_paths([exe], run=True, timeout=1.0)
    assert time.monotonic() - t0 < 4
    assert b.runtime[0].timed_out and len(b.runtime) == 1


def test_sigill_recorded(elf_dir):
    exe = fx.make_sigill(elf_dir)
    (b,), _ = inspect_paths([exe], run=True, timeout=5)
    assert b.runtime[0].signal == "SIGILL"
    assert len(b.runtime) == 1


def test_avx512_program_on_this_cpu(elf_dir):
    exe = fx.make_avx512_runner(elf_dir)
    (b,), _ = inspect_paths([exe], run=True, timeout=5)
    if "avx512f" in _cpu_flags():
        assert b.runtime[0].returncode == 0
    else:
        assert b.runtime[0].signal == "SIGILL"


def test_run_false_runs_nothing(elf_dir):
    exe = fx.make_sigill(elf_dir / "norun")
    (b,), _ = inspect_paths([exe], run=False)
    assert b.runtime == []


def test_parse_version_formats():
    new = parse_version("version: 0.5.0-dev (build 1, commit 0c1e570)\nbuilt with GNU 12.2.0 for Linux x86_64\n")
    assert new == {
        "version": "0.5.0-dev",
        "build_number": 1,
        "commit": "0c1e570",
        "compiler": "GNU 12.2.0",
        "target": "Linux x86_64",
    }
    old = parse_version("version: 3456 (1d2c3b4)\nbuilt with cc (GCC) 13.2.1 for x86_64-redhat-linux\n")
    assert old["build_number"] == 3456 and old["commit"] == "1d2c3b4" and old["target"] == "x86_64-redhat-linux"
    assert parse_version("nonsense") == {}
    assert parse_devices("Available devices:\n  (none)\n") == []
    assert parse_devices("error: unknown argument") is None


# --------------------------------------------------------------------------- bad input


def _one_message(paths, **kw):
    builds, messages = inspect_paths(paths, run=kw.pop("run", False), **kw)
    return builds, messages


def test_empty_file(tmp_path):
    p = tmp_path / "llama-cli"
    p.write_bytes(b"")
    builds, msgs = _one_message([p])
    assert builds == [] and len(msgs) == 1 and "empty file" in msgs[0] and str(p) in msgs[0]


def test_random_bytes(tmp_path):
    p = tmp_path / "libllama.so"
    p.write_bytes(random.Random(1).randbytes(65536))
    builds, msgs = _one_message([p])
    assert builds == [] and "not ELF, Mach-O or PE" in msgs[0]


def test_shell_script_named_llama_cli(tmp_path):
    p = tmp_path / "llama-cli"
    p.write_text('#!/bin/sh\nexec /opt/llama/bin/llama-cli "$@"\n')
    p.chmod(0o755)
    builds, msgs = _one_message([p], run=True)
    assert builds == [] and "a script (#!/bin/sh)" in msgs[0]


def test_truncated_elf(elf_dir, tmp_path):
    src = fx.make_version_printer(elf_dir / "for-trunc")
    p = fx.make_truncated(tmp_path, src)
    builds, msgs = _one_message([p], run=True)
    assert builds == []
    assert "truncated" in msgs[0] and str(p) in msgs[0]
    bf = inspect_binary(p)
    assert bf.format == "ELF" and "truncated" in bf.error


def test_truncated_header(tmp_path):
    p = tmp_path / "libggml.so"
    p.write_bytes(b"\x7fELF\x02\x01\x01")
    bf = inspect_binary(p)
    assert bf.error and "truncated ELF header" in bf.error


def test_unreadable_file(tmp_path):
    d = Path(os.environ.get("TMPDIR", "/tmp")) / f"bd-unreadable-{os.getpid()}"
    d.mkdir(exist_ok=True)
    try:
        d.chmod(0o755)
        p = d / "llama-cli"
        p.write_bytes(b"\x7fELF" + b"\0" * 60)
        p.chmod(0o000)
        if os.geteuid() != 0:
            builds, msgs = inspect_paths([p], run=False)
            assert builds == [] and "permission denied" in msgs[0]
            return
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        code = (
            "import json,sys; from builddoctor.inspect import inspect_paths; "
            "b,m=inspect_paths([sys.argv[1]], run=False); print(json.dumps([len(b), m]))"
        )
        res = proc.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code, str(p)],
            timeout=60,
            extra_env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        # (pyenv's Python under /root: its binary, or its libpython, cannot be read by that user)
        if (
            not res.ok
            and ("Permission denied" in res.stderr or "cannot open shared object" in res.stderr)
            and "python" in res.stderr.lower()
        ):
            pytest.skip(f"the unprivileged user cannot run this Python: {res.stderr[-200:]}")
        assert res.ok, res.stderr
        n, msgs = json.loads(res.stdout.strip().splitlines()[-1])
        assert n == 0 and "permission denied" in msgs[0] and str(p) in msgs[0]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_dangling_symlink(tmp_path):
    p = tmp_path / "llama-cli"
    p.symlink_to(tmp_path / "gone")
    builds, msgs = _one_message([p])
    assert builds == [] and "broken symlink" in msgs[0] and "gone" in msgs[0]


def test_symlink_loop(tmp_path):
    a, b = tmp_path / "llama-cli", tmp_path / "llama-server"
    a.symlink_to(b)
    b.symlink_to(a)
    builds, msgs = _one_message([a])
    assert builds == [] and "symlink loop" in msgs[0]


def test_folder_with_bad_links_inside(tmp_path, elf_dir):
    lib = fx.make_cpu_backend(elf_dir / "inside", "avx2")
    d = tmp_path / "bin"
    d.mkdir()
    shutil.copy(lib, d / "libggml-cpu.so")
    (d / "llama-cli").symlink_to(d / "llama-cli")  # loop
    (d / "llama-server").symlink_to(d / "nowhere")  # dangling
    builds, msgs = inspect_paths([d], run=False)
    assert len(builds) == 1 and builds[0].backends == ["CPU"]
    assert any("symlink loop" in m for m in msgs) and any("broken symlink" in m for m in msgs)


def test_missing_path(tmp_path):
    builds, msgs = _one_message([tmp_path / "nope"])
    assert builds == [] and "no such file" in msgs[0]


def test_directory_with_10000_files(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(10_000):
        (d / f"file{i:05d}.txt").write_bytes(b"x")
    t0 = time.monotonic()
    builds, msgs = inspect_paths([d], run=False)
    took = time.monotonic() - t0
    assert builds == [] and "no llama.cpp executables or libraries found" in msgs[0] and "10000 entries" in msgs[0]
    assert took < 2.0, took


def test_directory_with_10000_candidate_names(tmp_path):
    d = tmp_path / "lookalikes"
    d.mkdir()
    for i in range(10_000):
        (d / f"libggml-fake{i:05d}.so").write_bytes(b"")
    t0 = time.monotonic()
    builds, msgs = inspect_paths([d], run=False)
    assert time.monotonic() - t0 < 5.0
    assert builds == []
    assert any("inspected the first 300 only" in m for m in msgs)
    assert any("300 files there are not usable programs or libraries" in m for m in msgs)
    assert len(msgs) == 2


def test_same_build_once(elf_dir, tmp_path):
    """A folder, a file in it and a symlink to that file: one build, each file once."""
    lib = fx.make_cpu_backend(elf_dir / "once", "avx2")
    link = tmp_path / "libggml-cpu.so"
    link.symlink_to(lib)
    builds, msgs = inspect_paths([lib.parent, lib, link], run=False)
    assert len(builds) == 1
    paths = [f.path for f in builds[0].files]
    assert len(paths) == len(set(paths)) == 1


# --------------------------------------------------------------------------- cmake cache


def test_cmake_cache_parse(tmp_path):
    p = tmp_path / "CMakeCache.txt"
    p.write_text(
        "# This is the CMakeCache file.\n"
        "//Choose the type of build\n"
        "CMAKE_BUILD_TYPE:STRING=Release\n"
        "GGML_NATIVE:BOOL=ON\n"
        "LLAMA_CUBLAS:UNINITIALIZED=ON\n"
        "LLAMA_CUDA:BOOL=OFF\n"
        '"WEIRD:NAME":STRING=a=b\n'
        "CMAKE_CACHEFILE_DIR:INTERNAL=/x\n"
        "EMPTY:STRING=\n"
    )
    got = read_cmake_cache(p)
    assert got["CMAKE_BUILD_TYPE"] == "Release" and got["GGML_NATIVE"] == "ON"
    assert got["LLAMA_CUBLAS"] == "ON" and got["LLAMA_CUDA"] == "OFF"
    assert got["WEIRD:NAME"] == "a=b" and got["EMPTY"] == "" and got["CMAKE_CACHEFILE_DIR"] == "/x"
    assert "CMAKE_CACHEFILE_DIR" not in user_options(p) and "LLAMA_CUBLAS" in user_options(p)


def test_cmake_cache_beside_bin(elf_dir, tmp_path):
    build = tmp_path / "build"
    (build / "bin").mkdir(parents=True)
    shutil.copy(fx.make_cpu_backend(elf_dir / "cache", "avx2"), build / "bin" / "libggml-cpu.so")
    (build / "CMakeCache.txt").write_text(
        "CMAKE_BUILD_TYPE:STRING=RelWithDebInfo\nLLAMA_CUBLAS:UNINITIALIZED=ON\nGGML_CUDA:BOOL=OFF\n"
    )
    (b,), _ = inspect_paths([build], run=False)
    assert b.origin == "build-folder" and b.root == str(build.resolve())
    assert b.build_type == "RelWithDebInfo" and b.cmake_options["LLAMA_CUBLAS"] == "ON"
    assert b.cmake_cache == str((build / "CMakeCache.txt").resolve())


def test_inspect_import_is_light():
    """Importing the package must not pull in pyelftools, iced-x86, LIEF or numpy."""
    code = (
        "import sys, builddoctor.inspect; "
        "print(sorted(m for m in ('lief','iced_x86','numpy','elftools') if m in sys.modules))"
    )
    res = proc.run([sys.executable, "-c", code], timeout=60)
    assert res.ok, res.stderr
    assert res.stdout.strip() == "[]"
