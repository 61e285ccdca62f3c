"""Where CPU facts come from: a recorded text (decoded, its kind told) or this machine (/proc/cpuinfo
and sysfs, sysctl -a, or py-cpuinfo as the fallback)."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from builddoctor import proc
from builddoctor.probe.cpu.facts import CpuFacts, CpuTextError, finish, size_bytes
from builddoctor.probe.cpu.microarch import x86_microarch
from builddoctor.probe.cpu.proc_cpuinfo import parse_cpuinfo
from builddoctor.probe.cpu.sysctl import parse_sysctl
from builddoctor.probe.cpu.variants import normalize_arch
from builddoctor.profiles import CpuProfile


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
                cpu.l3_cache_bytes = size_bytes((index / "size").read_text().strip())
                break
    except OSError:
        pass


def _py_cpuinfo(system: str) -> CpuFacts:
    """Fallback (Windows, BSD, an unreadable /proc): py-cpuinfo, slower, best effort."""
    try:
        import cpuinfo  # noqa: PLC0415 (py-cpuinfo: the fallback only; absent where the wheel build probes)

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
