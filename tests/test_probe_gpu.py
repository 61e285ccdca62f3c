"""GPU parsing: nvidia-smi XML and CSV, /proc/driver/nvidia, rocminfo, vulkaninfo --summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from builddoctor.probe import gpu, gpus_from_file
from builddoctor.profiles import CpuProfile

FIX = Path(__file__).parent / "fixtures"


def test_rtx4090_xml():
    (g,) = gpus_from_file(FIX / "nvidia-smi/rtx4090-driver550.xml")
    assert (g.vendor, g.name, g.memory_mib) == ("nvidia", "NVIDIA GeForce RTX 4090", 24564)
    assert g.compute_capability == "8.9"
    assert (g.driver_version, g.cuda_version) == ("550.54.14", "12.4")
    assert g.apis == ["cuda"] and not g.cpu_emulated
    assert g.source == f"nvidia-smi:{FIX / 'nvidia-smi/rtx4090-driver550.xml'}"


def test_two_h100_xml():
    gpus = gpus_from_file(FIX / "nvidia-smi/2x-h100-sxm-driver570.xml")
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    for g in gpus:
        assert (g.memory_mib, g.compute_capability, g.driver_version, g.cuda_version) == (
            81559,
            "9.0",
            "570.124.06",
            "12.8",
        )


def test_gtx1080_csv():
    (g,) = gpus_from_file(FIX / "nvidia-smi/gtx1080-driver535.csv")
    assert (g.name, g.memory_mib, g.compute_capability) == ("NVIDIA GeForce GTX 1080", 8192, "6.1")
    assert (g.driver_version, g.cuda_version) == ("535.183.01", "12.2")


def test_csv_without_header_or_units():
    gpus = gpus_from_file(FIX / "nvidia-smi/2x-l4-noheader-nounits.csv")
    assert len(gpus) == 2
    assert all(
        (g.name, g.memory_mib, g.compute_capability, g.cuda_version) == ("NVIDIA L4", 23034, "8.9", "12.4")
        for g in gpus
    )


def test_proc_driver_nvidia():
    d = FIX / "nvidia-smi/proc-driver-nvidia"
    (g,) = gpu.parse_proc_nvidia((d / "version").read_text(), [(d / "information").read_text()])
    assert (g.name, g.driver_version, g.cuda_version, g.compute_capability) == (
        "NVIDIA GeForce RTX 4090",
        "550.54.14",
        "12.4",
        "8.9",
    )


@pytest.mark.parametrize(
    "driver,cuda",
    [
        ("575.51.02", "12.9"),
        ("565.57.01", "12.7"),
        ("551.86", "12.4"),
        ("580.65.06", "13.0"),
        ("470.256.02", "11.4"),
        ("390.157", None),
    ],
)
def test_cuda_version_of_driver(driver, cuda):
    assert gpu.cuda_for_driver(driver) == cuda


@pytest.mark.parametrize(
    "name,cc",
    [
        ("NVIDIA GeForce RTX 3090", "8.6"),
        ("NVIDIA A100-SXM4-80GB", "8.0"),
        ("Tesla V100-SXM2-16GB", "7.0"),
        ("NVIDIA GeForce RTX 5090", "12.0"),
        ("Tesla T4", "7.5"),
        ("NVIDIA GeForce GTX 1660 SUPER", "7.5"),
        ("NVIDIA B200", "10.0"),
        ("Tesla P40", "6.1"),
    ],
)
def test_compute_capability_table(name, cc):
    assert gpu.compute_capability(name) == cc


def test_rocminfo():
    (g,) = gpu.parse_rocminfo((FIX / "rocminfo/rx7900xtx-rocm6.1.txt").read_text(), rocm_version="6.1.2")
    assert (g.vendor, g.name, g.gfx_target, g.memory_mib) == ("amd", "AMD Radeon RX 7900 XTX", "gfx1100", 24560)
    assert g.apis == ["hip"] and g.driver_version == "6.1.2"


def test_vulkaninfo_llvmpipe_is_cpu_emulated():
    gpus, instance = gpu.parse_vulkaninfo((FIX / "vulkaninfo/llvmpipe-debian12.txt").read_text())
    assert instance == "1.3.239"
    (g,) = gpus
    assert g.name.startswith("llvmpipe") and g.cpu_emulated and g.apis == ["vulkan"]


def test_vulkaninfo_merges_with_nvidia_smi():
    vk, _ = gpu.parse_vulkaninfo((FIX / "vulkaninfo/rtx4090-and-llvmpipe.txt").read_text())
    assert [(g.vendor, g.cpu_emulated) for g in vk] == [("nvidia", False), ("other", True)]
    merged = gpu.merge(gpus_from_file(FIX / "nvidia-smi/rtx4090-driver550.xml"), vk)
    assert len(merged) == 2
    assert merged[0].apis == ["cuda", "vulkan"] and merged[0].memory_mib == 24564
    assert merged[1].cpu_emulated


def test_apple_gpu_from_the_chip():
    cpu = CpuProfile(arch="aarch64", vendor="Apple", model="Apple M2", source="sysctl:x")
    g = gpu.apple_gpu(cpu, 16 * 2**30)
    assert (g.vendor, g.name, g.memory_mib, g.apis) == ("apple", "Apple M2 GPU", 16384, ["metal"])
    assert gpu.apple_gpu(CpuProfile(arch="x86_64", vendor="GenuineIntel"), 2**30) is None


def test_truncated_xml_is_refused():
    text = (FIX / "nvidia-smi/rtx4090-driver550.xml").read_text()
    with pytest.raises(gpu.GpuTextError, match="does not parse"):
        gpu.parse_nvidia_smi(text[: len(text) // 2])


def test_truncated_csv_is_refused():
    text = (FIX / "nvidia-smi/gtx1080-driver535.csv").read_text()
    with pytest.raises(gpu.GpuTextError, match="truncated"):
        gpu.parse_nvidia_smi(text[:80])
