"""``builddoctor probe``: what this machine (or a recorded one) is, as llama.cpp sees it."""

from __future__ import annotations

from pathlib import Path

import click

from builddoctor.cli.options import json_option, load_machine, machine_options
from builddoctor.console import MAX_JSON_ITEMS
from builddoctor.render import MAX_ITEMS


@click.command("probe")
@json_option
@machine_options
@click.pass_context
def probe(
    ctx: click.Context,
    as_json: bool,
    profile_path: Path | None,
    cpuinfo_path: Path | None,
    nvidia_smi_path: Path | None,
) -> None:
    """Show this machine's CPU features, llama.cpp CPU variant, GPUs and build tools.

    With --profile, --cpuinfo or --nvidia-smi, describe another machine from recorded files.
    """
    from builddoctor.cli import console

    machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    con = console(ctx)
    from builddoctor.console import json_text, safe_text

    # JSON escapes control characters itself (and bounds every list); text from a recorded profile is foreign
    text = json_text(machine) if as_json else safe_text("\n".join(render(machine, con)), keep_style=con.color)
    try:
        click.echo(text, file=con.stream)
        con.stream.flush()
    except BrokenPipeError:  # `builddoctor probe | head`: the reader left, which is fine
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _gib(n: int | None) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "unknown"


def _feature_order(machine) -> list[str]:
    from builddoctor.probe import _data, cpu

    table = _data.load("cpu_features").get(machine.os if machine.os == "darwin" else "linux", {})
    order = list(table.get(cpu.feature_family(machine.cpu.arch), {}))
    return sorted(machine.cpu.features, key=lambda f: (order.index(f) if f in order else len(order), f))


# AVX512F..AVX512BW are shown folded into AVX512 when all five are there
_AVX512_PARTS = ("AVX512F", "AVX512CD", "AVX512VL", "AVX512DQ", "AVX512BW")


def render(machine, con) -> list[str]:
    c = machine.cpu
    label = lambda s: con.style(f"{s:<9}", bold=True)  # noqa: E731
    lines = []
    system = ", ".join(
        filter(
            None,
            [
                machine.os_version or machine.os,
                machine.kernel,
                f"{machine.libc} {machine.libc_version}" if machine.libc_version else machine.libc,
                f"libstdc++ GLIBCXX_{machine.libstdcxx_version}" if machine.libstdcxx_version else "",
            ],
        )
    )
    lines.append(f"{label('System')}{system}")
    if machine.source != "live":
        lines.append(f"{label('')}from {machine.source}")
    lines.append(f"{label('CPU')}{c.model or c.vendor or 'unknown CPU'}")
    counts = [x for x in [c.microarch, c.arch] if x]
    if c.cores:
        counts.append(f"{c.cores} cores")
    if c.threads:
        counts.append(f"{c.threads} threads")
    if c.l3_cache_bytes:
        counts.append(f"L3 {c.l3_cache_bytes // 2**20} MiB")
    if counts:
        lines.append(f"{label('')}{', '.join(counts)}")
    feats = _feature_order(machine)
    if "AVX512" in feats:
        feats = [f for f in feats if f not in _AVX512_PARTS]
    lines.append(f"{label('')}features: {' '.join(feats) if feats else 'none known'}")
    if c.variant:
        others = [v for v in c.variants if v != c.variant]
        lines.append(
            f"{label('')}llama.cpp CPU variant: {con.style(c.variant, 'ok', bold=True)}"
            + (f" (also runs: {', '.join(others)})" if others else "")
        )
    else:
        lines.append(f"{label('')}llama.cpp CPU variant: none of GGML_CPU_ALL_VARIANTS fits {c.arch} on {machine.os}")
    if c.source not in ("live", machine.source):
        lines.append(f"{label('')}from {c.source}")
    lines.append(f"{label('Memory')}{_gib(machine.memory_bytes)}")
    if not machine.gpus:
        lines.append(f"{label('GPUs')}none")
    for i, g in enumerate(machine.gpus[:MAX_ITEMS]):
        bits = []
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
        sev = "warning" if g.cpu_emulated else "ok"
        name = f"{g.name} (CPU-emulated, not a GPU to use)" if g.cpu_emulated else g.name
        lines.append(
            f"{label('GPUs' if i == 0 else '')}{con.symbol(sev)} {name}" + (f": {', '.join(bits)}" if bits else "")
        )
    if len(machine.gpus) > MAX_ITEMS:
        lines.append(f"{label('')}... and {len(machine.gpus) - MAX_ITEMS:,} more (`--json` lists {MAX_JSON_ITEMS:,})")
    if machine.vulkan_loader or machine.os == "linux":
        lines.append(f"{label('Vulkan')}loader {machine.vulkan_loader or 'not found'}")
    if machine.rocm_version:
        lines.append(f"{label('ROCm')}{machine.rocm_version}")
    found = [t for t in machine.toolchains.values() if t.found]
    missing = [t for t in machine.toolchains.values() if not t.found]
    first = True
    for t in found[:MAX_ITEMS]:
        text = f"{t.name} {t.version or ''}".strip()
        if t.name == "xcode-select" and t.detail:
            text = f"Xcode command line tools ({t.detail})"
        lines.append(f"{label('Tools' if first else '')}{con.symbol('ok')} {text}  {con.style(t.path or '', 'dim')}")
        first = False
    if missing:
        lines.append(
            f"{label('Tools' if first else '')}{con.symbol('info')} not found: {', '.join(t.name for t in missing)}"
        )
    elif not machine.toolchains:
        lines.append(f"{label('Tools')}not probed")
    for i, note in enumerate(machine.notes[:MAX_ITEMS]):
        lines.append(f"{label('Notes' if i == 0 else '')}{con.symbol('info')} {note}")
    if len(machine.notes) > MAX_ITEMS:
        lines.append(f"{label('')}... and {len(machine.notes) - MAX_ITEMS:,} more notes")
    return lines


COMMANDS = [probe]
