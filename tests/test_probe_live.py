"""The live probe of this machine, checked against independent sources of the same facts
(the compiler's own -march=native detection, os.cpu_count, /proc/meminfo, the tools themselves)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from builddoctor import proc
from builddoctor.probe import machine_profile, platform, toolchain
from builddoctor.profiles import MachineProfile


@pytest.fixture(scope="module")
def live() -> MachineProfile:
    return machine_profile()


# gcc's predefined macros under -march=native -> our feature names
_GCC_MACROS = {
    "__SSE3__": "SSE3",
    "__SSSE3__": "SSSE3",
    "__SSE4_1__": "SSE41",
    "__SSE4_2__": "SSE42",
    "__AVX__": "AVX",
    "__F16C__": "F16C",
    "__FMA__": "FMA",
    "__AVX2__": "AVX2",
    "__BMI2__": "BMI2",
    "__AVXVNNI__": "AVX_VNNI",
    "__AVX512F__": "AVX512F",
    "__AVX512CD__": "AVX512CD",
    "__AVX512VL__": "AVX512VL",
    "__AVX512DQ__": "AVX512DQ",
    "__AVX512BW__": "AVX512BW",
    "__AVX512VBMI__": "AVX512_VBMI",
    "__AVX512VNNI__": "AVX512_VNNI",
    "__AVX512BF16__": "AVX512_BF16",
    "__AVX512FP16__": "AVX512_FP16",
    "__AMX_TILE__": "AMX_TILE",
    "__AMX_INT8__": "AMX_INT8",
    "__AMX_BF16__": "AMX_BF16",
}


def _gcc_native() -> tuple[set[str], str]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc to cross-check the CPU features")
    done = proc.run([gcc, "-march=native", "-dM", "-E", "-"], timeout=20, stdin_data="")
    assert done.ok, done.stderr
    macros = set(re.findall(r"#define (__\w+__) 1", done.stdout))
    arch = re.search(
        r"#define __(znver\d|haswell|skylake|icelake|sapphirerapids|alderlake|cascadelake)__ 1", done.stdout
    )
    return macros, arch.group(1) if arch else ""


def test_live_cpu_features_agree_with_gcc_native(live):
    if live.arch != "x86_64":
        pytest.skip("cross-check written for x86_64")
    macros, _ = _gcc_native()
    expected = {feat for macro, feat in _GCC_MACROS.items() if macro in macros}
    ours = set(live.cpu.features) & set(_GCC_MACROS.values())
    # gcc versions older than the CPU may not know its newest extensions: ours may only add to gcc's
    assert expected <= ours
    assert ours - expected <= {"AVX512_FP16", "AMX_TILE", "AMX_INT8", "AMX_BF16", "AVX512_BF16", "AVX_VNNI"}
    assert ("AVX512" in live.cpu.features) == (
        {"__AVX512F__", "__AVX512CD__", "__AVX512VL__", "__AVX512DQ__", "__AVX512BW__"} <= macros
    )


def test_live_variant_is_the_best_fitting_one(live):
    from builddoctor.probe import cpu

    ranked = cpu.variants_for(live.cpu.features, live.os, live.arch)
    assert live.cpu.variant == ranked[-1][0]
    if live.arch == "x86_64":
        if "AVX512" in live.cpu.features and "AVX512_BF16" in live.cpu.features and "AVX512_VBMI" in live.cpu.features:
            assert live.cpu.variant in ("zen4", "sapphirerapids")
        elif "AVX2" in live.cpu.features and "AVX512" not in live.cpu.features and "AVX_VNNI" not in live.cpu.features:
            assert live.cpu.variant == "haswell"


def test_live_microarch_agrees_with_gcc_on_amd(live):
    if live.cpu.vendor != "AuthenticAMD":
        pytest.skip("gcc names AMD cores znverN; other vendors are checked through the fixtures")
    _, arch = _gcc_native()
    if not arch.startswith("znver"):
        pytest.skip(f"this gcc does not know this core ({arch or 'generic'})")
    assert live.cpu.microarch == "zen" + arch[len("znver") :]


def test_live_counts_and_memory(live):
    assert live.os == "linux" or live.os == "darwin"
    assert live.cpu.threads == os.cpu_count()
    assert live.cpu.cores and 1 <= live.cpu.cores <= live.cpu.threads
    assert live.cpu.model and live.cpu.vendor
    if live.os == "linux":
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
        assert live.memory_bytes == kib * 1024
        libc = os.confstr("CS_GNU_LIBC_VERSION")
        assert f"{live.libc} {live.libc_version}" == libc


def test_live_libstdcxx_is_the_highest_glibcxx(live):
    lib = platform.find_libstdcxx()
    if lib is None:
        pytest.skip("no libstdc++ here")
    versions = platform.glibcxx_versions(lib)
    assert "3.4" in versions and len(versions) > 10
    assert live.libstdcxx_version == versions[-1]
    strings = shutil.which("strings")
    if strings:  # binutils' view of the same file
        done = proc.run([strings, str(lib)], timeout=20)
        theirs = sorted(
            {m for m in re.findall(r"^GLIBCXX_(\d+\.\d+(?:\.\d+)*)$", done.stdout, re.M)},
            key=lambda v: tuple(map(int, v.split("."))),
        )
        assert theirs[-1] == live.libstdcxx_version


def test_live_toolchains_match_the_tools(live):
    for name in ("cmake", "gcc"):
        tool = live.tool(name)
        path = shutil.which(name)
        if path is None:
            assert not tool.found
            continue
        assert tool.found and tool.path == path
        first = proc.run([path, "--version"], timeout=10).stdout.splitlines()[0]
        assert tool.version and tool.version in first
    assert not live.tool("no-such-tool").found


def test_live_nvcc_release(live):
    """nvcc is found (PATH or /usr/local/cuda*/bin) with the release it reports itself."""
    path = toolchain.locate(toolchain.specs(live.os)["nvcc"])
    if path is None:
        pytest.skip("no CUDA toolkit on this machine")
    release = re.search(r"release (\d+\.\d+)", proc.run([path, "--version"], timeout=10).stdout).group(1)
    nvcc = live.tool("nvcc")
    assert nvcc.found and nvcc.version.startswith(release + ".")


def test_nvcc_found_outside_path(monkeypatch):
    """A CUDA toolkit not on PATH (the usual after a .run install) is still found under /usr/local/cuda*/bin."""
    import glob

    if not glob.glob("/usr/local/cuda*/bin/nvcc"):
        pytest.skip("no /usr/local/cuda*/bin/nvcc here")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if shutil.which("nvcc"):
        pytest.skip("nvcc is in /usr/bin here")
    info = toolchain.query("nvcc", toolchain.specs("linux")["nvcc"])
    assert info.found and info.path.startswith("/usr/local/cuda") and info.version


def test_missing_tool_is_a_fact_not_an_error():
    info = toolchain.query("ghost", {"names": ["builddoctor-no-such-tool"], "args": ["--version"], "regex": "(x)"})
    assert not info.found and info.detail == "not found"


def test_hanging_tool_is_time_limited(tmp_path, monkeypatch):
    slow = tmp_path / "slowtool"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(toolchain, "TIMEOUT", 0.5)
    t0 = time.monotonic()
    info = toolchain.query("slowtool", {"names": [str(slow)], "args": ["--version"], "regex": r"(\d+)"})
    assert time.monotonic() - t0 < 5
    assert info.found and info.version is None and "timed out" in info.detail


def test_live_round_trip(live):
    text = live.to_json()
    again = MachineProfile.from_json(text)
    assert again == live
    assert again.to_json() == text


def test_no_gpu_here_but_maybe_an_emulated_one(live):
    """No NVIDIA/AMD driver: no usable GPU; vulkaninfo (CI installs it) may list only CPU-emulated devices."""
    if shutil.which("nvidia-smi") or os.path.exists("/dev/kfd") or os.path.exists("/proc/driver/nvidia"):
        pytest.skip("this machine has GPU drivers")
    assert [g for g in live.usable_gpus() if g.source != "pci"] == []
    for g in live.gpus:
        if g.source == "vulkaninfo":
            assert g.cpu_emulated, g.name


def test_gpu_probes_merge_and_a_failed_one_costs_a_note():
    """probe_live's GPU step: the Vulkan view of the NVIDIA card joins its nvidia-smi entry, and a
    probe that raised (AMD here) is a note while the others stand."""
    from concurrent.futures import ThreadPoolExecutor

    from builddoctor.probe import _gpus, cpu
    from builddoctor.profiles import CpuProfile, GpuProfile

    def amd_fails():
        raise RuntimeError("rocminfo exploded")

    smi = GpuProfile(vendor="nvidia", name="NVIDIA GeForce GTX 1080", compute_capability="6.1", apis=["cuda"])
    vk = GpuProfile(vendor="nvidia", name="NVIDIA GeForce GTX 1080", apis=["vulkan"])
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            "nvidia": pool.submit(lambda: [smi]),
            "amd": pool.submit(amd_fails),
            "vulkan": pool.submit(lambda: ([vk], "1.3.239")),
        }
        notes: list[str] = []
        facts = platform.basic()
        gpus, rocm, loader = _gpus(futures, "linux", cpu.CpuFacts(cpu=CpuProfile(arch="x86_64")), facts, notes, [])
    assert gpus[0].name == "NVIDIA GeForce GTX 1080" and gpus[0].apis == ["cuda", "vulkan"]
    assert rocm is None and loader == "1.3.239"
    assert notes == ["The AMD probe failed (RuntimeError: rocminfo exploded)."]
