"""The bench views: the status lines while ``bench`` measures, and its Comparison as a table."""

from __future__ import annotations

from pathlib import Path

from builddoctor.bench import DEFAULT_PP, DEFAULT_TG, Comparison
from builddoctor.console import Console
from builddoctor.profiles import BenchResult, Stat

NAME_WIDTH = 50


def smoke_line(model_bytes: int) -> str:
    return f"Smoke model: about {model_bytes / 1e6:.0f} MB (Q4_0, random weights)..."


def model_line(model: Path, size: int, per_token: int, threads: int, bandwidth_gbs: float | None) -> str:
    """The model and settings of the runs: ``size`` of the file, ``per_token`` bytes read per token."""
    return (
        f"Model {model} ({size / 1e6:.0f} MB, {per_token / 1e6:.0f} MB read per generated token); threads {threads}"
        + (f"; memory read bandwidth {bandwidth_gbs:.1f} GB/s" if bandwidth_gbs else "")
    )


def run_line(round_index: int, rounds: int, res: BenchResult) -> str:
    """One finished run, while the rounds go on."""
    speed = res.error or f"pp {res.pp.mean if res.pp else 0:.1f} t/s, tg {res.tg.mean if res.tg else 0:.1f} t/s"
    return f"  round {round_index + 1}/{rounds}: {Path(res.binary).parent}: {speed}"


def stat(s: Stat | None) -> str:
    return f"{s.mean:8.1f} ± {s.stddev:5.1f}" if s else "       n/a     "


def ratio(s: Stat | None) -> str:
    return f"{s.mean:.2f}x ± {s.stddev:.2f}" if s else "n/a"


def build_name(res: BenchResult) -> str:
    """The build's folder, cut from the left to the name column (its end tells builds apart)."""
    name = str(Path(res.binary).parent)
    return name if len(name) <= NAME_WIDTH else "..." + name[-(NAME_WIDTH - 3) :]


def report(cmp: Comparison, out: Console) -> None:
    """One row per build (speeds and the bandwidth fraction), each later one compared with the first."""
    out.echo(
        f"{'build':<50} {'pp' + str(DEFAULT_PP) + ' t/s':>16} {'tg' + str(DEFAULT_TG) + ' t/s':>16} {'of bw limit':>11}"
    )
    for i, res in enumerate(cmp.results):
        name = build_name(res)
        if res.error:
            out.echo(f"{name:<50} {out.symbol('error')} {res.error}")
            continue
        frac = f"{res.roofline_fraction:10.0%}" if res.roofline_fraction is not None else "        n/a"
        out.echo(f"{name:<50} {stat(res.pp):>16} {stat(res.tg):>16} {frac:>11}")
        if res.gpu_info:
            out.echo(f"    ran on {res.backends or 'a GPU'}: {res.gpu_info}")
        if i > 0 and (cmp.pp_ratio[i] or cmp.tg_ratio[i]):
            out.echo(f"{'  vs first':<50} {ratio(cmp.pp_ratio[i]):>16} {ratio(cmp.tg_ratio[i]):>16}")
    out.echo(f"roofline: {cmp.roofline_note}")
