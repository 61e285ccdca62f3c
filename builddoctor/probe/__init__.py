"""Probe a machine -> ``MachineProfile``.

``machine_profile()`` probes this machine: CPU, OS, GPUs and toolchains, each part time-limited,
the slow parts (tool version queries, GPU tools, the libstdc++ scan) at once in threads. A part
that cannot be learned is a note in the profile, never a failure of the command.

``--profile FILE`` loads a profile written by ``builddoctor probe --json`` elsewhere;
``--cpuinfo FILE`` and ``--nvidia-smi FILE`` replace the CPU or the GPU list with recorded text.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builddoctor.errors import InputError
from builddoctor.probe import cpu, gpu, platform, toolchain
from builddoctor.profiles import CpuProfile, MachineProfile, SchemaError
from builddoctor.readinput import cut_note, read_bytes, read_json

__all__ = ["machine_profile", "probe_live", "load_profile", "cpu_from_file", "gpus_from_file"]


def machine_profile(
    profile: Path | None = None, cpuinfo: Path | None = None, nvidia_smi: Path | None = None
) -> MachineProfile:
    """The machine to diagnose or build for: loaded, probed, or probed with parts replaced."""
    if profile is not None:
        machine = load_profile(profile)
        live_parts = False
    else:
        machine = probe_live(skip_cpu=cpuinfo is not None, skip_gpus=nvidia_smi is not None)
        live_parts = True
    if cpuinfo is not None:
        _apply_cpu(machine, cpuinfo, live_parts)
    if nvidia_smi is not None:
        machine.gpus, cut = _gpus_read(nvidia_smi)
        machine.notes.append(f"GPUs from {nvidia_smi}.")
        if cut:
            machine.notes.append(_cut_note(nvidia_smi, "nvidia-smi output"))
    return machine


# --------------------------------------------------------------------------- files


def _read(path: Path, what: str, remedy: str) -> tuple[bytes, bool]:
    """Bounded and non-blocking (a FIFO or /dev/zero is refused): (data, cut at the cap)."""
    data, cut = read_bytes(path, what, remedy=remedy)
    if cut:  # whole entries (cpuinfo's blank-line paragraphs), else whole lines: no character is split
        end = data.rfind(b"\n\n")
        data = data[: end + 2] if end > 0 else (data[: data.rfind(b"\n") + 1] or data)
    return data, cut


def _cut_note(path: Path, what: str) -> str:
    return cut_note(path, what)


def _short(reason: object, limit: int = 300) -> str:
    reason = " ".join(str(reason).split())
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


_PROFILE_REMEDY = "Write one with `builddoctor probe --json > machine.json` on the machine to describe."


def load_profile(path: Path) -> MachineProfile:
    data = read_json(path, "machine profile", remedy=_PROFILE_REMEDY)
    try:
        return MachineProfile.from_dict(data)
    except (SchemaError, TypeError, ValueError, RecursionError) as exc:
        raise InputError(
            f"{path} is not a usable builddoctor machine profile: {_short(exc)}. {_PROFILE_REMEDY}"
        ) from None


_CPU_REMEDY = (
    "Give the text of /proc/cpuinfo (Linux: `cat /proc/cpuinfo > cpuinfo.txt`) or of `sysctl -a` "
    "(macOS: `sysctl -a > sysctl.txt`), copied whole."
)


def cpu_from_file(path: Path):
    """Parse a recorded /proc/cpuinfo or sysctl -a file -> cpu.CpuFacts (InputError when unusable)."""
    data, cut = _read(path, "cpuinfo text", _CPU_REMEDY)
    try:
        text = cpu.decode(data)
        facts = cpu.parse_text(text, str(path))
    except cpu.CpuTextError as exc:
        raise InputError(f"{path} cannot be read as a CPU description: {_short(exc)}. {_CPU_REMEDY}") from None
    if cut:
        facts.notes.append(_cut_note(path, "CPU description"))
    return facts


_GPU_REMEDY = (
    "Record it with `nvidia-smi -q -x > gpus.xml`, or with `nvidia-smi "
    "--query-gpu=name,memory.total,compute_cap,driver_version --format=csv > gpus.csv`."
)


def gpus_from_file(path: Path):
    return _gpus_read(path)[0]


def _gpus_read(path: Path):
    """(GPUs, whether the file was cut at the cap)."""
    data, cut = _read(path, "nvidia-smi output", _GPU_REMEDY)
    try:
        text = cpu.decode(data)
        gpus = gpu.parse_nvidia_smi(text, source=f"nvidia-smi:{path}")
    except (cpu.CpuTextError, gpu.GpuTextError) as exc:
        raise InputError(f"{path} cannot be read as nvidia-smi output: {_short(exc)}. {_GPU_REMEDY}") from None
    return gpus, cut


def _apply_cpu(machine: MachineProfile, path: Path, live_parts: bool) -> None:
    facts = cpu_from_file(path)
    machine.cpu = facts.cpu
    machine.arch = facts.cpu.arch
    machine.notes.extend(facts.notes)
    if facts.os != machine.os:
        # a macOS dump on a Linux host (or the reverse): the OS facts of the text replace this host's
        machine.os = facts.os
        machine.os_version = facts.os_version
        machine.kernel = facts.kernel
        machine.libc = "libSystem" if facts.os == "darwin" else None
        machine.libc_version = None
        machine.libstdcxx_version = None
        machine.memory_bytes = facts.memory_bytes
        # this host's GPUs and Vulkan loader are not that machine's (llvmpipe is no Mac's GPU)
        machine.gpus = []
        machine.vulkan_loader = None
    elif facts.memory_bytes:
        machine.memory_bytes = facts.memory_bytes
        machine.os_version = facts.os_version or machine.os_version
        machine.kernel = facts.kernel or machine.kernel
    apple = gpu.apple_gpu(facts.cpu, machine.memory_bytes)
    if apple is not None:
        machine.gpus = [g for g in machine.gpus if g.vendor != "apple"] + [apple]
    if live_parts:
        machine.notes.append(f"CPU from {path}; toolchains{'' if apple else ', GPUs'} and the rest are this machine's.")


# --------------------------------------------------------------------------- live


def probe_live(skip_cpu: bool = False, skip_gpus: bool = False) -> MachineProfile:
    facts = platform.basic()
    system = facts.system
    notes = list(facts.notes)
    gpu_notes: list[str] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe") as pool:
        tool_futures = toolchain.submit_all(system, pool)
        stdcxx_future = pool.submit(platform.libstdcxx_version) if system == "linux" else None
        gpu_futures = {} if skip_gpus else _submit_gpus(pool, system, gpu_notes)
        if skip_cpu:
            cpu_facts = cpu.CpuFacts(cpu=CpuProfile(arch=cpu.normalize_arch(facts.machine), source="none"))
        else:
            cpu_facts = _safe_cpu(cpu, system, notes)
        gpus, rocm, loader = (
            ([], None, None) if skip_gpus else _gpus(gpu_futures, system, cpu_facts, facts, notes, gpu_notes)
        )
        tools = toolchain.collect(tool_futures)
        if "nvcc" in tools:
            tools["cublas"] = toolchain.cublas_fact(tools["nvcc"])
            tools["libcuda"] = toolchain.libcuda_fact(tools["nvcc"])
        stdcxx = _result(stdcxx_future, None, "libstdc++", notes) if stdcxx_future else None
    notes.extend(cpu_facts.notes)
    notes.extend(gpu_notes)
    return MachineProfile(
        os=system,
        arch=cpu_facts.cpu.arch or cpu.normalize_arch(facts.machine),
        cpu=cpu_facts.cpu,
        os_version=cpu_facts.os_version or facts.os_version,
        kernel=cpu_facts.kernel or facts.kernel,
        libc=facts.libc,
        libc_version=facts.libc_version,
        libstdcxx_version=stdcxx,
        memory_bytes=cpu_facts.memory_bytes or facts.memory_bytes,
        gpus=gpus,
        vulkan_loader=loader,
        rocm_version=rocm,
        toolchains=tools,
        notes=notes,
        source="live",
    )


def _submit_gpus(pool, system: str, gpu_notes: list[str]) -> dict:
    """Start the GPU probes of this OS (NVIDIA and AMD on Linux, Vulkan everywhere) in ``pool``."""
    futures = {}
    if system == "linux":
        futures["nvidia"] = pool.submit(gpu.live_nvidia, gpu_notes)
        futures["amd"] = pool.submit(gpu.live_amd, gpu_notes)
    futures["vulkan"] = pool.submit(gpu.live_vulkan, gpu_notes)
    return futures


def _gpus(futures: dict, system: str, cpu_facts, facts, notes: list[str], gpu_notes: list[str]):
    """(GPUs, ROCm version, Vulkan loader) from the probes ``_submit_gpus`` started, merged, plus
    the Apple GPU a Mac's CPU facts describe and (Linux) the PCI devices no tool listed."""
    gpus, rocm = [], None
    if system == "linux":
        gpus = _result(futures["nvidia"], [], "NVIDIA", notes)
        amd, rocm = _result(futures["amd"], ([], None), "AMD", notes)
        gpus = gpu.merge(gpus, amd)
    vk, loader = _result(futures["vulkan"], ([], None), "Vulkan", notes)
    gpus = gpu.merge(gpus, vk)
    if system == "darwin":
        apple = gpu.apple_gpu(cpu_facts.cpu, cpu_facts.memory_bytes or facts.memory_bytes)
        if apple is not None:
            gpus = gpu.merge([apple], gpus)
    if system == "linux":
        gpus = gpus + gpu.pci_gpus(gpus, gpu_notes)
    return gpus, rocm, loader


def _safe_cpu(cpu, system: str, notes: list[str]):
    try:
        return cpu.live(system)
    except Exception as exc:  # noqa: BLE001 - a probe never fails the command
        notes.append(f"The CPU probe failed ({type(exc).__name__}: {exc}).")
        return cpu.CpuFacts(cpu=CpuProfile(arch=cpu.normalize_arch(platform.basic().machine), source="live"))


def _result(future, default, what: str, notes: list[str]):
    try:
        return future.result(timeout=15)
    except Exception as exc:  # noqa: BLE001 - a probe never fails the command
        notes.append(f"The {what} probe failed ({type(exc).__name__}: {exc}).")
        return default
