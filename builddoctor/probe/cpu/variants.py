"""Architecture names, OS flags -> llama.cpp features (data/cpu_features.toml), and the llama.cpp CPU
backend variants a CPU runs, scored as llama.cpp's loader scores them (data/cpu_variants.toml)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from builddoctor.probe import _data

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
