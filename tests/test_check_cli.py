"""`builddoctor check` end to end: the real command on real binaries.

Real llama.cpp builds from vendor/llama.cpp (native, SSE-only, Debug; tests/llama_builds.py)
and small ELF files compiled here with gcc (tests/elf_fixtures.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builddoctor import errors
from builddoctor.probe import machine_profile
from tests import elf_fixtures as fx

FIXTURES = Path(__file__).parent / "fixtures"
HASWELL = FIXTURES / "cpuinfo"


def check(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", "check", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def check_json(*args) -> tuple[int, dict]:
    done = check("--json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def codes(report: dict) -> set[str]:
    return {f["code"] for f in report["findings"] if f["severity"] in ("error", "warning")}


def cpuinfo(name_part: str) -> Path:
    (path,) = [p for p in (FIXTURES / "cpuinfo").iterdir() if name_part in p.name]
    return path


@pytest.fixture(scope="module")
def live():
    return machine_profile()


def known_bad_here(live, build_isa) -> list:
    """Known-bad rows that bite the pinned llama.cpp on this CPU with this code (AMX hosts)."""
    from builddoctor import known_bad
    from builddoctor.source import load_pin

    return [r for r in known_bad.applying(live.cpu.features, load_pin().llama_version) if r.in_code(build_isa)]


def _best_level(features) -> str:
    return "avx512" if "AVX512" in features else "avx2" if "AVX2" in features else "avx" if "AVX" in features else "sse"


# --------------------------------------------------------------------------- real llama.cpp builds


@pytest.mark.slow
def test_three_real_builds_told_apart(native_build, sse_build, debug_build, live):
    rc, data = check_json(native_build, sse_build, debug_build)
    assert data["schema_version"] == 1
    by_root = {Path(r["build"]["root"]).name: r for r in data["builds"]}
    assert set(by_root) == {"native", "sse", "debug"}
    native, sse, debug = by_root["native"], by_root["sse"], by_root["debug"]
    best = _best_level(live.cpu.features)
    # native: the CPU's own level, Release; nothing to fix, unless a known-bad row bites this
    # llama.cpp on this CPU (AMX hosts): then its real inference dies, and the plan differs
    assert native["build"]["isa_level"] == best
    assert native["build"]["build_type"] == "Release"
    if known_bad_here(live, native["build"]["isa"]):
        assert codes(native) == {"BD193", "BD161"}, native["findings"]
        assert native["build"]["compute"]["signal"] in ("SIGSEGV", "SIGILL")
    else:
        assert codes(native) == set(), native["findings"]
        assert native["build"]["compute"]["ok"] is True
    # SSE-only: below this CPU, with the expected gain named
    assert sse["build"]["isa_level"] == "sse"
    (below,) = [f for f in sse["findings"] if f["code"] == "BD130"]
    assert below["severity"] == "warning" and "faster" in below["title"]
    assert "builddoctor fix --rebuild" in below["fix"]
    # Debug: the build type is the problem
    assert debug["build"]["build_type"] == "Debug"
    assert "BD140" in codes(debug)
    assert rc == errors.PROBLEMS


@pytest.mark.slow
def test_planned_build_alone_is_healthy_with_exit_0(planned_build):
    done = check(planned_build)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "healthy" in done.stdout
    assert "Release build" in done.stdout


@pytest.mark.slow
def test_human_report_shape(sse_build):
    done = check(sse_build)
    assert done.returncode == errors.PROBLEMS
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    header = next(line for line in lines if "sse" in line and line.startswith("["))
    assert header.startswith("[!]") or header.startswith("[✗]")
    fix_lines = [line for line in lines if line.strip().startswith("fix: ")]
    assert fix_lines and all("builddoctor fix --rebuild" in line or "cmake" in line for line in fix_lines)
    assert lines[-1].startswith("1 build checked")


@pytest.mark.slow
def test_native_build_against_an_older_cpu_profile(native_build, live):
    """The same build, diagnosed for a machine that lacks what it uses (no run: it is not this machine)."""
    if "AVX2" not in live.cpu.features:
        pytest.skip("the native build here has no AVX2 code to be above an older CPU")
    rc, data = check_json("--cpuinfo", cpuinfo("sandybridge"), native_build)
    (report,) = data["builds"]
    assert "BD131" in codes(report)
    assert report["build"]["runtime"] == []  # a profile from elsewhere: nothing was run here
    assert rc == errors.PROBLEMS


# --------------------------------------------------------------------------- small ELF files


def test_avx512_code_against_a_cpu_without_it(elf_dir):
    lib = fx.make_cpu_backend(elf_dir / "cpu512", "avx512")
    rc, data = check_json("--cpuinfo", cpuinfo("haswell-i7"), lib)
    (report,) = data["builds"]
    (f,) = [f for f in report["findings"] if f["code"] == "BD131"]
    assert f["severity"] == "error" and "AVX512" in f["title"]
    # and on a CPU that has it, the same file is fine
    rc2, data2 = check_json("--cpuinfo", cpuinfo("zen4-ryzen9"), lib)
    assert "BD131" not in codes(data2["builds"][0])


def test_avx512_program_really_dies_here_when_the_cpu_lacks_it(elf_dir, live):
    exe = fx.make_avx512_runner(elf_dir)
    rc, data = check_json(exe)
    (report,) = data["builds"]
    if "AVX512" in live.cpu.features:
        assert "BD190" not in codes(report)
    else:
        (f,) = [f for f in report["findings"] if f["code"] == "BD190"]
        assert "illegal instruction" in f["title"] and "AVX512" in f["title"]


def test_fake_cuda_backend_missing_its_runtime(elf_dir):
    lib = fx.make_fake_cuda(elf_dir / "cuda")
    rc, data = check_json(lib)
    (report,) = data["builds"]
    assert "CUDA" in report["build"]["backends"]
    (f,) = [f for f in report["findings"] if f["code"] == "BD112"]
    assert "libcudart.so.99" in f["title"]
    assert rc == errors.PROBLEMS


def test_library_needing_a_newer_glibc(elf_dir, live):
    lib = fx.make_new_glibc_lib(elf_dir / "glibc")
    rc, data = check_json(lib)
    (f,) = [f for f in data["builds"][0]["findings"] if f["code"] == "BD171"]
    assert "2.99" in f["title"] and (live.libc_version or "") in f["title"]


def test_sigill_binary_is_a_finding_not_a_crash(elf_dir):
    exe = fx.make_sigill(elf_dir)
    rc, data = check_json(exe)
    assert "BD190" in codes(data["builds"][0])


def test_hanging_binary_is_stopped(elf_dir):
    exe = fx.make_sleeper(elf_dir)
    t0 = time.monotonic()
    rc, data = check_json("--timeout", "1", exe)
    assert time.monotonic() - t0 < 15
    assert "BD191" in codes(data["builds"][0])


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_never_crash(elf_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty").write_bytes(b"")
    (bad / "random.bin").write_bytes(os.urandom(4096))
    script = bad / "llama-cli"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (bad / "dangling").symlink_to(bad / "nowhere")
    (bad / "loop1").symlink_to(bad / "loop2")
    (bad / "loop2").symlink_to(bad / "loop1")
    truncated = fx.make_truncated(tmp_path / "trunc", fx.make_version_printer(elf_dir))
    for target in [bad / "empty", bad / "random.bin", script, bad / "dangling", bad / "loop1", truncated]:
        done = check(target, timeout=60)
        assert "Traceback" not in done.stderr, (target, done.stderr)
        assert done.returncode in (errors.PROBLEMS, errors.USAGE), (target, done.returncode, done.stderr)
        text = done.stdout + done.stderr
        assert str(target.name) in text, (target, text)
    # the whole folder at once: each file explained, none fatal
    done = check(bad)
    assert "Traceback" not in done.stderr and done.returncode in (errors.PROBLEMS, errors.USAGE)


def test_missing_path_is_a_usage_error(tmp_path):
    done = check(tmp_path / "does-not-exist")
    assert done.returncode == errors.USAGE
    assert "no such file" in done.stderr and "Traceback" not in done.stderr


def test_folder_of_ten_thousand_files_is_quick(tmp_path, elf_dir):
    big = tmp_path / "big"
    big.mkdir()
    for i in range(10_000):
        (big / f"f{i:05d}.txt").write_bytes(b"x")
    fx.make_version_printer(elf_dir)
    t0 = time.monotonic()
    done = check(big, timeout=60)
    assert time.monotonic() - t0 < 20
    assert "Traceback" not in done.stderr and done.returncode == errors.NOT_FOUND, done.stderr
    assert "10000 entries" in done.stderr and "no llama.cpp build found; looked in" in done.stderr


def test_profile_from_elsewhere_does_not_run_binaries(elf_dir, tmp_path, live):
    profile = tmp_path / "p.json"
    profile.write_text(live.to_json())
    exe = fx.make_sleeper(elf_dir)
    t0 = time.monotonic()
    rc, data = check_json("--profile", profile, exe)
    assert time.monotonic() - t0 < 10
    assert data["builds"][0]["build"]["runtime"] == []
