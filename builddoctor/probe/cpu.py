"""The CPU: parse /proc/cpuinfo or macOS ``sysctl -a`` text, or probe this machine.

Raw OS flags become features in llama.cpp's vocabulary through ``data/cpu_features.toml``;
the llama.cpp CPU backend variants this CPU can run come from ``data/cpu_variants.toml``
(GGML_CPU_ALL_VARIANTS of the pinned tree, scored as llama.cpp's loader scores them);
the microarchitecture name from ``data/cpu_microarch.toml``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor.probe import _data
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


# --------------------------------------------------------------------------- arch names

_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armv8l": "arm",
    "ppc64el": "ppc64le",
    "i386": "x86",
    "i686": "x86",
}


def normalize_arch(machine: str) -> str:
    m = machine.strip().lower()
    return _ARCH_ALIASES.get(m, m)


def feature_family(arch: str) -> str:
    """The cpu_features.toml section an architecture uses."""
    if arch in ("x86_64", "x86"):
        return "x86_64"
    if arch.startswith("arm") and arch != "arm64":
        return "arm"
    if arch.startswith("ppc64"):
        return "ppc64le"
    return arch


# --------------------------------------------------------------------------- features and variants


def features_from_flags(flags: Iterable[str], os_name: str, arch: str) -> list[str]:
    table = _data.load("cpu_features").get(os_name, {}).get(feature_family(arch), {})
    have = set(flags)
    out = []
    for feature, needs in table.items():
        if all(any(alt in have for alt in need.split("|")) for need in needs):
            out.append(feature)
    return sorted(out)


def variant_sets(os_name: str, arch: str) -> list[dict[str, Any]]:
    sets = _data.load("cpu_variants")
    return [s for s in sets.values() if arch in s["arch"] and os_name in s["os"]]


def variants_for(features: Iterable[str], os_name: str, arch: str) -> list[tuple[str, int]]:
    """Every llama.cpp CPU variant this CPU runs, with llama.cpp's loader score, best last."""
    have = set(features)
    found: list[tuple[str, int]] = []
    for vset in variant_sets(os_name, arch):
        skip = set(vset.get("build_only", []))
        weights = vset.get("weights", {})
        for name, *tags in vset["variants"]:
            needs = [t for t in tags if t not in skip]
            if all(t in have for t in needs):
                found.append((name, 1 + sum(weights.get(t, 0) for t in needs)))
    found.sort(key=lambda item: item[1])
    return found


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


# --------------------------------------------------------------------------- microarchitecture


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        return None


def x86_microarch(vendor: str, family: int | None, model: int | None, stepping: int | None) -> str:
    if family is None or model is None:
        return ""
    for row in _data.load("cpu_microarch").get("x86", []):
        if row["vendor"] != vendor or row["family"] != family:
            continue
        in_models = model in row.get("models", []) or any(lo <= model <= hi for lo, hi in row.get("ranges", []))
        if not in_models:
            continue
        if "steppings" in row and stepping not in row["steppings"]:
            continue
        return row["name"]
    return ""


def _x86_sets() -> dict[str, set[str]]:
    """The [x86_sets] table with its "@name" references expanded."""
    raw = _data.load("cpu_microarch").get("x86_sets", {})
    out: dict[str, set[str]] = {}

    def expand(name: str, seen: tuple[str, ...] = ()) -> set[str]:
        if name in out:
            return out[name]
        got: set[str] = set()
        for item in raw.get(name, []):
            if item.startswith("@") and item[1:] not in seen:
                got |= expand(item[1:], seen + (name,))
            else:
                got.add(item)
        out[name] = got
        return got

    for name in raw:
        expand(name)
    return out


def x86_microarch_checked(named: str, vendor: str, features: Iterable[str]) -> str:
    """The model-number name, unless the CPU has a feature that microarchitecture lacks (a KVM
    guest reporting another model, e.g. 167 = Rocket Lake with AMX): then, as archspec does, the
    vendor's microarchitecture with the most features, all of them present."""
    table = next(
        (t["names"] for t in _data.load("cpu_microarch").get("x86_features", []) if t["vendor"] == vendor), None
    )
    if not table or named not in table:
        return named
    sets = _x86_sets()
    vocab = set().union(*sets.values())
    have = set(features) & vocab
    if have <= sets.get(table[named], set()):
        return named
    best, size = named, -1
    for name, key in table.items():
        feats = sets.get(key, set())
        if feats <= have and len(feats) > size:
            best, size = name, len(feats)
    return best


def arm_microarch(implementer: int | None, part: int | None) -> str:
    if implementer is None or part is None:
        return ""
    for row in _data.load("cpu_microarch").get("arm", []):
        if row["implementer"] == implementer and part in row["parts"]:
            return row["name"]
    return ""


def arm_vendor(implementer: int | None) -> str:
    if implementer is None:
        return ""
    table = _data.load("cpu_microarch").get("arm_implementers", {})
    for key, name in table.items():
        if int(key, 0) == implementer:
            return name
    return f"implementer 0x{implementer:02x}"


def brand_microarch(brand: str) -> str:
    for row in _data.load("cpu_microarch").get("brand", []):
        m = re.search(row["pattern"], brand)
        if m:
            name = row["name"].format(None, *m.groups())
            return name.lower() if row.get("lower") else name
    return ""


# --------------------------------------------------------------------------- text handling


def decode(data: bytes) -> str:
    """Bytes of a dump -> text, or CpuTextError for binary data."""
    if not data.strip():
        raise CpuTextError("the file is empty")
    if b"\x00" in data:
        raise CpuTextError("the file holds binary data, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CpuTextError("the file is not UTF-8 text") from None


_SYSCTL_KEY = re.compile(r"^([A-Za-z_][\w.\-]*\.[\w.\-]+)\s*[:=]\s?(.*)$")
_SYSCTL_HINT = re.compile(r"^(machdep\.cpu\.|hw\.(optional\.|ncpu|memsize|physicalcpu|logicalcpu|cpufamily))", re.M)


def detect_kind(text: str) -> str:
    """'sysctl' (macOS sysctl -a) or 'cpuinfo' (Linux /proc/cpuinfo)."""
    if _SYSCTL_HINT.search(text):
        return "sysctl"
    if re.search(r"^\s*(processor|Processor|vendor_id|cpu family|Features|isa)\s*:", text, re.M):
        return "cpuinfo"
    raise CpuTextError("it is neither a Linux /proc/cpuinfo text nor macOS `sysctl -a` output")


def parse_text(text: str, source: str) -> CpuFacts:
    kind = detect_kind(text)
    if kind == "sysctl":
        return parse_sysctl(text, source=f"sysctl:{source}")
    return parse_cpuinfo(text, source=f"cpuinfo:{source}")


# --------------------------------------------------------------------------- /proc/cpuinfo


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
    family, model, stepping = _int(first.get("cpu family")), _int(first.get("model")), _int(first.get("stepping"))
    pairs = {(b.get("physical id"), b.get("core id")) for b in cpu_blocks if "core id" in b}
    cores: int | None = len(pairs) if pairs else None
    if cores is None and _int(first.get("cpu cores")):
        sockets = len({b.get("physical id") for b in cpu_blocks}) or 1
        cores = _int(first.get("cpu cores")) * sockets  # type: ignore[operator]
    l3 = None
    if vendor == "GenuineIntel":  # Intel reports its last-level (L3) cache here; AMD reports L2
        l3 = _size_bytes(first.get("cache size", ""))
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
        imp, part = _int(b.get("CPU implementer")), _int(b.get("CPU part"))
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
        threads=_int(info.get("# processors")),
        flags=flags,
        source=source,
    )
    return CpuFacts(cpu=finish(cpu, "linux"))


def _size_bytes(text: str) -> int | None:
    m = re.match(r"\s*(\d+)\s*([KMG]?)i?B?", text, re.I)
    if not m or not text.strip():
        return None
    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    return int(m.group(1)) * mult


# --------------------------------------------------------------------------- macOS sysctl -a


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
            _int(v.get("machdep.cpu.family")),
            _int(v.get("machdep.cpu.model")),
            _int(v.get("machdep.cpu.stepping")),
        )
    l3 = _int(v.get("hw.l3cachesize")) or None
    cpu = CpuProfile(
        arch=arch,
        vendor=vendor,
        model=brand,
        microarch=microarch,
        cores=_int(v.get("hw.physicalcpu")) or _int(v.get("machdep.cpu.core_count")),
        threads=_int(v.get("hw.logicalcpu")) or _int(v.get("hw.ncpu")) or _int(v.get("machdep.cpu.thread_count")),
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
        memory_bytes=_int(v.get("hw.memsize")),
        notes=notes,
    )


# --------------------------------------------------------------------------- live


def live(system: str) -> CpuFacts:
    """This machine's CPU. Linux reads /proc/cpuinfo and sysfs; macOS runs sysctl -a."""
    if system == "linux":
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
            facts = parse_cpuinfo(text, source="live")
        except (OSError, CpuTextError) as exc:
            facts = _py_cpuinfo(system)
            facts.notes.append(f"/proc/cpuinfo could not be used ({exc}); CPU facts from py-cpuinfo.")
        _linux_topology(facts.cpu)
        return facts
    if system == "darwin":
        from builddoctor import proc

        done = proc.run(["sysctl", "-a"], timeout=3)
        if done.ok:
            try:
                return parse_sysctl(done.stdout, source="live")
            except CpuTextError as exc:
                note = f"`sysctl -a` output could not be used ({exc})."
        else:
            note = f"`sysctl -a` failed ({done.error or done.stderr.strip()[:100] or 'timed out'})."
        facts = _py_cpuinfo(system)
        facts.notes.append(note)
        return facts
    return _py_cpuinfo(system)


def _linux_topology(cpu: CpuProfile) -> None:
    base = Path("/sys/devices/system/cpu")
    if cpu.threads is None:
        cpu.threads = os.cpu_count()
    if cpu.cores is None:
        cores = set()
        for topo in base.glob("cpu[0-9]*/topology"):
            try:
                cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
            except OSError:
                continue
        cpu.cores = len(cores) or None
    try:
        for index in sorted((base / "cpu0" / "cache").glob("index*")):
            if (index / "level").read_text().strip() == "3":
                cpu.l3_cache_bytes = _size_bytes((index / "size").read_text().strip())
                break
    except OSError:
        pass


def _py_cpuinfo(system: str) -> CpuFacts:
    """Fallback (Windows, BSD, an unreadable /proc): py-cpuinfo, slower, best effort."""
    import platform

    try:
        import cpuinfo  # py-cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception as exc:  # noqa: BLE001 - a probe never fails the command
        info = {}
        note = [f"py-cpuinfo failed ({type(exc).__name__}: {exc})."]
    else:
        note = []
    arch = normalize_arch(info.get("arch_string_raw") or platform.machine() or "unknown")
    flags = [f.lower() for f in info.get("flags", [])]
    # py-cpuinfo spells some AVX-512 flags without the underscore Linux uses
    flags += [f.replace("avx512vnni", "avx512_vnni").replace("avx512bf16", "avx512_bf16") for f in flags]
    flags += ["pni"] if "sse3" in flags else []
    cpu = CpuProfile(
        arch=arch,
        vendor=info.get("vendor_id_raw", ""),
        model=info.get("brand_raw", ""),
        threads=info.get("count") or os.cpu_count(),
        flags=flags,
        source="live",
        l3_cache_bytes=info.get("l3_cache_size") if isinstance(info.get("l3_cache_size"), int) else None,
    )
    if cpu.arch == "x86_64":
        cpu.microarch = x86_microarch(cpu.vendor, info.get("family"), info.get("model"), info.get("stepping"))
    return CpuFacts(cpu=finish(cpu, "linux" if system not in ("darwin",) else system), os=system, notes=note)
