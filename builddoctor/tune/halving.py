"""Successive halving against the plain plan: one interleaved round for all, more for the leaders."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import bench, errors
from builddoctor.errors import UserError
from builddoctor.profiles import BenchResult
from builddoctor.tune.budget import Budget, Estimates
from builddoctor.tune.cache import ResultsCache
from builddoctor.tune.stats import halve, summarize
from builddoctor.tune.values import Candidate


@dataclass
class Entry:
    """A build to measure: its name, its llama-bench, the key of its results."""

    name: str
    binary: Path
    key: str


def measure(
    entries: list[Entry],
    cands: dict[str, Candidate],
    model: Path,
    model_sha: str,
    *,
    objective: str,
    cache: ResultsCache,
    deadline: float,
    max_rounds: int = 5,
    reps: int = 2,
    threads: int = 1,
    on_run: Callable[[str, BenchResult], None] | None = None,
    budget: Budget | None = None,
    runner: Callable[..., BenchResult] | None = None,
    session: str = "",
) -> str:
    """Successive halving against the first entry (the plain plan): one round for all, then the
    better half gets two rounds more, and so on to ``max_rounds``. The plain plan runs in every
    round, interleaved, and each candidate's run is kept with the plain run of its round, so a
    ratio never pairs runs of different sessions. A run starts only when its estimate fits before
    ``deadline`` and is cut at the budget's end. Saved run by run; Ctrl-C propagates with
    everything measured so far kept. ``session``: the tune's answer key, so that only a rerun of the
    same tune resumes from these runs (a plain plan's runs from another tune, perhaps on a busier
    machine, never join this one's figures). Returns why it stopped."""
    h = Halving(entries, cands, model, model_sha, objective, cache, reps, threads, on_run, runner, session=session)
    h.budget = budget or Budget(max(0.0, deadline - time.monotonic()))
    h.deadline = deadline
    h.load()
    target = 1
    while True:
        h.drop_crashed()
        need = [n for n in h.active if len(h.runs[n]) < target]
        if need:
            if not h.round(need):
                return "budget"
            continue
        if target >= max_rounds or not h.active:
            if not h.runs[h.base] and not h.round([]):  # no candidate: one plain run for its speed
                return "budget"
            return "rounds" if h.active else "no candidate left"
        h.halve(target)
        target = min(max_rounds, target + 2)


@dataclass
class Halving:
    """The runs of a halving so far, and the steps that add to them."""

    entries: list[Entry]
    cands: dict[str, Candidate]
    model: Path
    model_sha: str
    objective: str
    cache: ResultsCache
    reps: int
    threads: int
    on_run: Callable[[str, BenchResult], None] | None = None
    runner: Callable[..., BenchResult] | None = None
    budget: Budget = field(default_factory=lambda: Budget(1e9))
    deadline: float = 0.0
    runs: dict[str, list[BenchResult]] = field(default_factory=dict)
    paired: dict[str, list[BenchResult]] = field(default_factory=dict)  # the plain run of each run's round
    active: list[str] = field(default_factory=list)
    estimates: Estimates = field(default_factory=lambda: Estimates(build_s={}))
    session: str = ""  # the tune's answer key: the runs kept are this tune's

    @property
    def base(self) -> str:
        return self.entries[0].name

    def params(self, candidate: bool = False) -> dict:
        p: dict[str, int | str] = {
            "pp": bench.DEFAULT_PP,
            "tg": bench.DEFAULT_TG,
            "reps": self.reps,
            "threads": self.threads,
        }
        if self.session:
            p["session"] = self.session
        return dict(p, base=self.entries[0].key) if candidate else p

    def load(self) -> None:
        """The runs kept by an earlier (interrupted) tune of the same builds and model."""
        self.runs = {self.base: self.cache.load(self.entries[0].key, self.model_sha, self.params())}
        for e in self.entries[1:]:
            pairs = self.cache.load(e.key, self.model_sha, self.params(candidate=True))
            self.runs[e.name], self.paired[e.name] = pairs[1::2], pairs[0::2]  # plain, candidate, plain, ...
        self.active = [e.name for e in self.entries[1:]]
        self.update()

    def update(self) -> None:
        summarize(list(self.cands.values()), self.runs, self.objective, self.paired)

    def drop_crashed(self) -> None:
        for name in self.active[:]:
            if any(r.error for r in self.runs[name]):
                self.cands[name].status = "crashed"
                self.cands[name].reason = next(r.error for r in self.runs[name] if r.error) or ""
                self.active.remove(name)
        self.update()

    def halve(self, target: int) -> None:
        kept, cut = halve([self.cands[n] for n in self.active])
        for c in cut:
            c.status, c.reason = "cut", f"in the slower half at round {target}"
        self.active = [c.name for c in kept]

    def round(self, need: list[str]) -> bool:
        """One interleaved round: the plain plan, then each candidate in ``need``; False when the
        budget stopped it (a run that would not fit, or one cut at the end of the budget)."""
        last_base: BenchResult | None = None
        for name in [self.base, *need]:
            res = self.run(name)
            if res is None:
                return False
            if name == self.base:
                last_base = res
                self.keep_base(res)
            else:
                assert last_base is not None
                self.keep_pair(name, last_base, res)
            self.update()
            if self.on_run:
                self.on_run(name, res)
        return True

    def run(self, name: str) -> BenchResult | None:
        """One benchmark run, or None when it does not fit or was cut at the budget's end (not kept)."""
        first = not self.runs[self.base]
        if (first and self.budget.left() <= 0) or (
            not first and not self.budget.fits(self.estimates.run(), self.deadline)
        ):
            return None
        entry = next(e for e in self.entries if e.name == name)
        t0 = self.budget.clock()
        timeout = max(1.0, min(bench.BENCH_TIMEOUT, self.budget.left()))
        res = (self.runner or bench.run_bench)(
            entry.binary, self.model, threads=self.threads, reps=self.reps, timeout=timeout
        )
        if res.error and self.budget.left() <= 0:
            return None  # cut at the budget: not a crash of the build
        self.estimates.run_s.append(self.budget.clock() - t0)
        return res

    def keep_base(self, res: BenchResult) -> None:
        self.runs[self.base].append(res)
        self.cache.save(self.entries[0].key, self.model_sha, self.params(), self.runs[self.base])
        if res.error:
            raise UserError(
                f"The plain plan's build does not run its benchmark: {res.error}", exit_code=errors.BENCH_FAILED
            )

    def keep_pair(self, name: str, base_run: BenchResult, res: BenchResult) -> None:
        self.runs[name].append(res)
        self.paired[name].append(base_run)
        pairs = [x for pair in zip(self.paired[name], self.runs[name], strict=False) for x in pair]
        key = next(e.key for e in self.entries if e.name == name)
        self.cache.save(key, self.model_sha, self.params(candidate=True), pairs)
