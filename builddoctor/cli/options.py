"""Options shared by several commands, and turning them into stage inputs."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import click


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf: nan passes every range comparison (all are false)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number: give one between {self.min} and {self.max}.", param, ctx)
        return super().convert(number, param, ctx)


def verbosity_levels(verbose: int, quiet: int) -> tuple[int, int]:
    """(verbose, quiet) levels from the counted -v and -q: one net level, as pip computes it
    (``verbose - quiet``), so that ``-v -q`` is the default and ``-vv -q`` is ``-v``."""
    net = verbose - quiet
    return max(net, 0), max(-net, 0)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned schema) instead of text.")


def machine_options(func):
    """--profile / --cpuinfo / --nvidia-smi: describe another machine instead of probing this one."""

    @click.option(
        "--profile",
        "profile_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A machine profile JSON written by `builddoctor probe --json` elsewhere.",
    )
    @click.option(
        "--cpuinfo",
        "cpuinfo_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A Linux /proc/cpuinfo text or macOS `sysctl -a` output to use instead of this CPU.",
    )
    @click.option(
        "--nvidia-smi",
        "nvidia_smi_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Recorded `nvidia-smi -q -x` or CSV query output to use instead of this machine's GPUs.",
    )
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def describes_this_cpu(profile_path: Path | None, cpuinfo_path: Path | None) -> bool:
    """Whether the machine of the command is this one's CPU (no --profile, no --cpuinfo): only then
    may a plan compile with -march=native, which takes the building machine's instruction sets."""
    return profile_path is None and cpuinfo_path is None


def load_machine(profile_path: Path | None, cpuinfo_path: Path | None, nvidia_smi_path: Path | None):
    from builddoctor.probe import machine_profile

    return machine_profile(profile=profile_path, cpuinfo=cpuinfo_path, nvidia_smi=nvidia_smi_path)
