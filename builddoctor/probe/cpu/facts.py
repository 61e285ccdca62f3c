"""What a CPU text or probe yields (CpuFacts), and the last step every reader takes (finish)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from builddoctor.probe.cpu.microarch import x86_microarch_checked
from builddoctor.probe.cpu.variants import features_from_flags, variants_for
from builddoctor.profiles import CpuProfile


class CpuTextError(ValueError):
    """The text is not a usable /proc/cpuinfo or sysctl dump; the message says why."""


@dataclass
class CpuFacts:
    """A parsed CPU plus the machine facts the same text told (sysctl knows the OS and RAM)."""

    cpu: CpuProfile
    os: str = "linux"  # the OS the text came from
    os_version: str = ""
    kernel: str = ""
    memory_bytes: int | None = None
    notes: list[str] = field(default_factory=list)


def finish(cpu: CpuProfile, os_name: str) -> CpuProfile:
    """Fill features, variants and the best variant from the raw flags."""
    cpu.flags = sorted(set(cpu.flags))
    cpu.features = features_from_flags(cpu.flags, os_name, cpu.arch)
    ranked = variants_for(cpu.features, os_name, cpu.arch)
    cpu.variants = [name for name, _ in ranked]
    cpu.variant = cpu.variants[-1] if cpu.variants else None
    if cpu.arch in ("x86_64", "x86"):
        cpu.microarch = x86_microarch_checked(cpu.microarch, cpu.vendor, cpu.features)
    return cpu


def int_value(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        return None


def size_bytes(text: str) -> int | None:
    m = re.match(r"\s*(\d+)\s*([KMG]?)i?B?", text, re.I)
    if not m or not text.strip():
        return None
    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    return int(m.group(1)) * mult
