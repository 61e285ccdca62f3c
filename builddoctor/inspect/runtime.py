"""Run a build's executable briefly (``--version``, ``--list-devices``) and read what it says.

Only ever runs a file that is an executable ELF (Mach-O on macOS) of this machine's
architecture with an exec bit, through ``builddoctor.proc.run``: argument list, time limit,
clean environment (LD_LIBRARY_PATH passed through, since it decides which libraries load),
output captured, a fresh empty working folder. A crash (SIGILL, SIGSEGV), a hang or a
failure to start is recorded in the RuntimeResult, never raised.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field

from builddoctor import proc
from builddoctor.profiles import RuntimeResult

OUTPUT_KEEP = 4096

_VERSION = re.compile(r"^version: (?P<ver>\S+) \(build (?P<num>-?\d+), commit (?P<commit>[^)\s]+)\)", re.M)
_VERSION_OLD = re.compile(r"^version: (?P<num>\d+) \((?P<commit>[0-9a-f]+|unknown)\)", re.M)
_BUILT = re.compile(r"^built with (?P<compiler>.+?) for (?P<target>\S.*)$", re.M)
_DEVICE = re.compile(r"^\s+(?P<name>[A-Za-z][\w.-]*\d*): (?P<desc>.+)$")


@dataclass
class RunInfo:
    results: list[RuntimeResult] = field(default_factory=list)
    version: str | None = None
    build_number: int | None = None
    commit: str | None = None
    compiler: str | None = None
    target: str | None = None
    devices: list[str] = field(default_factory=list)
    listed_devices: bool = False  # --list-devices ran and printed its list


def _result(c: proc.Completed) -> RuntimeResult:
    out = c.output
    if len(out) > OUTPUT_KEEP:
        out = out[:OUTPUT_KEEP] + "\n[... output cut ...]"
    return RuntimeResult(
        argv=list(c.argv), returncode=c.returncode, signal=c.signal, timed_out=c.timed_out, error=c.error, output=out
    )


def parse_version(text: str) -> dict:
    got: dict = {}
    m = _VERSION.search(text)
    if m:
        got.update(version=m.group("ver"), build_number=int(m.group("num")), commit=m.group("commit"))
    else:
        m = _VERSION_OLD.search(text)
        if m:
            got.update(build_number=int(m.group("num")), commit=m.group("commit"))
    m = _BUILT.search(text)
    if m:
        got.update(compiler=m.group("compiler").strip(), target=m.group("target").strip())
    return got


def parse_devices(text: str) -> list[str] | None:
    """Devices from ``--list-devices`` ("Available devices:" then one indented line each);
    None when the output has no such list."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("Available devices"):
            out = []
            for dev in lines[i + 1 :]:
                if not dev.strip():
                    break
                if dev.strip() == "(none)":
                    continue
                m = _DEVICE.match(dev)
                if not m:
                    break
                out.append(f"{m.group('name')}: {m.group('desc').strip()}")
            return out
    return None


def probe(path: str, *, timeout: float = 5.0) -> RunInfo:
    info = RunInfo()
    with tempfile.TemporaryDirectory(prefix="builddoctor-run-") as cwd:
        env = proc.program_env(home=cwd)  # its HOME too: a program under test never sees the user's
        first = proc.run([path, "--version"], timeout=timeout, env=env, cwd=cwd)
        info.results.append(_result(first))
        for k, v in parse_version(first.output).items():
            setattr(info, k, v)
        if first.timed_out or first.signal or first.error:
            return info  # it will not do better with another argument
        second = proc.run([path, "--list-devices"], timeout=timeout, env=env, cwd=cwd)
        info.results.append(_result(second))
        devs = parse_devices(second.output)
        if devs is not None:
            info.devices = devs
            info.listed_devices = True
    return info
