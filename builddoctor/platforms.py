"""Operating systems and CPU architectures: one spelling for each, and the words to show.

Every file a build holds is for one (os, arch), or several for a fat Mach-O; the machine being
diagnosed is one too (``MachineProfile.os`` / ``.arch``). The names, their aliases and the numbers
ELF, Mach-O and PE use for them are data (builddoctor/data/platforms.toml); this module only
looks them up, so that inspect, the platform gate and the probe agree on what "the same" is.
"""

from __future__ import annotations

import platform as _platform
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from builddoctor.tomlload import data_file as load


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return load("platforms.toml")


@lru_cache(maxsize=1)
def _aliases() -> tuple[dict[str, str], dict[str, str]]:
    arch: dict[str, str] = {}
    for name, spec in _table()["arch"].items():
        arch[name] = name
        for a in spec.get("aliases", []):
            arch[a.lower()] = name
    oses: dict[str, str] = {}
    for name, spec in _table()["os"].items():
        oses[name] = name
        oses[spec["label"].lower()] = name
        for a in spec.get("aliases", []):
            oses[a.lower()] = name
    return arch, oses


def canonical_arch(name: str | None) -> str:
    """x86_64, aarch64, i386, arm... for any spelling (amd64, arm64, x64, i686); '' for none."""
    if not name:
        return ""
    n = name.strip().lower()
    return _aliases()[0].get(n, n)


def canonical_os(name: str | None) -> str:
    """linux, darwin, windows, android, freebsd... for any spelling (macOS, win32); '' for none."""
    if not name:
        return ""
    n = name.strip().lower()
    return _aliases()[1].get(n, n)


def os_label(os_name: str) -> str:
    spec = _table()["os"].get(canonical_os(os_name))
    return spec["label"] if spec else (os_name or "an unknown OS")


def arch_label(arch: str, os_name: str = "") -> str:
    """The architecture in the OS's own words: "arm64" on macOS and Windows, "aarch64" on Linux."""
    a = canonical_arch(arch)
    spec = _table()["arch"].get(a)
    if spec is None:
        return arch or "an unknown architecture"
    return str(spec.get("label_on", {}).get(canonical_os(os_name), a))


def label(os_name: str, arch: str) -> str:
    """'macOS arm64', 'Linux x86_64', 'Windows x86_64'."""
    return f"{os_label(os_name)} {arch_label(arch, os_name)}"


@lru_cache(maxsize=1)
def _numbers() -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {"elf": {}, "macho": {}, "pe": {}}
    for name, spec in _table()["arch"].items():
        if "elf_machine" in spec:
            out["elf"][spec["elf_machine"]] = name
        if "macho_cputype" in spec:
            out["macho"][spec["macho_cputype"]] = name
        for m in spec.get("pe_machine", []):
            out["pe"][m] = name
    return out


def elf_arch(e_machine: int) -> str | None:
    return _numbers()["elf"].get(e_machine)


def macho_arch(cputype: int) -> str | None:
    return _numbers()["macho"].get(cputype)


def pe_arch(machine: int) -> str | None:
    return _numbers()["pe"].get(machine)


def elf_os(osabi: int, interpreter: str = "", section_names: Iterable[str] = ()) -> str:
    """The OS an ELF file is for, from its OS ABI byte, its interpreter and its note sections."""
    table = _table()
    names = set(section_names)
    for name, spec in table["os"].items():
        if osabi in spec.get("elf_osabi", []):
            return str(name)
    for name, spec in table["os"].items():
        if interpreter and any(interpreter.startswith(p) for p in spec.get("interpreters", [])):
            return str(name)
        if names & set(spec.get("sections", [])):
            return str(name)
    if osabi in table["elf"]["linux_osabi"]:
        return str(table["elf"]["default_os"])
    return f"ELF OS ABI {osabi}"


def system_name() -> str:
    """This machine's OS as sys.platform spells it, without the version digits ("linux", "darwin")."""
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform in ("win32", "cygwin"):
        return "windows"
    return re.sub(r"\d+$", "", sys.platform)


def host() -> tuple[str, str]:
    """(os, arch) of the machine builddoctor runs on."""
    return canonical_os(system_name()), canonical_arch(_platform.machine())


@dataclass(frozen=True)
class Platform:
    """Where a file runs: its OS, its architecture(s) (several for a fat Mach-O) and its format."""

    os: str
    archs: tuple[str, ...]
    format: str = ""

    def runs_on(self, os_name: str, arch: str) -> bool:
        return canonical_os(self.os) == canonical_os(os_name) and canonical_arch(arch) in {
            canonical_arch(a) for a in self.archs
        }

    def describe(self) -> str:
        """'macOS arm64 (Mach-O)', 'macOS x86_64 + arm64 (fat Mach-O)', 'Linux aarch64'."""
        archs = " + ".join(arch_label(a, self.os) for a in self.archs) or "an unknown architecture"
        fmt = ("fat " if len(self.archs) > 1 else "") + self.format
        default_fmt = self.format == "ELF" and canonical_os(self.os) in ("linux", "android", "freebsd")
        return f"{os_label(self.os)} {archs}" + ("" if default_fmt or not self.format else f" ({fmt})")


def install_keys(os_name: str | None, description: str | None) -> list[str]:
    """Which install commands apply to a machine: ['macos'], ['windows'], the distribution its
    ``description`` names (['debian']...), or every Linux one when it names none. The one reading,
    for a recorded profile (its os_version) and for this machine (``this_description``)."""
    os_ = canonical_os(os_name)
    if os_ in ("darwin", "windows"):
        return ["macos" if os_ == "darwin" else "windows"]
    table = _table()["distro"]
    text = (description or "").lower()
    for key in table["order"]:
        if any(w in text for w in table[key]):
            return [key]
    return list(table["order"])


def this_description() -> str:
    """This machine's distribution in words: /etc/os-release's ID and ID_LIKE ('' when unreadable)."""
    try:
        with open("/etc/os-release", encoding="utf-8", errors="replace") as fh:
            text = fh.read(65536)
    except OSError:
        return ""
    return " ".join(re.findall(r"^(?:ID|ID_LIKE)=\"?([^\"\n]+)", text, re.M))
