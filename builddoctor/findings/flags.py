"""A cmake command line (`builddoctor flags`) or a build's CMakeCache options, judged by flagcheck
and told in the catalogue's words (BD401-BD409 of checks.toml)."""

from __future__ import annotations

from pathlib import Path

from builddoctor import errors
from builddoctor.findings.catalogue import finding
from builddoctor.flagcheck import option_hits, parse_defines
from builddoctor.profiles import Finding, MachineProfile


def check_flags(text: str, machine: MachineProfile | None, source: Path | None = None) -> list[Finding]:
    """Findings for a user's cmake command line (or bare -D options)."""
    options = parse_defines(text)
    if not options:
        raise errors.InputError('No -D options found in this command line: pass e.g. "cmake -B build -DGGML_CUDA=ON".')
    return [finding(h) for h in option_hits(options, machine, source, from_cache=False)]


def check_cmake_options(
    options: dict[str, str], machine: MachineProfile | None, source: Path | None = None
) -> list[Finding]:
    """Findings for a build's CMakeCache options (only llama.cpp-prefixed names are judged unknown)."""
    return [finding(h) for h in option_hits(options, machine, source, from_cache=True)]
