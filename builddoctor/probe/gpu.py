"""GPUs: NVIDIA (nvidia-smi XML or CSV, /proc/driver/nvidia), AMD (rocminfo), Vulkan devices
(vulkaninfo --summary), Apple Silicon (Metal), and display devices on the PCI bus.

Every parser takes text and returns ``GpuProfile`` values, so recorded outputs from other
machines work like live ones. Devices that are the CPU in disguise (llvmpipe, lavapipe,
SwiftShader) are kept but marked ``cpu_emulated``: never a device to choose.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from builddoctor import proc
from builddoctor.probe import _data
from builddoctor.profiles import CpuProfile, GpuProfile


class GpuTextError(ValueError):
    """The text is not usable nvidia-smi (or rocminfo/vulkaninfo) output; the message says why."""


# --------------------------------------------------------------------------- NVIDIA


def compute_capability(name: str, architecture: str = "") -> str | None:
    for row in _data.load("gpu_nvidia")["compute_capability"]:
        if "pattern" in row and re.search(row["pattern"], name, re.I):
            return row["cc"]
    for row in _data.load("gpu_nvidia")["compute_capability"]:
        if architecture and row.get("architecture", "").lower() == architecture.strip().lower():
            return row["cc"]
    return None


def cuda_for_driver(driver: str | None) -> str | None:
    """The highest CUDA version a driver version supports (as nvidia-smi would print it)."""
    if not driver:
        return None
    m = re.match(r"\s*(\d{1,6})(?!\d)", driver)  # a branch number, not 5000 digits
    if not m:
        return None
    branch = int(m.group(1))
    table = {int(k): v for k, v in _data.load("gpu_nvidia")["cuda_by_driver_branch"].items()}
    below = [b for b in table if b <= branch]
    return table[max(below)] if below else None


def _mib(text: str | None) -> int | None:
    if not text:
        return None
    # one plain number of sane size ("1.2.3 MiB" or 400 digits is no memory size: unknown, not a crash)
    m = re.match(r"\s*(\d{1,12}(?:\.\d{1,6})?)(?![\d.])\s*(MiB|MB|GiB|GB|KiB|KB)?", text, re.I)
    if not m:
        return None
    value = float(m.group(1))
    unit = (m.group(2) or "MiB").lower()
    factor = {"mib": 1, "mb": 1, "gib": 1024, "gb": 1024, "kib": 1 / 1024, "kb": 1 / 1024}[unit]
    return int(round(value * factor))


_DRIVER = re.compile(r"\d{1,6}(?:\.\d{1,6}){0,3}")


def _driver(text: str | None) -> str | None:
    """A driver version as nvidia-smi prints it (550.54.15), else None: 5000 digits are no version."""
    return text if text and _DRIVER.fullmatch(text) else None


def _cc(text: str | None) -> str | None:
    """A compute capability (8.9, 12.0), else None ("[N/A]", or 20 digits): the name table decides then."""
    return text if text and re.fullmatch(r"\d{1,2}\.\d{1,2}", text) else None


def parse_nvidia_smi(text: str, source: str = "nvidia-smi") -> list[GpuProfile]:
    """``nvidia-smi -q -x`` XML or ``nvidia-smi --query-gpu=... --format=csv`` output."""
    if not text.strip():
        raise GpuTextError("the file is empty")
    if text.strip() == "No devices were found":  # what nvidia-smi prints with a driver but no GPU
        return []
    if text.lstrip().startswith("<"):
        return parse_nvidia_xml(text, source)
    return parse_nvidia_csv(text, source)


def parse_nvidia_xml(text: str, source: str = "nvidia-smi") -> list[GpuProfile]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise GpuTextError(f"the XML does not parse ({exc}): truncated or not `nvidia-smi -q -x` output") from None
    if root.tag != "nvidia_smi_log":
        raise GpuTextError(f"the XML root is <{root.tag}>, not <nvidia_smi_log>: not `nvidia-smi -q -x` output")
    driver = _driver(_text(root, "driver_version"))
    cuda = _text(root, "cuda_version") or cuda_for_driver(driver)
    gpus = []
    for node in root.findall("gpu"):
        name = _text(node, "product_name") or "NVIDIA GPU"
        arch = _text(node, "product_architecture") or ""
        cc = _cc(_text(node, "compute_cap")) or compute_capability(name, arch)
        gpus.append(
            GpuProfile(
                vendor="nvidia",
                name=name,
                memory_mib=_mib(_text(node, "fb_memory_usage/total")),
                compute_capability=cc,
                driver_version=driver,
                cuda_version=cuda,
                apis=["cuda"],
                source=source,
            )
        )
    if not gpus and _text(root, "attached_gpus") not in (None, "0"):
        raise GpuTextError("the XML says GPUs are attached but lists none: it looks truncated")
    return gpus


def _text(node, path: str) -> str | None:
    found = node.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in ("", "N/A") else value


_CSV_FIELDS = {
    "name": "name",
    "gpu_name": "name",
    "memory.total": "memory",
    "compute_cap": "cc",
    "driver_version": "driver",
    "pci.bus_id": "bus",
    "gpu_bus_id": "bus",
    "uuid": "uuid",
}


def parse_nvidia_csv(text: str, source: str = "nvidia-smi") -> list[GpuProfile]:
    try:
        rows = [r for r in csv.reader(text.splitlines(), skipinitialspace=True) if any(c.strip() for c in r)]
    except csv.Error as exc:  # a field over csv's limit (128 KiB), a NUL...
        raise GpuTextError(f"not nvidia-smi CSV output ({exc})") from None
    if not rows:
        raise GpuTextError("the file is empty")
    header = [re.sub(r"\s*\[.*\]$", "", c.strip()).lower() for c in rows[0]]
    if any(h in _CSV_FIELDS for h in header):
        keys = [_CSV_FIELDS.get(h, h) for h in header]
        data = rows[1:]
        if "name" not in keys:
            raise GpuTextError(
                "the CSV has no 'name' column: query with --query-gpu=name,memory.total,compute_cap,driver_version"
            )
    else:
        keys = [_guess_csv_field(c) for c in rows[0]]
        data = rows
        if "name" not in keys or not {"memory", "cc", "driver"} & set(keys):
            raise GpuTextError(
                "not nvidia-smi output: neither `-q -x` XML nor a `--query-gpu ... --format=csv` table "
                "(a table without header needs the name and memory.total, compute_cap or driver_version)"
            )
    gpus = []
    for n, row in enumerate(data, start=2):
        if len(row) != len(keys):
            raise GpuTextError(
                f"CSV line {n} has {len(row)} fields where the header has {len(keys)}: the file looks truncated"
            )
        rec = {k: v.strip() for k, v in zip(keys, row, strict=True)}
        name = rec.get("name", "NVIDIA GPU")
        cc = _cc(rec.get("cc")) or compute_capability(name)
        driver = _driver(rec.get("driver"))
        gpus.append(
            GpuProfile(
                vendor="nvidia",
                name=name,
                memory_mib=_mib(rec.get("memory")),
                compute_capability=cc,
                driver_version=driver,
                cuda_version=cuda_for_driver(driver),
                apis=["cuda"],
                source=source,
            )
        )
    return gpus


def _guess_csv_field(cell: str) -> str:
    c = cell.strip()
    if re.fullmatch(r"\d+(\s*MiB)?", c):
        return "memory"
    if re.fullmatch(r"\d{1,2}\.\d", c):
        return "cc"
    if re.fullmatch(r"\d{3}\.\d+(\.\d+)?", c):
        return "driver"
    if re.fullmatch(r"[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d", c):
        return "bus"
    if c.startswith("GPU-"):
        return "uuid"
    return "name" if re.search(r"[A-Za-z]", c) else "unknown"


def parse_proc_nvidia(
    version_text: str, informations: list[str], source: str = "/proc/driver/nvidia"
) -> list[GpuProfile]:
    """/proc/driver/nvidia/version plus each /proc/driver/nvidia/gpus/*/information."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", version_text)
    driver = m.group(1) if m else None
    gpus = []
    for info in informations:
        mm = re.search(r"^Model:\s*(.+)$", info, re.M)
        name = mm.group(1).strip() if mm else "NVIDIA GPU"
        gpus.append(
            GpuProfile(
                vendor="nvidia",
                name=name,
                compute_capability=compute_capability(name),
                driver_version=driver,
                cuda_version=cuda_for_driver(driver),
                apis=["cuda"],
                source=source,
            )
        )
    return gpus


# --------------------------------------------------------------------------- AMD


def parse_rocminfo(text: str, rocm_version: str | None = None, source: str = "rocminfo") -> list[GpuProfile]:
    agents = re.split(r"^\*+\s*\nAgent \d+\s*\n\*+\s*$", text, flags=re.M)
    gpus = []
    for agent in agents[1:]:
        kv: dict[str, str] = {}
        for line in agent.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                kv.setdefault(key.strip(), value.strip())
        if kv.get("Device Type") != "GPU":
            continue
        target = kv.get("Name", "")
        name = kv.get("Marketing Name") or target
        size = re.search(r"Segment:\s*GLOBAL.*?\n\s*Size:\s*(\d+)\(\w+\)\s*KB", agent, re.S)
        mem = int(size.group(1)) // 1024 if size else None
        gpus.append(
            GpuProfile(
                vendor="amd",
                name=name,
                memory_mib=mem,
                gfx_target=target if target.startswith("gfx") else None,
                driver_version=rocm_version,
                apis=["hip"],
                source=source,
            )
        )
    return gpus


# --------------------------------------------------------------------------- Vulkan

_VK_VENDORS = {
    0x10DE: "nvidia",
    0x1002: "amd",
    0x1022: "amd",
    0x8086: "intel",
    0x106B: "apple",
    0x13B5: "arm",
    0x5143: "qualcomm",
}
_EMULATED = re.compile(r"llvmpipe|lavapipe|swiftshader", re.I)


def parse_vulkaninfo(text: str, source: str = "vulkaninfo") -> tuple[list[GpuProfile], str | None]:
    """``vulkaninfo --summary`` -> devices and the instance (loader) version."""
    m = re.search(r"Vulkan Instance Version:\s*(\S+)", text)
    instance = m.group(1) if m else None
    gpus = []
    for block in re.split(r"^GPU\d+:\s*$", text, flags=re.M)[1:]:
        kv: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                if kv and not line.startswith(("\t", " ")):
                    break
                continue
            kv.setdefault(key.strip(), value.strip())
        if "deviceName" not in kv:
            continue
        vendor_id = (
            int(kv.get("vendorID", "0"), 0) if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", kv.get("vendorID", "")) else 0
        )
        name = kv["deviceName"]
        emulated = kv.get("deviceType") == "PHYSICAL_DEVICE_TYPE_CPU" or bool(_EMULATED.search(name))
        gpus.append(
            GpuProfile(
                vendor=_VK_VENDORS.get(vendor_id, "other"),
                name=name,
                driver_version=kv.get("driverInfo") or kv.get("driverVersion"),
                apis=["vulkan"],
                cpu_emulated=emulated,
                source=source,
            )
        )
    return gpus, instance


def merge(gpus: list[GpuProfile], more: list[GpuProfile]) -> list[GpuProfile]:
    """Add devices from another source; one already known (same vendor, same name) gains the API."""
    out = list(gpus)
    for g in more:
        twin = next((h for h in out if h.vendor == g.vendor and _same_name(h.name, g.name)), None)
        if twin is None:
            out.append(g)
        else:
            twin.apis = sorted(set(twin.apis) | set(g.apis))
    return out


def _same_name(a: str, b: str) -> bool:
    a, b = re.sub(r"\s*\(.*\)$", "", a).strip().lower(), re.sub(r"\s*\(.*\)$", "", b).strip().lower()
    return a == b or a.startswith(b) or b.startswith(a)


# --------------------------------------------------------------------------- Apple


def apple_gpu(cpu: CpuProfile, memory_bytes: int | None) -> GpuProfile | None:
    """Apple Silicon: the GPU is part of the chip and shares its memory (Metal)."""
    if cpu.vendor != "Apple" or cpu.arch != "aarch64":
        return None
    return GpuProfile(
        vendor="apple",
        name=f"{cpu.model or 'Apple'} GPU",
        memory_mib=memory_bytes // (1024 * 1024) if memory_bytes else None,
        apis=["metal"],
        source=cpu.source if cpu.source != "live" else "sysctl",
    )


# --------------------------------------------------------------------------- live


_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/local/lib",
    "/opt/homebrew/lib",
)


def vulkan_loader() -> str | None:
    """The Vulkan loader library's version (from its file name), or its path; None when absent."""
    for d in _LIB_DIRS:
        for name in ("libvulkan.so.1", "libvulkan.1.dylib"):
            p = Path(d) / name
            if p.exists():
                real = os.path.realpath(p)
                m = re.search(r"libvulkan\.(?:so\.)?(\d+\.\d+\.\d+)", os.path.basename(real))
                return m.group(1) if m else str(p)
    return None


def rocm_version() -> str | None:
    for f in ("/opt/rocm/.info/version", "/opt/rocm/.info/version-dev"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        m = re.match(r"(\d+\.\d+(?:\.\d+)?)", text)
        if m:
            return m.group(1)
    return None


def pci_display_devices() -> list[tuple[int, int, str]]:
    """(vendor, device, sysfs path) of every display-class PCI device (Linux)."""
    out: list[tuple[int, int, str]] = []
    base = Path("/sys/bus/pci/devices")
    if not base.is_dir():
        return out
    for dev in base.iterdir():
        try:
            if not (dev / "class").read_text().startswith("0x03"):
                continue
            out.append((int((dev / "vendor").read_text(), 16), int((dev / "device").read_text(), 16), str(dev)))
        except (OSError, ValueError):
            continue
    return out


def live_nvidia(notes: list[str]) -> list[GpuProfile]:
    smi = shutil.which("nvidia-smi")
    if smi:
        fields = "name,memory.total,compute_cap,driver_version,pci.bus_id"
        for query in (fields, fields.replace("compute_cap,", "")):  # drivers before 510 lack compute_cap
            done = proc.run([smi, f"--query-gpu={query}", "--format=csv"], timeout=5)
            if done.ok:
                try:
                    return parse_nvidia_csv(done.stdout, source="nvidia-smi")
                except GpuTextError as exc:
                    notes.append(f"nvidia-smi output could not be read ({exc}).")
                    break
        else:
            notes.append(
                f"nvidia-smi failed: {(done.stderr or done.stdout).strip()[:200] or done.error or 'timed out'}"
            )
    proc_dir = Path("/proc/driver/nvidia")
    if (proc_dir / "version").exists():
        try:
            infos = [p.read_text() for p in sorted((proc_dir / "gpus").glob("*/information"))]
            return parse_proc_nvidia((proc_dir / "version").read_text(), infos)
        except OSError:
            pass
    return []


def live_amd(notes: list[str]) -> tuple[list[GpuProfile], str | None]:
    version = rocm_version()
    tool = shutil.which("rocminfo") or (
        "/opt/rocm/bin/rocminfo" if os.access("/opt/rocm/bin/rocminfo", os.X_OK) else None
    )
    if tool and os.path.exists("/dev/kfd"):
        done = proc.run([tool], timeout=5)
        if done.ok:
            return parse_rocminfo(done.stdout, version), version
        notes.append(f"rocminfo failed: {(done.stderr or done.stdout).strip()[:200] or done.error or 'timed out'}")
    return [], version


def live_vulkan(notes: list[str]) -> tuple[list[GpuProfile], str | None]:
    loader = vulkan_loader()
    tool = shutil.which("vulkaninfo")
    if not tool:
        return [], loader
    done = proc.run([tool, "--summary"], timeout=5)
    if not done.ok and "Devices:" not in done.stdout:
        notes.append(
            f"vulkaninfo --summary failed: {(done.stderr or done.stdout).strip()[-200:] or done.error or 'timed out'}"
        )
        return [], loader
    gpus, instance = parse_vulkaninfo(done.stdout)
    return gpus, loader or instance


_PCI_VENDORS = {0x10DE: "nvidia", 0x1002: "amd", 0x8086: "intel"}


def pci_gpus(known: list[GpuProfile], notes: list[str]) -> list[GpuProfile]:
    """Display devices that no driver tool reported: a fact worth a line (a GPU without its driver)."""
    out = []
    for vendor_id, device_id, _path in pci_display_devices():
        vendor = _PCI_VENDORS.get(vendor_id)
        if vendor is None or any(g.vendor == vendor and not g.cpu_emulated for g in known):
            continue
        out.append(
            GpuProfile(
                vendor=vendor,
                name=f"{vendor.upper() if vendor != 'intel' else 'Intel'} GPU [{vendor_id:04x}:{device_id:04x}]",
                source="pci",
            )
        )
        hint = {
            "nvidia": "no NVIDIA driver is loaded (no nvidia-smi, no /proc/driver/nvidia)",
            "amd": "ROCm's rocminfo did not report it",
            "intel": "seen on the PCI bus only",
        }[vendor]
        notes.append(f"A {vendor} display device [{vendor_id:04x}:{device_id:04x}] is on the PCI bus, but {hint}.")
    return out
