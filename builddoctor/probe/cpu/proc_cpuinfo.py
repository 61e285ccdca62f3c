"""Linux /proc/cpuinfo text -> CpuFacts, for x86, Arm, RISC-V, POWER and s390x, refusing a cut copy."""

from __future__ import annotations

import re

from builddoctor.probe import _data
from builddoctor.probe.cpu.facts import CpuFacts, CpuTextError, finish, int_value, size_bytes
from builddoctor.probe.cpu.microarch import arm_microarch, arm_vendor, x86_microarch
from builddoctor.profiles import CpuProfile


def _blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if not sep:
            bad += 1
            continue
        current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    if lines and bad > max(2, len(lines) // 10):
        raise CpuTextError(
            f"{bad} of {len(lines)} lines are not 'key : value' lines, so this is not a /proc/cpuinfo text"
        )
    return blocks


def _check_complete(cpu_blocks: list[dict[str, str]], text: str, needed: str) -> None:
    if not cpu_blocks:
        raise CpuTextError("no 'processor' entry: not a /proc/cpuinfo text")
    for i, block in enumerate(cpu_blocks):
        if needed not in block:
            raise CpuTextError(
                f"processor entry {i + 1} has no '{needed}' line: the text is cut short or is not a /proc/cpuinfo"
            )
    if not text.endswith("\n"):
        # a copy may just lack the final newline: the last line is whole when another
        # processor entry has the same one; it was cut when it is a shorter copy of another's
        last_key = text.rstrip().splitlines()[-1].partition(":")[0].strip()
        if last_key == needed:
            last = cpu_blocks[-1][needed].split()
            others = [b[needed].split() for b in cpu_blocks[:-1]]
            if any(len(o) > len(last) and o[: len(last) - 1] == last[:-1] for o in others):
                raise CpuTextError(
                    f"the text ends inside the last '{needed}' line: it looks truncated "
                    "(another processor entry has a longer copy of that line)"
                )
            ends = _data.load("cpu_features").get("cpuinfo", {}).get("line_end_words", {}).get(needed, [])
            if not others and (not last or last[-1] not in ends):
                word = f"'{last[-1]}'" if last else "nothing"
                raise CpuTextError(
                    f"the text ends inside the last '{needed}' line: it looks truncated "
                    f"(its only processor entry stops there, on {word}, which is not a word "
                    "the kernel ends that line with)"
                )


def parse_cpuinfo(text: str, source: str = "cpuinfo") -> CpuFacts:
    blocks = _blocks(text)
    if not blocks:
        raise CpuTextError("the file is empty")
    cpu_blocks = [b for b in blocks if "processor" in b]
    glob: dict[str, str] = {}
    for b in blocks:
        if "processor" not in b:
            for k, v in b.items():
                glob.setdefault(k, v)
    first = cpu_blocks[0] if cpu_blocks else {}
    if first.get("vendor_id") == "IBM/S390" or glob.get("vendor_id") == "IBM/S390":
        return _parse_s390x(text, blocks, glob, source)
    if "flags" in first or "vendor_id" in first:
        return _parse_x86(text, cpu_blocks, source)
    if "isa" in first:
        return _parse_riscv(text, cpu_blocks, glob, source)
    if "cpu" in first and ("POWER" in first.get("cpu", "").upper() or "timebase" in glob):
        return _parse_power(text, cpu_blocks, glob, source)
    if "Features" in first or "CPU implementer" in first or "Features" in glob:
        return _parse_arm(text, cpu_blocks, glob, source)
    raise CpuTextError("it has no 'flags', 'Features', 'isa' or 'cpu' lines, so the CPU type cannot be told")


def _common_flags(blocks: list[dict[str, str]], key: str) -> list[str]:
    sets = [set(b.get(key, "").split()) for b in blocks if key in b]
    if not sets:
        return []
    common = set.intersection(*sets)
    return sorted(common)


def _parse_x86(text: str, cpu_blocks: list[dict[str, str]], source: str) -> CpuFacts:
    _check_complete(cpu_blocks, text, "flags")
    first = cpu_blocks[0]
    vendor = first.get("vendor_id", "")
    family, model, stepping = (
        int_value(first.get("cpu family")),
        int_value(first.get("model")),
        int_value(first.get("stepping")),
    )
    pairs = {(b.get("physical id"), b.get("core id")) for b in cpu_blocks if "core id" in b}
    cores: int | None = len(pairs) if pairs else None
    if cores is None and int_value(first.get("cpu cores")):
        sockets = len({b.get("physical id") for b in cpu_blocks}) or 1
        cores = int_value(first.get("cpu cores")) * sockets  # type: ignore[operator]
    l3 = None
    if vendor == "GenuineIntel":  # Intel reports its last-level (L3) cache here; AMD reports L2
        l3 = size_bytes(first.get("cache size", ""))
    flags = _common_flags(cpu_blocks, "flags")
    arch = "x86_64" if "lm" in flags else "x86"
    cpu = CpuProfile(
        arch=arch,
        vendor=vendor,
        model=first.get("model name", ""),
        microarch=x86_microarch(vendor, family, model, stepping),
        cores=cores,
        threads=len(cpu_blocks),
        flags=flags,
        l3_cache_bytes=l3,
        source=source,
    )
    notes = []
    if "hypervisor" in flags:
        notes.append("The CPU runs under a hypervisor: its features are those the virtual machine exposes.")
    return CpuFacts(cpu=finish(cpu, "linux"), notes=notes)


def _parse_arm(text: str, cpu_blocks: list[dict[str, str]], glob: dict[str, str], source: str) -> CpuFacts:
    if cpu_blocks:
        _check_complete(cpu_blocks, text, "Features")
        flags = _common_flags(cpu_blocks, "Features")
        first = cpu_blocks[0]
    else:  # very old kernels: one block, "Processor : ARMv6-compatible processor rev 7 (v6l)"
        first = glob
        flags = sorted(set(glob.get("Features", "").split()))
        if not flags:
            raise CpuTextError("no 'Features' line: the text is cut short or is not a /proc/cpuinfo")
    model_name = first.get("model name") or glob.get("Processor", "")
    if ("asimd" in flags or "fp" in flags) and "neon" not in flags and "thumb" not in flags:
        arch = "aarch64"
    else:
        m = re.search(r"\((v\d+l?)\)", model_name)
        arch = f"arm{m.group(1)}" if m else f"armv{first.get('CPU architecture', '7').strip()}l"
    names: list[str] = []
    vendors: list[str] = []
    for b in cpu_blocks or [glob]:
        imp, part = int_value(b.get("CPU implementer")), int_value(b.get("CPU part"))
        name = arm_microarch(imp, part) or (f"part 0x{part:03x}" if part is not None else "")
        if name and name not in names:
            names.append(name)
        vend = arm_vendor(imp)
        if vend and vend not in vendors:
            vendors.append(vend)
    microarch = "+".join(names)
    vendor = "+".join(vendors)
    board = glob.get("Model") or glob.get("Hardware") or ""
    pretty = " + ".join(_pretty_arm(n) for n in names)
    model = model_name or pretty or board
    if model and board and board not in model:
        model = f"{pretty or model} ({board})"
    cpu = CpuProfile(
        arch=arch,
        vendor=vendor,
        model=model,
        microarch=microarch,
        cores=None,
        threads=len(cpu_blocks) or None,
        flags=flags,
        source=source,
    )
    return CpuFacts(cpu=finish(cpu, "linux"))


def _pretty_arm(name: str) -> str:
    if name.startswith("cortex_"):
        return "Cortex-" + name[len("cortex_") :].upper()
    if name.startswith("neoverse_"):
        return "Neoverse-" + name[len("neoverse_") :].upper()
    return name


def _parse_riscv(text: str, cpu_blocks: list[dict[str, str]], glob: dict[str, str], source: str) -> CpuFacts:
    _check_complete(cpu_blocks, text, "isa")
    first = cpu_blocks[0]
    isa = first.get("isa", "").lower()
    m = re.match(r"rv(32|64)([a-z]*)(.*)$", isa)
    if not m:
        raise CpuTextError(f"the 'isa' line ({isa[:40]!r}) is not a RISC-V ISA string")
    flags = set(m.group(2))
    if "g" in flags:
        flags |= set("imafd")
    flags |= {e for e in m.group(3).split("_") if e}
    uarch = first.get("uarch", "")
    cpu = CpuProfile(
        arch=f"riscv{m.group(1)}",
        vendor=uarch.split(",")[0] if uarch else "",
        model=uarch or f"rv{m.group(1)}{m.group(2)}",
        microarch=uarch.split(",")[-1] if uarch else "",
        threads=len(cpu_blocks),
        flags=sorted(flags),
        source=source,
    )
    return CpuFacts(cpu=finish(cpu, "linux"))


def _parse_power(text: str, cpu_blocks: list[dict[str, str]], glob: dict[str, str], source: str) -> CpuFacts:
    _check_complete(cpu_blocks, text, "cpu")
    name = cpu_blocks[0].get("cpu", "")
    flags = []
    m = re.search(r"POWER(\d+)", name, re.I)
    if m:
        flags.append(f"power{m.group(1)}")
    if "altivec" in name.lower():
        flags.append("altivec")
    arch = "ppc64le"  # /proc/cpuinfo does not tell the byte order; little-endian is what Linux distributions ship
    cpu = CpuProfile(
        arch=arch,
        vendor="IBM",
        model=name,
        microarch=flags[0] if flags else "",
        threads=len(cpu_blocks),
        flags=flags,
        source=source,
    )
    return CpuFacts(cpu=finish(cpu, "linux"))


def _parse_s390x(text: str, blocks: list[dict[str, str]], glob: dict[str, str], source: str) -> CpuFacts:
    info: dict[str, str] = {}
    for b in blocks:
        for k, v in b.items():
            info.setdefault(k, v)
    if "features" not in info:
        raise CpuTextError("no 'features' line: the text is cut short or is not a /proc/cpuinfo")
    flags = sorted(set(info["features"].split()))
    machine = ""
    m = re.search(r"machine\s*=\s*(\d+)", text)
    if m:
        machine = _data.load("cpu_microarch").get("s390x_machines", {}).get(m.group(1), "")
    cpu = CpuProfile(
        arch="s390x",
        vendor="IBM",
        model=f"IBM Z {machine}".strip(),
        microarch=machine,
        threads=int_value(info.get("# processors")),
        flags=flags,
        source=source,
    )
    return CpuFacts(cpu=finish(cpu, "linux"))
