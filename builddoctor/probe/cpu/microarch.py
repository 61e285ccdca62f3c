"""The microarchitecture name of a CPU (data/cpu_microarch.toml): by model number, checked against
the features it reports, or by brand string."""

from __future__ import annotations

import re
from collections.abc import Iterable

from builddoctor.probe import _data


def x86_microarch(vendor: str, family: int | None, model: int | None, stepping: int | None) -> str:
    if family is None or model is None:
        return ""
    for row in _data.load("cpu_microarch").get("x86", []):
        if row["vendor"] != vendor or row["family"] != family:
            continue
        in_models = model in row.get("models", []) or any(lo <= model <= hi for lo, hi in row.get("ranges", []))
        if not in_models:
            continue
        if "steppings" in row and stepping not in row["steppings"]:
            continue
        return row["name"]
    return ""


def _x86_sets() -> dict[str, set[str]]:
    """The [x86_sets] table with its "@name" references expanded."""
    raw = _data.load("cpu_microarch").get("x86_sets", {})
    out: dict[str, set[str]] = {}

    def expand(name: str, seen: tuple[str, ...] = ()) -> set[str]:
        if name in out:
            return out[name]
        got: set[str] = set()
        for item in raw.get(name, []):
            if item.startswith("@") and item[1:] not in seen:
                got |= expand(item[1:], seen + (name,))
            else:
                got.add(item)
        out[name] = got
        return got

    for name in raw:
        expand(name)
    return out


def x86_microarch_checked(named: str, vendor: str, features: Iterable[str]) -> str:
    """The model-number name, unless the CPU has a feature that microarchitecture lacks (a KVM
    guest reporting another model, e.g. 167 = Rocket Lake with AMX): then, as archspec does, the
    vendor's microarchitecture with the most features, all of them present."""
    table = next(
        (t["names"] for t in _data.load("cpu_microarch").get("x86_features", []) if t["vendor"] == vendor), None
    )
    if not table or named not in table:
        return named
    sets = _x86_sets()
    vocab = set().union(*sets.values())
    have = set(features) & vocab
    if have <= sets.get(table[named], set()):
        return named
    best, size = named, -1
    for name, key in table.items():
        feats = sets.get(key, set())
        if feats <= have and len(feats) > size:
            best, size = name, len(feats)
    return best


def arm_microarch(implementer: int | None, part: int | None) -> str:
    if implementer is None or part is None:
        return ""
    for row in _data.load("cpu_microarch").get("arm", []):
        if row["implementer"] == implementer and part in row["parts"]:
            return row["name"]
    return ""


def arm_vendor(implementer: int | None) -> str:
    if implementer is None:
        return ""
    table = _data.load("cpu_microarch").get("arm_implementers", {})
    for key, name in table.items():
        if int(key, 0) == implementer:
            return name
    return f"implementer 0x{implementer:02x}"


def brand_microarch(brand: str) -> str:
    for row in _data.load("cpu_microarch").get("brand", []):
        m = re.search(row["pattern"], brand)
        if m:
            name = row["name"].format(None, *m.groups())
            return name.lower() if row.get("lower") else name
    return ""
