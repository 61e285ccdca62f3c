"""The platform gate: builds for another OS or CPU architecture than the machine diagnosed.

Real files: a Linux aarch64 library from Debian's cross compiler, a Windows x86_64 DLL from
mingw-w64, an x86_64 Linux program from gcc; Mach-O files (thin arm64, fat x86_64 + arm64) are
written byte by byte (tests/foreign_fixtures.py: there is no Mach-O toolchain here). The machine is
this one, or a recorded one from tests/fixtures; expectations are taken from this host's own
(os, arch), never assumed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builddoctor import errors, platforms
from tests import elf_fixtures as fx
from tests import foreign_fixtures as ff

FIXTURES = Path(__file__).parent / "fixtures"
GRAVITON = FIXTURES / "cpuinfo" / "graviton3-neoverse-v1-aws.txt"
PI5 = FIXTURES / "machines" / "raspberry-pi-5.json"
MAC_M2 = FIXTURES / "machines" / "mac-m2-pro.json"
MAC_INTEL = FIXTURES / "machines" / "mac-intel.json"
HOST_OS, HOST_ARCH = platforms.host()
GATED = {"load", "cpu", "gpu", "runtime"}


def check(*args) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "builddoctor", "check", "--json", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (errors.OK, errors.PROBLEMS), (done.returncode, done.stderr)
    return done.returncode, json.loads(done.stdout)


def only_build(data: dict) -> dict:
    (report,) = data["builds"]
    return report


def by_code(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def made(factory, *args):
    try:
        return factory(*args)
    except ff.Missing as exc:
        pytest.skip(str(exc))


def host_is(os_name: str, arch: str) -> bool:
    return (os_name, arch) == (HOST_OS, HOST_ARCH)


def assert_foreign(report: dict, words: str, rc: int) -> dict:
    """One BD010 error naming the build's platform and this machine's, nothing judged about loading,
    CPU code, GPU or running, nothing run; an unhealthy exit."""
    (f,) = by_code(report, "BD010")
    assert f["severity"] == "error"
    assert f"built for {words}" in f["title"], f["title"]
    assert f"this {platforms.label(HOST_OS, HOST_ARCH)} machine" in f["title"], f["title"]
    assert "--cpuinfo" in f["fix"] or "--profile" in f["fix"]
    judged = [g for g in report["findings"] if g["area"] in GATED and g["code"] != "BD010"]
    assert judged == [], judged  # no "all N linked libraries found", no ISA speed-up, no GPU fallback
    assert report["build"]["runtime"] == [] and report["build"]["compute"] is None
    assert rc == errors.PROBLEMS
    return f


# --------------------------------------------------------------------------- Linux aarch64


@pytest.fixture(scope="module")
def a64_lib(tmp_path_factory) -> Path:
    return made(ff.make_aarch64_cpu_backend, tmp_path_factory.mktemp("a64"))


def test_aarch64_library_is_foreign_on_this_machine(a64_lib):
    if host_is("linux", "aarch64"):
        pytest.skip("this machine is Linux aarch64: the library is native here")
    rc, data = check(a64_lib)
    report = only_build(data)
    assert_foreign(report, "Linux aarch64", rc)
    assert not by_code(report, "BD130")  # "CPU code stops at SSE; this CPU has AVX512": gone
    (info,) = by_code(report, "BD011")
    assert info["severity"] == "info" and "CPU" in info["title"]
    (bf,) = report["build"]["files"]
    assert (bf["os"], bf["arch"], bf["archs"]) == ("linux", "aarch64", ["aarch64"])


@pytest.mark.parametrize("machine", [["--cpuinfo", GRAVITON], ["--profile", PI5]], ids=["cpuinfo", "profile"])
def test_aarch64_library_diagnosed_normally_for_an_aarch64_machine(a64_lib, machine):
    rc, data = check(*machine, a64_lib)
    report = only_build(data)
    assert not by_code(report, "BD010") and not by_code(report, "BD011")
    (bf,) = report["build"]["files"]
    assert (bf["os"], bf["archs"]) == ("linux", ["aarch64"])  # what the gate compared: it runs there
    # the CPU rules ran: the NEON-baseline code is compared with that CPU (a finding or the ok line)
    assert [f for f in report["findings"] if f["area"] == "cpu"], report["findings"]


def test_a_program_for_this_host_is_not_run_for_a_foreign_target(tmp_path):
    """--run with an aarch64 machine: an x86_64 program is foreign to it, so it is not run here."""
    if fx.GCC is None or not host_is("linux", "x86_64"):
        pytest.skip("needs gcc on a Linux x86_64 host (the program must be native here, foreign to the target)")
    exe = fx.make_version_printer(tmp_path)
    rc, data = check("--run", "--cpuinfo", GRAVITON, exe)
    report = only_build(data)
    (f,) = by_code(report, "BD010")
    assert "built for Linux x86_64" in f["title"] and "Linux aarch64 machine diagnosed" in f["title"], f["title"]
    assert report["build"]["runtime"] == [] and report["build"]["compute"] is None


def test_aarch64_program_is_never_executed(tmp_path):
    if host_is("linux", "aarch64"):
        pytest.skip("this machine is Linux aarch64: the program is native here")
    exe = made(ff.make_aarch64_program, tmp_path)
    rc, data = check("--run", exe)
    report = only_build(data)
    assert_foreign(report, "Linux aarch64", rc)


def test_mixed_folder_judges_only_the_files_that_run_here(a64_lib, tmp_path):
    """An x86_64 libggml-base.so beside an aarch64 libggml-cpu.so: one warning names the foreign file;
    the aarch64 CPU code is not compared with this CPU."""
    if fx.GCC is None or not host_is("linux", "x86_64"):
        pytest.skip("needs gcc on a Linux x86_64 host")
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "libggml-cpu.so").write_bytes(a64_lib.read_bytes())
    (d / "base.c").write_text("int ggml_init(void) { return 0; }\n")
    fx._cc(["-shared", "-fPIC", "base.c", "-o", "libggml-base.so"], d)
    (d / "base.c").unlink()
    rc, data = check("--no-run", d)
    report = only_build(data)
    assert not by_code(report, "BD010")
    (f,) = by_code(report, "BD012")
    assert f["title"].startswith("1 of its files is built for Linux aarch64") and "libggml-cpu.so" in f["evidence"]
    assert not [g for g in report["findings"] if g["area"] == "cpu" and g["severity"] != "ok"], report["findings"]
    assert rc == errors.PROBLEMS


# --------------------------------------------------------------------------- Windows


def test_windows_dll_is_foreign_here(tmp_path):
    if HOST_OS == "windows":
        pytest.skip("this machine runs Windows")
    dll = made(ff.make_windows_cpu_backend, tmp_path)
    rc, data = check(dll)
    report = only_build(data)
    assert_foreign(report, "Windows x86_64 (PE)", rc)
    (bf,) = report["build"]["files"]
    assert bf["format"] == "PE" and bf["os"] == "windows" and "KERNEL32.dll" in bf["needed"]


# --------------------------------------------------------------------------- Mach-O


def test_macho_metal_library_is_foreign_here(tmp_path):
    if HOST_OS == "darwin":
        pytest.skip("this machine runs macOS")
    lib = ff.make_macho_metal_lib(tmp_path)
    rc, data = check(lib)
    report = only_build(data)
    assert_foreign(report, "macOS arm64 (Mach-O)", rc)
    assert not by_code(report, "BD110")  # not "will fall back to the CPU": it cannot load at all
    (info,) = by_code(report, "BD011")
    assert "Metal" in info["title"]


def test_macho_metal_library_for_a_mac(tmp_path):
    lib = ff.make_macho_metal_lib(tmp_path)
    rc, data = check("--profile", MAC_M2, lib)
    report = only_build(data)
    assert not by_code(report, "BD010")
    (bf,) = report["build"]["files"]
    assert (bf["os"], bf["archs"]) == ("darwin", ["aarch64"])
    assert [f for f in report["findings"] if f["code"] == "ok:gpu" and "Metal" in f["title"]], report["findings"]


def test_fat_macho_slice_for_the_target(tmp_path):
    """The fat file's x86_64 slice has no Metal backend, its arm64 slice has: which slice was read
    shows in the backends."""
    lib = ff.make_fat_macho_lib(tmp_path)
    _rc, data = check("--profile", MAC_M2, lib)
    report = only_build(data)
    (bf,) = report["build"]["files"]
    assert bf["archs"] == ["x86_64", "aarch64"] and bf["arch"] == "aarch64"
    assert "Metal" in bf["backends"] and not by_code(report, "BD010")
    _rc, data = check("--profile", MAC_INTEL, lib)
    report = only_build(data)
    (bf,) = report["build"]["files"]
    assert bf["arch"] == "x86_64" and "Metal" not in bf["backends"] and not by_code(report, "BD010")


def test_fat_macho_is_foreign_on_linux(tmp_path):
    if HOST_OS == "darwin":
        pytest.skip("this machine runs macOS")
    lib = ff.make_fat_macho_lib(tmp_path)
    rc, data = check(lib)
    assert_foreign(only_build(data), "macOS x86_64 + arm64 (fat Mach-O)", rc)


# --------------------------------------------------------------------------- names


def test_platform_names_are_one_spelling():
    assert {platforms.canonical_arch(a) for a in ("arm64", "AArch64", "aarch64")} == {"aarch64"}
    assert {platforms.canonical_arch(a) for a in ("amd64", "x64", "x86_64")} == {"x86_64"}
    assert platforms.canonical_os("macOS") == "darwin"
    assert platforms.label("darwin", "aarch64") == "macOS arm64"
    assert platforms.label("linux", "arm64") == "Linux aarch64"
    assert platforms.Platform("darwin", ("x86_64", "aarch64")).runs_on("darwin", "arm64")
    assert not platforms.Platform("linux", ("aarch64",)).runs_on("android", "aarch64")
