"""The machine view: a MachineProfile as ``builddoctor probe`` prints it, a label column and its facts."""

from __future__ import annotations

from builddoctor.console import MAX_ITEMS, MAX_JSON_ITEMS, Console
from builddoctor.probe import _data, cpu
from builddoctor.profiles import GpuProfile, MachineProfile

# AVX512F..AVX512BW are shown folded into AVX512 when all five are there
_AVX512_PARTS = ("AVX512F", "AVX512CD", "AVX512VL", "AVX512DQ", "AVX512BW")


def lines(machine: MachineProfile, con: Console) -> list[str]:
    """Every line of the probe report, in its order: system, CPU, memory, GPUs, runtimes, tools, notes."""
    return [
        *_system(machine, con),
        *_cpu(machine, con),
        f"{_label(con, 'Memory')}{_gib(machine.memory_bytes)}",
        *_gpus(machine, con),
        *_runtimes(machine, con),
        *_tools(machine, con),
        *_notes(machine, con),
    ]


def _label(con: Console, text: str) -> str:
    return con.style(f"{text:<9}", bold=True)


def _gib(n: int | None) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "unknown"


def _system(machine: MachineProfile, con: Console) -> list[str]:
    parts = [
        machine.os_version or machine.os,
        machine.kernel,
        f"{machine.libc} {machine.libc_version}" if machine.libc_version else machine.libc,
        f"libstdc++ GLIBCXX_{machine.libstdcxx_version}" if machine.libstdcxx_version else "",
    ]
    out = [f"{_label(con, 'System')}{', '.join(filter(None, parts))}"]
    if machine.source != "live":
        out.append(f"{_label(con, '')}from {machine.source}")
    return out


def feature_order(machine: MachineProfile) -> list[str]:
    """The CPU's features in the order of the shipped feature table (then by name): families read together."""
    table = _data.load("cpu_features").get(machine.os if machine.os == "darwin" else "linux", {})
    order = list(table.get(cpu.feature_family(machine.cpu.arch), {}))
    return sorted(machine.cpu.features, key=lambda f: (order.index(f) if f in order else len(order), f))


def _cpu(machine: MachineProfile, con: Console) -> list[str]:
    c, blank = machine.cpu, _label(con, "")
    out = [f"{_label(con, 'CPU')}{c.model or c.vendor or 'unknown CPU'}"]
    counts = [x for x in [c.microarch, c.arch] if x]
    if c.cores:
        counts.append(f"{c.cores} cores")
    if c.threads:
        counts.append(f"{c.threads} threads")
    if c.l3_cache_bytes:
        counts.append(f"L3 {c.l3_cache_bytes // 2**20} MiB")
    if counts:
        out.append(f"{blank}{', '.join(counts)}")
    feats = feature_order(machine)
    if "AVX512" in feats:
        feats = [f for f in feats if f not in _AVX512_PARTS]
    out.append(f"{blank}features: {' '.join(feats) if feats else 'none known'}")
    if c.variant:
        others = [v for v in c.variants if v != c.variant]
        out.append(
            f"{blank}llama.cpp CPU variant: {con.style(c.variant, 'ok', bold=True)}"
            + (f" (also runs: {', '.join(others)})" if others else "")
        )
    else:
        out.append(f"{blank}llama.cpp CPU variant: none of GGML_CPU_ALL_VARIANTS fits {c.arch} on {machine.os}")
    if c.source not in ("live", machine.source):
        out.append(f"{blank}from {c.source}")
    return out


def gpu_facts(g: GpuProfile) -> list[str]:
    """What the report says about one GPU after its name: memory, compute capability, driver, APIs."""
    bits: list[str] = []
    if g.memory_mib:
        bits.append(f"{g.memory_mib / 1024:.0f} GiB" if g.memory_mib >= 1024 else f"{g.memory_mib} MiB")
    if g.compute_capability:
        bits.append(f"compute {g.compute_capability}")
    if g.gfx_target:
        bits.append(g.gfx_target)
    if g.driver_version:
        bits.append(f"driver {g.driver_version}")
    if g.cuda_version:
        bits.append(f"CUDA {g.cuda_version}")
    if g.apis:
        bits.append("/".join(g.apis))
    return bits


def _gpus(machine: MachineProfile, con: Console) -> list[str]:
    if not machine.gpus:
        return [f"{_label(con, 'GPUs')}none"]
    out: list[str] = []
    for i, g in enumerate(machine.gpus[:MAX_ITEMS]):
        bits = gpu_facts(g)
        sev = "warning" if g.cpu_emulated else "ok"
        name = f"{g.name} (CPU-emulated, not a GPU to use)" if g.cpu_emulated else g.name
        out.append(
            f"{_label(con, 'GPUs' if i == 0 else '')}{con.symbol(sev)} {name}"
            + (f": {', '.join(bits)}" if bits else "")
        )
    if len(machine.gpus) > MAX_ITEMS:
        more = len(machine.gpus) - MAX_ITEMS
        out.append(f"{_label(con, '')}... and {more:,} more (`--json` lists {MAX_JSON_ITEMS:,})")
    return out


def _runtimes(machine: MachineProfile, con: Console) -> list[str]:
    out: list[str] = []
    if machine.vulkan_loader or machine.os == "linux":
        out.append(f"{_label(con, 'Vulkan')}loader {machine.vulkan_loader or 'not found'}")
    if machine.rocm_version:
        out.append(f"{_label(con, 'ROCm')}{machine.rocm_version}")
    return out


def _tools(machine: MachineProfile, con: Console) -> list[str]:
    found = [t for t in machine.toolchains.values() if t.found]
    missing = [t for t in machine.toolchains.values() if not t.found]
    out: list[str] = []
    for t in found[:MAX_ITEMS]:
        text = f"{t.name} {t.version or ''}".strip()
        if t.name == "xcode-select" and t.detail:
            text = f"Xcode command line tools ({t.detail})"
        label = _label(con, "" if out else "Tools")
        out.append(f"{label}{con.symbol('ok')} {text}  {con.style(t.path or '', 'dim')}")
    if missing:
        names = ", ".join(t.name for t in missing)
        out.append(f"{_label(con, '' if out else 'Tools')}{con.symbol('info')} not found: {names}")
    elif not machine.toolchains:
        out.append(f"{_label(con, 'Tools')}not probed")
    return out


def _notes(machine: MachineProfile, con: Console) -> list[str]:
    out = [
        f"{_label(con, 'Notes' if i == 0 else '')}{con.symbol('info')} {note}"
        for i, note in enumerate(machine.notes[:MAX_ITEMS])
    ]
    if len(machine.notes) > MAX_ITEMS:
        out.append(f"{_label(con, '')}... and {len(machine.notes) - MAX_ITEMS:,} more notes")
    return out
