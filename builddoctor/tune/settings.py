"""Run-time settings on the winner (threads, flash attention, ...), one at a time, as a command line."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import bench, errors, run_settings
from builddoctor.errors import UserError
from builddoctor.profiles import BenchResult, Stat
from builddoctor.tune.budget import Budget
from builddoctor.tune.cache import ResultsCache
from builddoctor.tune.stats import objective_ratio
from builddoctor.tune.values import RunSettings


def runtime_settings(
    binary: Path,
    model: Path,
    *,
    objective: str,
    physical: int,
    logical: int,
    reps: int = 2,
    rounds: int = 2,
    say: Callable[[str], None] = lambda _m: None,
    cache: ResultsCache | None = None,
    build_key: str = "",
    model_sha: str = "",
    deadline: float | None = None,
    specs: list | None = None,
    runner: Callable[..., BenchResult] | None = None,
    budget: Budget | None = None,
) -> RunSettings:
    """One setting at a time (``data/run_settings.toml`` order), the others at the values chosen so
    far: every value in ``rounds`` interleaved rounds; a value replaces the default only when it is
    faster by more than the spread of both (``_beats``). Each run is cached by build, model and
    settings, so a rerun (or one after Ctrl-C) repeats none. A run starts only when it fits before
    ``deadline`` and is cut there; the settings not measured keep llama.cpp's defaults
    (``complete`` False)."""
    search = SettingsSearch(
        binary=binary,
        model=model,
        objective=objective,
        physical=physical,
        reps=reps,
        say=say,
        cache=cache,
        build_key=build_key,
        model_sha=model_sha,
        deadline=deadline,
        specs=run_settings.load_specs() if specs is None else specs,
        runner=runner,
        clock=budget.clock if budget is not None else time.monotonic,
    )
    search.chosen = {sp.name: sp.default_value(physical) for sp in search.specs}
    for sp in search.specs:
        search.setting(sp, logical, rounds)
    return search.result(logical)


@dataclass
class SettingsSearch:
    """The settings chosen so far and every trial, for ``runtime_settings``' steps."""

    binary: Path
    model: Path
    objective: str
    physical: int
    reps: int
    say: Callable[[str], None]
    cache: ResultsCache | None
    build_key: str
    model_sha: str
    deadline: float | None
    specs: list
    runner: Callable[..., BenchResult] | None
    clock: Callable[[], float]
    chosen: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    tried: list = field(default_factory=list)
    complete: bool = True
    slowest: float = 0.0  # the longest run so far: the estimate of the next

    def fits(self) -> bool:
        return self.deadline is None or self.clock() + self.slowest < self.deadline

    def setting(self, sp, logical: int, rounds: int) -> None:
        """Measure one setting's values in interleaved rounds and keep the surely faster one."""
        values = sp.candidates(logical)
        default = sp.default_value(self.physical)
        if default not in values:
            values = [default, *values]
        if len(values) < 2:
            return
        per: dict[str, list] = {v: [] for v in values}
        for r in range(rounds):
            got = [self.trial(sp, v, r) for v in values] if self.fits() else [None]
            if None in got:
                self.complete = False  # the budget is spent: judged on the whole rounds done
                break
            for v, t in zip(values, got, strict=True):
                per[v].append(t)
        if not per[default]:
            self.reasons[sp.name] = f"not measured (budget spent): llama.cpp's default {default}"
            return
        self.judge(sp, default, per)

    def trial(self, sp, value: str, r: int):
        """One run of ``value`` (the others as chosen so far), from the cache when kept; None when
        it does not fit before the deadline or was cut there."""
        vals = dict(self.chosen, **{sp.name: value})
        pp = 0 if sp.measure == "tg" else bench.DEFAULT_PP
        tg = 0 if sp.measure == "pp" else bench.DEFAULT_TG
        # keyed by the setting measured too: each comparison runs its own default, interleaved with it
        params = {"pp": pp, "tg": tg, "reps": self.reps, "settings": vals, "measuring": sp.name, "round": r}
        keep = self.cache is not None and bool(self.build_key)
        kept = self.cache.load(self.build_key, self.model_sha, params) if self.cache and keep else []
        res: BenchResult | None = kept[0] if kept else None
        if res is None:
            res = self.run(vals, pp, tg) if self.fits() else None
            if res is None:
                return None
            if self.cache and keep and not res.error:
                self.cache.save(self.build_key, self.model_sha, params, [res])
        t = run_settings.Trial(setting=sp.name, value=value, round=r, pp=res.pp, tg=res.tg, error=res.error)
        self.tried.append(t)
        mark = " (physical cores)" if sp.name == "threads" and value == str(self.physical) else ""
        self.say(f"  {sp.bench} {value}{mark}: " + (t.error or f"pp {_m(t.pp)} tg {_m(t.tg)} t/s"))
        return t

    def run(self, vals: dict[str, str], pp: int, tg: int) -> BenchResult | None:
        """One llama-bench run with these settings, cut at the deadline (then None)."""
        flag_of = {sp.name: sp.bench for sp in self.specs}
        threads = int(vals.get("threads", self.physical))
        extra = tuple(x for name, v in vals.items() if name != "threads" for x in (flag_of[name], v))
        t0 = self.clock()
        if self.runner is not None:
            res = self.runner(self.binary, self.model, threads=threads, reps=self.reps, pp=pp, tg=tg, extra=extra)
        else:
            left = bench.BENCH_TIMEOUT if self.deadline is None else self.deadline - t0
            timeout = max(1.0, min(bench.BENCH_TIMEOUT, left))
            res = bench.run_bench(
                self.binary, self.model, threads=threads, reps=self.reps, pp=pp, tg=tg, extra=extra, timeout=timeout
            )
        if res.error and self.deadline is not None and self.clock() >= self.deadline:
            return None  # cut at the deadline: not a failure of the setting
        self.slowest = max(self.slowest, self.clock() - t0)
        return res

    def judge(self, sp, default: str, per: dict[str, list]) -> None:
        """Keep the fastest value when it beats the default by more than the spread of both."""
        kind = {"pp": "prompt", "tg": "generation"}.get(sp.measure, self.objective)
        pooled = {
            v: Setting(
                v,
                _pool([t.pp for t in ts if not t.error]),
                _pool([t.tg for t in ts if not t.error]),
                next((t.error for t in ts if t.error), None),
            )
            for v, ts in per.items()
        }
        good = {v: st for v, st in pooled.items() if not st.error}
        if default not in good:
            if sp.name == "threads" and not good:
                raise UserError(
                    f"The winner's llama-bench does not run: {pooled[default].error}", exit_code=errors.BENCH_FAILED
                )
            self.reasons[sp.name] = f"llama.cpp's default {default} (it did not run: {pooled[default].error})"
            return
        best = max(good.values(), key=lambda st: _score(st, kind))
        if best.value != default and _beats(best, good[default], kind):
            self.chosen[sp.name] = best.value
            self.reasons[sp.name] = (
                f"{sp.bench} {best.value}: {_score(best, kind):.1f} t/s vs {_score(good[default], kind):.1f}"
                f" at {default} ({kind}), faster by more than the spread"
            )
        else:
            self.reasons[sp.name] = f"{sp.bench} {default} (default): no value is surely faster"

    def result(self, logical: int) -> RunSettings:
        fl = run_settings.flags(self.chosen, self.specs, physical=self.physical)
        return RunSettings(
            threads=int(self.chosen.get("threads", self.physical)),
            flash_attn=self.chosen.get("flash_attn", "auto"),
            physical_cores=self.physical,
            logical_cpus=logical,
            values=self.chosen,
            reasons=self.reasons,
            tried=[t.to_dict() for t in self.tried],
            flags=fl,
            server=["llama-server", "-m", "MODEL.gguf", *fl],
            cli=["llama-cli", "-m", "MODEL.gguf", *fl],
            reason="; ".join(f"{k}: {v}" for k, v in self.reasons.items()),
            complete=self.complete,
        )


@dataclass
class Setting:
    """One value's runs pooled."""

    value: str
    pp: Stat | None
    tg: Stat | None
    error: str | None = None


def _pool(stats):
    return bench._pool(stats)


def _score(s: Setting, kind: str) -> float:
    r = objective_ratio(s.pp, s.tg, kind) if kind == "balanced" else {"prompt": s.pp, "generation": s.tg}[kind]
    return r.mean if r else 0.0


def _beats(a: Setting, b: Setting, kind: str) -> bool:
    """a faster than b by more than the larger spread of the two (and 1 %)."""

    def pick(s):
        if kind == "balanced":
            return objective_ratio(s.pp, s.tg, kind)
        return {"prompt": s.pp, "generation": s.tg}[kind]

    x, y = pick(a), pick(b)
    if a is b or not x or not y:
        return False
    return x.mean - y.mean > max(x.stddev, y.stddev, 0.01 * y.mean)


def _m(s: Stat | None) -> str:
    return f"{s.mean:.1f}" if s else "n/a"
