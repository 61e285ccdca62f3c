"""Known-bad combinations (data/known_bad.toml): which rows apply to a llama.cpp version on a CPU.

Read by the resolver (plan around them) and by the findings (name the cause of a crash).
One loader, one test of "does this row apply", so both always agree.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version

from builddoctor import paths
from builddoctor.errors import INTERNAL, UserError
from builddoctor.tomlload import load_toml

KNOWN_BAD_FILE = paths.DATA_DIR / "known_bad.toml"


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    short: str = ""  # a few words for a finding's title
    cpu_any: tuple[str, ...] = ()
    code_any: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()
    first_build: int = 0
    fixed_in: str = ""
    avoid: tuple[str, ...] = ()
    avoid_variants: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default_factory=tuple)

    def affects_version(self, version: str | None, build_number: int | None = None) -> bool:
        """Whether llama.cpp ``version`` (LLAMA_VERSION, e.g. 0.5.0-dev) / ``build_number`` has the bug.
        Unknown versions count as affected: the row is a likely cause, not a proof."""
        if build_number and build_number > 1 and self.first_build and build_number < self.first_build:
            return False
        if self.fixed_in and version:
            try:
                return _version(version) < Version(self.fixed_in)
            except ValueError:  # InvalidVersion, or a number too long for int()
                return True
        return True

    def affects_cpu(self, cpu_features: Iterable[str]) -> bool:
        return bool(set(self.cpu_any) & set(cpu_features))

    def in_code(self, code_features: Iterable[str]) -> bool:
        return bool(set(self.code_any) & set(code_features))

    @property
    def source_text(self) -> str:
        return "; ".join(self.sources)


def _version(text: str) -> Version:
    # "0.5.0-dev" is a development version *before* 0.5.0 in llama.cpp's scheme, as in PEP 440's
    return Version(text.replace("-dev", ".dev0"))


@functools.lru_cache(maxsize=1)
def rows() -> tuple[Row, ...]:
    data = load_toml(KNOWN_BAD_FILE)
    names = {f.name for f in dataclasses.fields(Row)}
    out = []
    for i, raw in enumerate(data.get("row", [])):
        unknown = sorted(set(raw) - names)
        if unknown or "id" not in raw or "title" not in raw:
            raise UserError(
                f"{KNOWN_BAD_FILE}: row {i + 1} "
                + (f"has unknown key(s) {', '.join(unknown)}" if unknown else "needs an id and a title")
                + f"; known: {', '.join(sorted(names))}.",
                exit_code=INTERNAL,
            )
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        out.append(Row(**fields))
    return tuple(out)


def applying(
    cpu_features: Iterable[str],
    version: str | None,
    build_number: int | None = None,
    table: Iterable[Row] | None = None,
) -> list[Row]:
    """The rows that apply to llama.cpp ``version`` on a CPU with ``cpu_features``."""
    feats = set(cpu_features)
    return [
        r
        for r in (rows() if table is None else table)
        if r.affects_cpu(feats) and r.affects_version(version, build_number)
    ]


def explaining(
    code_features: Iterable[str],
    cpu_features: Iterable[str],
    version: str | None,
    build_number: int | None = None,
    signal: str | None = None,
    *,
    any_version: bool = False,
) -> list[Row]:
    """The rows a build meets on a CPU: its code carries the row's instructions, the CPU has the
    feature, and (with ``signal``) the crash is the row's symptom; those whose version range covers
    the build. ``any_version``: the others too, after them (a row whose range ended too early still
    names the likely cause of a crash that was seen). The one reading for `check` and `fix`."""
    code, feats = set(code_features), set(cpu_features)
    found = [r for r in rows() if r.in_code(code) and r.affects_cpu(feats) and (signal is None or signal in r.signals)]
    covered = [r for r in found if r.affects_version(version, build_number)]
    return covered + [r for r in found if r not in covered] if any_version else covered
