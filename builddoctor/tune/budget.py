"""The tune's time as a hard bound: a step starts only when its estimate fits in what is left, and
a running build or benchmark is given no more than what is left as its time limit.

The last measured `tune --budget 20m` overran by 32 s: builds had a 60 s floor on their limit and
a round was estimated once for all its runs. Here every build and every benchmark run asks first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from builddoctor import paths
from builddoctor.tomlload import load_toml

#: the part of the budget kept for building (candidates after the plain plan start only inside it)
BUILD_SHARE = 0.5


def scope_estimates() -> dict[str, float]:
    """Seconds a build of each scope is expected to take before one was measured here
    (data/tune_candidates.toml [estimate])."""
    doc = load_toml(paths.DATA_DIR / "tune_candidates.toml")
    return {k: float(v) for k, v in doc.get("estimate", {}).get("build_s", {}).items()}


@dataclass
class Budget:
    """Seconds from ``start`` on ``clock``; ``clock`` is injectable so the bound is tested on
    recorded timings instead of the wall clock."""

    total: float
    clock: Callable[[], float] = time.monotonic
    start: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.start < 0:
            self.start = self.clock()

    @property
    def end(self) -> float:
        return self.start + self.total

    def spent(self) -> float:
        return self.clock() - self.start

    def left(self, until: float | None = None) -> float:
        """Seconds left before ``until`` (a deadline on the same clock; default the end)."""
        return (self.end if until is None else min(until, self.end)) - self.clock()

    def at(self, share: float) -> float:
        """The deadline at ``share`` of the budget."""
        return self.start + share * self.total

    def fits(self, estimate: float, until: float | None = None) -> bool:
        """Whether a step of ``estimate`` seconds started now ends before ``until``."""
        return estimate <= self.left(until)


@dataclass
class Estimates:
    """What the next step will take, from the steps measured so far (else the data's guess)."""

    build_s: dict[str, float] = field(default_factory=scope_estimates)
    run_s: list[float] = field(default_factory=list)
    first_run_s: float = 15.0

    def build(self, scope: str) -> float:
        return self.build_s.get(scope, max(self.build_s.values(), default=600.0))

    def built(self, scope: str, seconds: float, cached: bool) -> None:
        """A measured build of ``scope`` replaces the guess (a cached one says nothing)."""
        if not cached:
            self.build_s[scope] = seconds

    def run(self) -> float:
        """One benchmark run: the slowest so far (runs of slower candidates take longer)."""
        return max(self.run_s) if self.run_s else self.first_run_s
