"""macOS `sysctl -a` text -> CpuFacts (the CPU plus the OS and RAM that sysctl also tells)."""

from __future__ import annotations

import re

from builddoctor.probe.cpu.facts import CpuFacts, CpuTextError, finish, int_value
from builddoctor.probe.cpu.microarch import brand_microarch, x86_microarch
from builddoctor.profiles import CpuProfile

_SYSCTL_KEY = re.compile(r"^([A-Za-z_][\w.\-]*\.[\w.\-]+)\s*[:=]\s?(.*)$")


def sysctl_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        m = _SYSCTL_KEY.match(line)
        if m:
            last = m.group(1)
            values.setdefault(last, m.group(2).strip())
        elif last and line.strip():
            values[last] += "\n" + line.strip()
    return values


def parse_sysctl(text: str, source: str = "sysctl") -> CpuFacts:
    v = sysctl_values(text)
    brand = v.get("machdep.cpu.brand_string", "")
    if not brand and not any(k.startswith("hw.optional.") for k in v):
        raise CpuTextError("no machdep.cpu.brand_string and no hw.optional.* keys: the `sysctl -a` text is cut short")
    is_arm = v.get("hw.optional.arm64") == "1" or brand.startswith("Apple")
    vendor_x86 = v.get("machdep.cpu.vendor", "")
    if not is_arm and not vendor_x86:
        raise CpuTextError("neither hw.optional.arm64 nor machdep.cpu.vendor: the `sysctl -a` text is cut short")
    flags: set[str] = {k for k, val in v.items() if k.startswith("hw.optional.") and val.strip() == "1"}
    for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features", "machdep.cpu.extfeatures"):
        flags |= set(v.get(key, "").split())
    if is_arm:
        arch, vendor = "aarch64", "Apple"
        microarch = brand_microarch(brand)
    else:
        arch, vendor = "x86_64", vendor_x86
        microarch = x86_microarch(
            vendor,
            int_value(v.get("machdep.cpu.family")),
            int_value(v.get("machdep.cpu.model")),
            int_value(v.get("machdep.cpu.stepping")),
        )
    l3 = int_value(v.get("hw.l3cachesize")) or None
    cpu = CpuProfile(
        arch=arch,
        vendor=vendor,
        model=brand,
        microarch=microarch,
        cores=int_value(v.get("hw.physicalcpu")) or int_value(v.get("machdep.cpu.core_count")),
        threads=int_value(v.get("hw.logicalcpu"))
        or int_value(v.get("hw.ncpu"))
        or int_value(v.get("machdep.cpu.thread_count")),
        flags=sorted(flags),
        l3_cache_bytes=l3,
        source=source,
    )
    version = v.get("kern.osproductversion", "")
    notes = []
    if v.get("sysctl.proc_translated") == "1":
        notes.append("sysctl ran under Rosetta 2: an x86_64 process on Apple Silicon.")
    release = v.get("kern.osrelease", "")
    return CpuFacts(
        cpu=finish(cpu, "darwin"),
        os="darwin",
        os_version=f"macOS {version}" if version else "",
        kernel=f"Darwin {release}" if release else "",
        memory_bytes=int_value(v.get("hw.memsize")),
        notes=notes,
    )
