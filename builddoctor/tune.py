"""`builddoctor tune`: build candidate variants of the plan, measure them against it, keep the fastest.

Static feature scores pick the wrong CPU variant on some hosts (FACTS.md: explicit AVX-512 beats
-march=native for generation on the AMX Xeon); only measurement says. The stages:

- ``plan_candidates``: the candidates of ``data/tune_candidates.toml`` whose condition holds here,
  each a plan derived from the plain one (same plans merged, known-bad ones named and left out).
- build (``build.build``: cache, ccache) and verify (``build.verify``: the compute probe) each one.
- ``measure``: successive halving against the plain plan with ``bench.compare`` (interleaved),
  every run kept in a results cache keyed by build and model, so an interrupted or repeated tune
  resumes where it stopped.
- ``summarize`` / ``halve`` / ``choose_winner``: the statistics, pure functions of recorded runs.
  A candidate wins only when its ratio's 95 % interval lies above 1.0; else the plain plan does.
- ``runtime_settings``: threads and flash attention on the winner, as a recommended command line.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor import errors, paths
from builddoctor.errors import UserError
from builddoctor.profiles import BenchResult, BuildPlan, PlanOption, Serializable, Stat
from builddoctor.recipe_schema import CONDITION_KEYS
from builddoctor.recipes import Context, cpu_features, evaluate
from builddoctor.tomlload import load_toml

CANDIDATES_FILE = paths.DATA_DIR / "tune_candidates.toml"
BASELINE = "plain"
OBJECTIVES = ("generation", "prompt", "balanced")
SCHEMA = 1
#: the part of the budget kept for the run-time settings on the winner
SETTINGS_SHARE = 0.25

# --------------------------------------------------------------------------- values


@dataclass
class CandidateSpec:
    """One [[candidate]] of the data file: a named change to the plain plan."""

    name: str
    title: str = ""
    why: str = ""
    when: dict[str, Any] = field(default_factory=dict)
    unmet: dict[str, str] = field(default_factory=dict)
    goal: str = ""
    explicit: bool = False
    avoid: list[str] = field(default_factory=list)
    native: bool = False
    mno: list[str] = field(default_factory=list)
    set: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Candidate(Serializable):
    """A candidate as far as it got: planned, built, verified, measured (or why not)."""

    name: str
    title: str = ""
    why: str = ""
    # planned, same, not-applicable, known-bad, build-failed, crashed, skipped, measured, cut, winner
    status: str = "planned"
    reason: str = ""
    plan: BuildPlan | None = None
    build_key: str = ""
    build_dir: str = ""
    build_status: str = ""  # ok, cached, failed...
    build_s: float | None = None
    pp: Stat | None = None
    tg: Stat | None = None
    pp_ratio: Stat | None = None  # over the plain plan, paired rounds
    tg_ratio: Stat | None = None
    score: Stat | None = None  # the objective's ratio
    low: float | None = None  # 95 % interval of the score
    high: float | None = None
    rounds: int = 0
    note: str = ""  # e.g. the CPU variant the loader picked (all-variants build)


@dataclass
class RunSettings(Serializable):
    """The run-time settings measured on the winner (``run_settings``' table), and the command
    lines they make."""

    threads: int
    flash_attn: str = "auto"
    physical_cores: int = 0
    logical_cpus: int = 0
    values: dict[str, str] = field(default_factory=dict)  # setting name -> chosen value
    reasons: dict[str, str] = field(default_factory=dict)  # setting name -> why that value
    tried: list[Any] = field(default_factory=list)  # run_settings.Trial as dicts
    flags: list[str] = field(default_factory=list)
    server: list[str] = field(default_factory=list)
    cli: list[str] = field(default_factory=list)
    reason: str = ""
    complete: bool = True  # False: the budget ran out before every setting was measured


@dataclass
class TuneResult(Serializable):
    objective: str
    schema_version: int = SCHEMA
    budget_s: float = 0.0
    elapsed_s: float = 0.0
    model: str = ""
    model_sha256: str = ""
    cpu: str = ""
    threads: int = 0
    candidates: list[Candidate] = field(default_factory=list)  # the plain plan first
    winner: str = BASELINE
    winner_reason: str = ""
    stopped: str = ""  # why measuring ended: rounds, budget, interrupted
    phase: str = ""  # building, measuring, settings, done: for the live table's progress line
    answer_cached: bool = False  # the answer of an earlier tune with the same inputs
    load_avg: float | None = None  # the 1-minute load average when measuring began: other work on the cores
    runs_done: int = 0  # benchmark runs so far (this session's and the cached ones)
    interrupted: bool = False
    settings: RunSettings | None = None
    installed: str = ""  # bin folder of the installed winner
    backup: str | None = None
    settings_file: str = ""


# --------------------------------------------------------------------------- the data


def load_candidates(path: Path | None = None) -> list[CandidateSpec]:
    """The candidates file, checked: unknown keys and condition keys are named, never guessed."""
    path = Path(path or CANDIDATES_FILE)
    doc = load_toml(path)
    names = {f.name for f in dataclasses.fields(CandidateSpec)}
    out, seen = [], set()
    for i, raw in enumerate(doc.get("candidate", [])):
        where = f"{path}: candidate {i + 1}"
        unknown = sorted(set(raw) - names)
        if unknown or not raw.get("name"):
            raise UserError(
                f"{where} "
                + (
                    f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
                    if unknown
                    else "needs a name"
                )
                + ".",
                exit_code=errors.USAGE,
            )
        bad = sorted(_condition_keys(raw.get("when", {})) - set(CONDITION_KEYS))
        if bad:
            raise UserError(
                f"{where} ({raw['name']}): unknown condition key(s) {', '.join(bad)} in 'when'; "
                f"known: {', '.join(sorted(CONDITION_KEYS))}.",
                exit_code=errors.USAGE,
            )
        if raw["name"] in seen or raw["name"] == BASELINE:
            raise UserError(
                f"{where}: the name '{raw['name']}' is used twice (or is the plain plan's).", exit_code=errors.USAGE
            )
        seen.add(raw["name"])
        out.append(CandidateSpec(**raw))
    return out


def _condition_keys(cond: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(cond, dict):
        for k, v in cond.items():
            keys.add(k)
            if k == "any":
                for sub in v:
                    keys |= _condition_keys(sub)
            elif k == "not":
                keys |= _condition_keys(v)
    return keys


# --------------------------------------------------------------------------- candidates -> plans


def signature(plan: BuildPlan) -> str:
    """What makes two plans the same build: options, environment, variants left out."""
    doc = {
        "options": sorted((o.name, o.value) for o in plan.options),
        "env": sorted(plan.env.items()),
        "omit": sorted(plan.omit_cpu_variants),
        "targets": sorted(plan.targets),
    }
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def _set(plan: BuildPlan, name: str, value: str, reason: str) -> None:
    plan.options = [o for o in plan.options if o.name != name]
    plan.options.append(PlanOption(name, value, reason, "tune"))


def code_features(plan: BuildPlan, machine) -> set[str]:
    """The CPU features the plan's CPU code compiles in (the all-variants build: none fixed)."""
    from builddoctor.findings import catalogue
    from builddoctor.llama_options import isa_table

    opts = {o.name: o.value.upper() for o in plan.options}
    if opts.get("GGML_CPU_ALL_VARIANTS") == "ON":
        return set()  # the resolver leaves out the known-bad variants (omit_cpu_variants)
    if opts.get("GGML_NATIVE", "ON") in ("ON", "1", "TRUE"):
        flags = (opts.get("CMAKE_C_FLAGS", "") + " " + opts.get("CMAKE_CXX_FLAGS", "")).lower().split()
        off = {f for f, flag in catalogue()["no_flags"].items() if flag.lower() in flags}
        return cpu_features(machine) - off
    return {f for name, feats in isa_table().items() if opts.get(name) == "ON" for f in feats}


def plan_candidates(
    machine,
    baseline: BuildPlan,
    *,
    specs: list[CandidateSpec] | None = None,
    source: Path | None = None,
    host: bool = True,
    only: list[str] | None = None,
    version: str | None = None,
) -> list[Candidate]:
    """Each applicable candidate's plan; the others listed with why not (a prerequisite to install,
    a known-bad row, the same build as another)."""
    from builddoctor import known_bad
    from builddoctor.findings import catalogue
    from builddoctor.llama_options import isa_table
    from builddoctor.resolve import resolve, source_version

    specs = load_candidates() if specs is None else specs
    if only:
        unknown = sorted(set(only) - {s.name for s in specs})
        if unknown:
            raise errors.InputError(
                f"Unknown candidate(s) {', '.join(unknown)}; known: {', '.join(s.name for s in specs)}."
            )
        specs = [s for s in specs if s.name in only]
    version = version or source_version(source)
    rows = known_bad.applying(cpu_features(machine), version)
    avoided = frozenset(f for r in rows for f in r.avoid)
    ctx = Context(machine, goal=baseline.goal, backend=baseline.backend, host=host, avoided=avoided)
    seen = {signature(baseline): BASELINE}
    out = []
    for s in specs:
        c = Candidate(name=s.name, title=s.title, why=s.why)
        out.append(c)
        ok, key = evaluate(s.when, ctx)
        if not ok:
            c.status = "not-applicable"
            c.reason = s.unmet.get(key or "", f"its condition '{key}' does not hold on this machine")
            continue
        if s.native and not host:
            c.status, c.reason = (
                "not-applicable",
                "-march=native would compile the building machine's CPU, not this one",
            )
            continue
        if s.goal or s.explicit or s.avoid:
            plan = resolve(
                machine,
                goal=s.goal or baseline.goal,
                backend=baseline.backend,
                source=source,
                host=False if s.explicit else host,
                avoid=tuple(s.avoid),
            )
        else:
            plan = copy.deepcopy(baseline)
        plan.targets = list(baseline.targets)
        if s.native:
            isa = set(isa_table())
            plan.options = [o for o in plan.options if o.name not in isa]
            _set(plan, "GGML_NATIVE", "ON", f"tune candidate {s.name}: {s.title}")
            flags = " ".join(catalogue()["no_flags"][f] for f in s.mno if f in catalogue()["no_flags"])
            if flags:
                for n in ("CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"):
                    _set(plan, n, flags, f"tune candidate {s.name}: keep {', '.join(s.mno)} out of -march=native")
        for name, value in s.set.items():
            _set(plan, name, str(value), f"tune candidate {s.name}: {s.title}")
        plan.env.update(s.env)
        bad = sorted(code_features(plan, machine) & avoided & cpu_features(machine))
        if bad:
            row = next(r for r in rows if set(r.avoid) & set(bad))
            c.status = "known-bad"
            c.reason = f"its CPU code would hold {', '.join(bad)}: known-bad row {row.id} ({row.short or row.title})"
            continue
        sig = signature(plan)
        if sig in seen:
            c.status, c.reason = "same", f"the same build as {seen[sig]}"
            continue
        seen[sig] = s.name
        c.plan = plan
    return out


# --------------------------------------------------------------------------- statistics


_T975 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13)


def interval(stat: Stat | None) -> tuple[float, float] | None:
    """95 % interval of a mean over ``n`` paired rounds (Student's t); None below 2 rounds."""
    if stat is None or stat.n < 2:
        return None
    t = _T975[stat.n - 2] if stat.n - 2 < len(_T975) else 1.96
    half = t * stat.stddev / math.sqrt(stat.n)
    return stat.mean - half, stat.mean + half


def objective_ratio(pp: Stat | None, tg: Stat | None, objective: str) -> Stat | None:
    """The ratio the objective ranks by; balanced: the geometric mean of both, its spread by the
    delta method (relative spreads add in quadrature, halved)."""
    if objective == "prompt":
        return pp
    if objective == "generation":
        return tg
    if not pp or not tg or pp.mean <= 0 or tg.mean <= 0:
        return None
    mean = math.sqrt(pp.mean * tg.mean)
    rel = 0.5 * math.sqrt((pp.stddev / pp.mean) ** 2 + (tg.stddev / tg.mean) ** 2)
    return Stat(mean=mean, stddev=mean * rel, n=min(pp.n, tg.n))


def summarize(
    cands: list[Candidate],
    runs: dict[str, list[BenchResult]],
    objective: str,
    paired: dict[str, list[BenchResult]] | None = None,
) -> None:
    """Speeds, ratios to the plain plan over paired rounds (``bench._ratio``) and the objective's
    interval, from the recorded runs of each candidate. ``paired[name][i]``: the plain plan's run
    of the round of that candidate's run i (default: the plain plan's run i)."""
    from builddoctor import bench

    for c in cands:
        mine = runs.get(c.name, [])
        base = (paired or {}).get(c.name, runs.get(BASELINE, []))
        ok = [r for r in mine if not r.error]
        c.rounds = len(ok)
        c.pp = bench._pool([r.pp for r in ok])
        c.tg = bench._pool([r.tg for r in ok])
        if c.name == BASELINE:
            c.pp_ratio = c.tg_ratio = c.score = None
            c.low = c.high = None
            continue
        c.pp_ratio = bench._ratio(base, mine, "pp")
        c.tg_ratio = bench._ratio(base, mine, "tg")
        c.score = objective_ratio(c.pp_ratio, c.tg_ratio, objective)
        iv = interval(c.score)
        c.low, c.high = iv if iv else (None, None)


def halve(cands: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """(kept, cut): the better half by the objective's ratio (rounded up); unmeasured ones last."""
    ranked = sorted(cands, key=lambda c: -(c.score.mean if c.score else 0.0))
    keep = max(1, math.ceil(len(ranked) / 2))
    return ranked[:keep], ranked[keep:]


def choose_winner(cands: list[Candidate]) -> tuple[str, str]:
    """The best candidate whose 95 % interval lies above 1.0; otherwise the plain plan."""
    measured = [c for c in cands if c.name != BASELINE and c.score is not None]
    ranked = sorted(measured, key=lambda c: -c.score.mean if c.score else 0.0)
    for c in ranked:
        if c.score is not None and c.low is not None and c.low > 1.0:
            return c.name, (
                f"{c.score.mean:.3f}x the plain plan (95 % interval {c.low:.3f}-{c.high:.3f}, {c.rounds} rounds)"
            )
    best = ranked[0] if ranked else None
    if best is not None and best.score is not None and best.score.mean > 1.0:
        iv = f"{best.low:.3f}-{best.high:.3f}" if best.low is not None else f"only {best.rounds} round"
        return BASELINE, (
            f"no candidate is surely faster: the best, {best.name}, is {best.score.mean:.3f}x ({iv}), within noise"
        )
    return BASELINE, "no candidate is faster than the plain plan"


# --------------------------------------------------------------------------- the results cache


class ResultsCache:
    """Every benchmark run of a build on a model, one JSON file per (build, model, settings)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or paths.cache_dir() / "tune")

    def _file(self, build_key: str, model_sha: str, params: dict) -> Path:
        h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        return self.root / f"{build_key}-{model_sha[:16]}-{h}.json"

    def load(self, build_key: str, model_sha: str, params: dict) -> list[BenchResult]:
        try:
            doc = json.loads(self._file(build_key, model_sha, params).read_text())
            return [BenchResult.from_dict(d) for d in doc["runs"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # none yet, or unreadable: measure again

    def save(self, build_key: str, model_sha: str, params: dict, runs: list[BenchResult]) -> None:
        f = self._file(build_key, model_sha, params)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f".{f.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"params": params, "runs": [r.to_dict() for r in runs]}))
        os.replace(tmp, f)  # a Ctrl-C never leaves half a file

    def answer(self, key: str) -> TuneResult | None:
        """A finished tune's result for the same inputs (``_answer_key``), or None."""
        try:
            return TuneResult.from_json((self.root / f"answer-{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def keep_answer(self, key: str, res: TuneResult) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        f = self.root / f"answer-{key}.json"
        tmp = f.with_name(f".{f.name}.{os.getpid()}")
        tmp.write_text(res.to_json(), encoding="utf-8")
        os.replace(tmp, f)

    def verdict(self, build_key: str, machine_key: str) -> dict | None:
        try:
            return json.loads((self.root / f"{build_key}-{machine_key}.verify.json").read_text())
        except (OSError, ValueError):
            return None

    def keep_verdict(self, build_key: str, machine_key: str, ok: bool, message: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{build_key}-{machine_key}.verify.json").write_text(json.dumps({"ok": ok, "message": message}))


def machine_key(machine) -> str:
    """A verification holds for one CPU: its model and features."""
    doc = [machine.cpu.model, sorted(machine.cpu.features)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- measuring


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
) -> str:
    """Successive halving against the first entry (the plain plan): one round for all, then the
    better half gets two rounds more, and so on to ``max_rounds``. The plain plan runs in every
    round (``bench.compare``, interleaved), and each candidate's run is kept with the plain run of
    its round, so a ratio never pairs runs of different sessions. Saved run by run; Ctrl-C
    propagates with everything measured so far kept. Returns why it stopped."""
    from builddoctor import bench

    params = {"pp": bench.DEFAULT_PP, "tg": bench.DEFAULT_TG, "reps": reps, "threads": threads}
    by_name = {e.name: e for e in entries}
    base = entries[0].name
    base_key = by_name[base].key
    runs = {base: cache.load(base_key, model_sha, params)}
    paired: dict[str, list[BenchResult]] = {}
    for e in entries[1:]:
        pairs = cache.load(e.key, model_sha, dict(params, base=base_key))
        runs[e.name], paired[e.name] = pairs[1::2], pairs[0::2]  # saved as plain, candidate, plain, ...
    active = [e.name for e in entries[1:]]
    durations: list[float] = []
    target = 1

    def update() -> None:
        summarize(list(cands.values()), runs, objective, paired)

    while True:
        for name in active[:]:
            if any(r.error for r in runs[name]):
                cands[name].status = "crashed"
                cands[name].reason = next(r.error for r in runs[name] if r.error) or ""
                active.remove(name)
        update()
        need = [n for n in active if len(runs[n]) < target]
        if not need:
            if target >= max_rounds or not active:
                if not runs[base]:  # no candidate to measure: one round of the plain plan for its speed

                    def keep_base(_r: int, _i: int, res: BenchResult) -> None:
                        runs[base].append(res)
                        cache.save(base_key, model_sha, params, runs[base])

                    bench.compare([by_name[base].binary], model, rounds=1, reps=reps, threads=threads, on_run=keep_base)
                    update()
                return "rounds" if active else "no candidate left"
            kept, cut = halve([cands[n] for n in active])
            for c in cut:
                c.status, c.reason = "cut", f"in the slower half at round {target}"
            active = [c.name for c in kept]
            target = min(max_rounds, target + 2)
            continue
        est = (sum(durations) / len(durations) if durations else 15.0) * (len(need) + 1)
        if time.monotonic() + est > deadline and runs[base]:
            return "budget"
        order = [base, *need]
        t0 = [time.monotonic()]
        last_base: list[BenchResult] = []

        def save(_r: int, i: int, res: BenchResult, order=order, t0=t0, last_base=last_base) -> None:
            name = order[i]
            durations.append(time.monotonic() - t0[0])
            t0[0] = time.monotonic()
            runs[name].append(res)
            if name == base:
                last_base[:] = [res]
                cache.save(base_key, model_sha, params, runs[base])
                if res.error:
                    raise UserError(
                        f"The plain plan's build does not run its benchmark: {res.error}", exit_code=errors.BENCH_FAILED
                    )
            else:
                paired[name].append(last_base[0])
                pairs = [x for pair in zip(paired[name], runs[name], strict=False) for x in pair]
                cache.save(by_name[name].key, model_sha, dict(params, base=base_key), pairs)
            update()
            if on_run:
                on_run(name, res)

        bench.compare([by_name[n].binary for n in order], model, rounds=1, reps=reps, threads=threads, on_run=save)


# --------------------------------------------------------------------------- run-time settings


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
) -> RunSettings:
    """One setting at a time (``data/run_settings.toml`` order), the others at the values chosen so
    far: every value in ``rounds`` interleaved rounds; a value replaces the default only when it is
    faster by more than the spread of both (``_beats``). Each run is cached by build, model and
    settings, so a rerun (or one after Ctrl-C) repeats none. Past ``deadline`` the rest keep
    llama.cpp's defaults (``complete`` False)."""
    from builddoctor import bench, run_settings

    specs = run_settings.load_specs() if specs is None else specs
    runner = runner or bench.run_bench
    chosen = {sp.name: sp.default_value(physical) for sp in specs}
    reasons: dict[str, str] = {}
    tried: list = []
    complete = True
    flag_of = {sp.name: sp.bench for sp in specs}

    def one(sp, value: str, r: int) -> run_settings.Trial:
        vals = dict(chosen, **{sp.name: value})
        pp = 0 if sp.measure == "tg" else bench.DEFAULT_PP
        tg = 0 if sp.measure == "pp" else bench.DEFAULT_TG
        # keyed by the setting measured too: each comparison runs its own default, interleaved with it
        params = {"pp": pp, "tg": tg, "reps": reps, "settings": vals, "measuring": sp.name, "round": r}
        kept = cache.load(build_key, model_sha, params) if cache and build_key else []
        if kept:
            res = kept[0]
        else:
            threads = int(vals.get("threads", physical))
            extra = tuple(x for name, v in vals.items() if name != "threads" for x in (flag_of[name], v))
            res = runner(binary, model, threads=threads, reps=reps, pp=pp, tg=tg, extra=extra)
            if cache and build_key and not res.error:
                cache.save(build_key, model_sha, params, [res])
        t = run_settings.Trial(setting=sp.name, value=value, round=r, pp=res.pp, tg=res.tg, error=res.error)
        tried.append(t)
        mark = " (physical cores)" if sp.name == "threads" and value == str(physical) else ""
        say(f"  {sp.bench} {value}{mark}: " + (t.error or f"pp {_m(t.pp)} tg {_m(t.tg)} t/s"))
        return t

    for sp in specs:
        values = sp.candidates(logical)
        default = sp.default_value(physical)
        if default not in values:
            values = [default, *values]
        if len(values) < 2:
            continue
        if deadline is not None and time.monotonic() > deadline:
            complete = False
            reasons[sp.name] = f"not measured (budget spent): llama.cpp's default {default}"
            continue
        per: dict[str, list] = {v: [] for v in values}
        for r in range(rounds):
            if r and deadline is not None and time.monotonic() > deadline:
                complete = False  # judged on the rounds done: the budget is spent
                break
            for v in values:
                per[v].append(one(sp, v, r))
        kind = {"pp": "prompt", "tg": "generation"}.get(sp.measure, objective)
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
            reasons[sp.name] = f"llama.cpp's default {default} (it did not run: {pooled[default].error})"
            continue
        best = max(good.values(), key=lambda st: _score(st, kind))
        if best.value != default and _beats(best, good[default], kind):
            chosen[sp.name] = best.value
            reasons[sp.name] = (
                f"{sp.bench} {best.value}: {_score(best, kind):.1f} t/s vs {_score(good[default], kind):.1f}"
                f" at {default} ({kind}), faster by more than the spread"
            )
        else:
            reasons[sp.name] = f"{sp.bench} {default} (default): no value is surely faster"
    fl = run_settings.flags(chosen, specs, physical=physical)
    why = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    return RunSettings(
        threads=int(chosen.get("threads", physical)),
        flash_attn=chosen.get("flash_attn", "auto"),
        physical_cores=physical,
        logical_cpus=logical,
        values=chosen,
        reasons=reasons,
        tried=[t.to_dict() for t in tried],
        flags=fl,
        server=["llama-server", "-m", "MODEL.gguf", *fl],
        cli=["llama-cli", "-m", "MODEL.gguf", *fl],
        reason=why,
        complete=complete,
    )


@dataclass
class Setting:
    """One value's runs pooled."""

    value: str
    pp: Stat | None
    tg: Stat | None
    error: str | None = None


def _pool(stats):
    from builddoctor import bench

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


# --------------------------------------------------------------------------- the whole tune


def parse_budget(text: str) -> float:
    """'20m', '90s', '1h', '1h30m' or plain seconds -> seconds; anything else is a usage error."""
    import re

    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        value = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
        if not parts or "".join(n + u for n, u in parts) != t.replace(" ", ""):
            raise errors.InputError(f"--budget '{text}' is not a duration: write it as 20m, 90s, 1h or 1h30m.")
        value = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if value < 10:
        raise errors.InputError(f"--budget '{text}' is under 10 seconds: too short to build or measure anything.")
    return value


def tune(
    machine,
    *,
    source: Path,
    objective: str = "generation",
    budget_s: float = 1200.0,
    model: Path | None = None,
    only: list[str] | None = None,
    targets: list[str] | None = None,
    cache_root: Path | None = None,
    results: ResultsCache | None = None,
    max_rounds: int = 5,
    reps: int = 2,
    install: bool = True,
    replace_dir: Path | None = None,
    settings: bool = True,
    say: Callable[[str], None] = lambda _m: None,
    on_update: Callable[[TuneResult], None] = lambda _r: None,
    baseline: BuildPlan | None = None,
    model_bytes: int | None = None,
) -> TuneResult:
    """Plan, build, verify and measure the candidates within ``budget_s``; install the winner.
    Ctrl-C returns what was measured (``interrupted``); nothing is installed then."""
    from builddoctor import bench, build, smoke_model
    from builddoctor.fix import build_error
    from builddoctor.resolve import resolve

    if objective not in OBJECTIVES:
        raise errors.InputError(f"Unknown objective '{objective}': use one of {', '.join(OBJECTIVES)}.")
    t_start = time.monotonic()
    deadline = t_start + budget_s
    report = on_update

    def timed(r: TuneResult) -> None:  # every update carries the time spent, for the progress line
        r.elapsed_s = round(time.monotonic() - t_start, 1)
        r.runs_done = sum(c.rounds for c in r.candidates)
        report(r)

    on_update = timed

    results = results or ResultsCache()
    base_plan = baseline or resolve(machine, goal="native", backend="cpu", source=source, host=True)
    if targets:
        base_plan.targets = list(targets)
    if "llama-bench" not in build.targets_of(base_plan):
        base_plan.targets = build.targets_of(base_plan) + ["llama-bench"]
    res = TuneResult(
        objective=objective,
        budget_s=budget_s,
        cpu=machine.cpu.model or machine.cpu.vendor,
        threads=bench.physical_cores(machine),
    )
    plain = Candidate(
        name=BASELINE,
        title="the plain plan (builddoctor's resolved plan)",
        status="planned",
        plan=base_plan,
        why="what `builddoctor fix --rebuild` builds",
    )
    res.candidates = [plain] + plan_candidates(machine, base_plan, source=source, only=only)
    if model is not None:
        if not Path(model).is_file():
            raise errors.InputError(f"--model {model}: no such file.")
        res.model = str(model)
    answer_key = _answer_key(
        machine,
        source,
        res.candidates,
        budget_s=budget_s,
        objective=objective,
        max_rounds=max_rounds,
        reps=reps,
        model=model,
        model_bytes=model_bytes,
        settings=settings,
    )
    cached = results.answer(answer_key)
    if cached is not None:  # the same inputs were tuned to the end before: that answer, in seconds
        cached.answer_cached = True
        cached.elapsed_s = round(time.monotonic() - t_start, 1)
        cached.phase = "done"
        if install:
            winner = next(c for c in cached.candidates if c.name == cached.winner)
            assert winner.plan is not None  # every cached candidate keeps the plan it was built from
            win_build = build.build(winner.plan, source, cache_root=cache_root)
            if win_build.status not in ("ok", "cached"):
                raise build_error(win_build)
            _install(cached, win_build, replace_dir)
        on_update(cached)
        return cached
    res.phase = "building"
    on_update(res)
    built: dict[str, Any] = {}
    try:
        # build and verify, the plain plan first; later builds only while half the budget is left
        mkey = machine_key(machine)
        for c in res.candidates:
            if c.plan is None or c.status != "planned":
                continue
            if c.name != BASELINE and time.monotonic() > t_start + budget_s / 2:
                c.status, c.reason = "skipped", "half the budget was spent building; not built"
                continue
            say(f"build {c.name}: {c.title}")
            c.status = "building"
            on_update(res)
            # a candidate's build may use what is left of the building half of the budget, no more
            limit = build.BUILD_TIMEOUT if c.name == BASELINE else max(60.0, t_start + budget_s / 2 - time.monotonic())
            r = build.build(c.plan, source, cache_root=cache_root, timeout=limit)
            c.build_status, c.build_s, c.build_key, c.build_dir = r.status, r.duration_s, r.cache_key, r.build_dir
            if r.status == "interrupted":
                raise KeyboardInterrupt
            if r.status not in ("ok", "cached"):
                if c.name == BASELINE:
                    raise build_error(r)
                c.status, c.reason = "build-failed", (r.error or r.status).splitlines()[0][:200]
                if "time limit" in (r.error or "") and c.name != BASELINE:
                    c.status, c.reason = "skipped", f"its build did not finish within half the budget ({limit:.0f} s)"
                on_update(res)
                continue
            v = results.verdict(r.cache_key, mkey)
            if v is None:
                ver = build.verify(r, machine)
                v = {"ok": ver.ok, "message": ver.message}
                results.keep_verdict(r.cache_key, mkey, ver.ok, ver.message)
            lb = bench.find_llama_bench(Path(r.build_dir) / "bin")
            if not v["ok"] or lb is None:
                why = v["message"] if not v["ok"] else "the build has no llama-bench"
                if c.name == BASELINE:
                    raise UserError(
                        f"The plain plan's build does not pass verification: {why}. It is at {r.build_dir}/bin.",
                        exit_code=errors.VERIFY_FAILED,
                    )
                c.status, c.reason = "crashed", why
                on_update(res)
                continue
            c.status = "built"
            c.note = (
                loader_pick(lb)
                if any(o.name == "GGML_CPU_ALL_VARIANTS" and o.value.upper() == "ON" for o in c.plan.options)
                else ""
            )
            built[c.name] = (r, lb)
            on_update(res)

        # measure
        if model is None:
            if not model_bytes:  # bench's default: past the measured cache knee, or the plain 100 MB
                from builddoctor import bandwidth

                model_bytes = bandwidth.plan_smoke(
                    None, threads=machine.cpu.threads or None, remember=results.root / f"sweep-{mkey}.json"
                ).model_bytes
            model = smoke_model.ensure_model(model_bytes)
        res.model = str(model)
        from builddoctor.source import sha256_file

        res.model_sha256 = sha256_file(Path(model))
        entries = [Entry(c.name, built[c.name][1], c.build_key) for c in res.candidates if c.name in built]
        res.phase = "measuring"
        res.load_avg = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        for c in res.candidates:
            if c.name in built:
                c.status = "measuring"
        byname = {c.name: c for c in res.candidates if c.name in built}
        with build.build_lock(on_wait=lambda: say("bench: waiting for a llama.cpp build to finish first")):
            res.stopped = measure(
                entries,
                byname,
                Path(model),
                res.model_sha256,
                objective=objective,
                cache=results,
                deadline=deadline - (SETTINGS_SHARE * budget_s if settings else 0),
                max_rounds=max_rounds,
                reps=reps,
                threads=res.threads,
                on_run=lambda _n, _r: on_update(res),
            )
    except KeyboardInterrupt:
        res.interrupted, res.stopped = True, "interrupted"
    _finish(res)
    res.elapsed_s = round(time.monotonic() - t_start, 1)
    on_update(res)
    if res.interrupted or BASELINE not in built:
        return res

    win_build, win_bench = built[res.winner]
    if settings and time.monotonic() > deadline:
        say("run-time settings: not measured, the budget is spent (run again: the builds and rounds are cached)")
    elif settings:
        say(f"run-time settings on {res.winner}:")
        res.phase = "settings"
        on_update(res)
        try:
            with build.build_lock():
                res.settings = runtime_settings(
                    win_bench,
                    Path(res.model),
                    objective=objective,
                    physical=bench.physical_cores(machine),
                    logical=machine.cpu.threads or os.cpu_count() or 1,
                    reps=reps,
                    say=say,
                    cache=results,
                    build_key=win_build.cache_key,
                    model_sha=res.model_sha256,
                    deadline=deadline,
                )
        except KeyboardInterrupt:
            res.interrupted, res.stopped = True, "interrupted"
            return res
    res.phase = "done"
    if not res.interrupted:
        results.keep_answer(answer_key, res)
    if install:
        _install(res, win_build, replace_dir)
    res.elapsed_s = round(time.monotonic() - t_start, 1)
    return res


def loader_pick(bench_binary: Path) -> str:
    """The CPU variant ggml's loader picks on this machine (its "loaded CPU backend from
    .../libggml-cpu-<variant>.so" line), or "" when it says none."""
    import re

    from builddoctor import proc

    done = proc.run([str(bench_binary), "--list-devices"], timeout=60, extra_env=proc.from_user(proc.DEVICE_ENV))
    m = re.search(r"loaded CPU backend from \S*?ggml-cpu-([A-Za-z0-9_]+)\.(?:so|dll|dylib)", done.output)
    return f"the loader picked the {m.group(1)} variant" if m else ""


def _install(res: TuneResult, win_build, replace_dir: Path | None) -> None:
    """Install the winner as `fix` does, its tune result and run-time settings beside it."""
    from builddoctor import install as inst

    if replace_dir is not None:
        got = inst.replace(win_build, Path(replace_dir))
        res.backup = got.backup
    else:
        got = inst.install_prefix(win_build)
    res.installed = got.bin_dir
    target = paths.data_home() / "installs" / (win_build.cache_key or "tuned")
    target.mkdir(parents=True, exist_ok=True)
    (target / "tune.json").write_text(res.to_json())
    if res.settings is not None and replace_dir is None:  # `run` starts the prefix's build only
        from builddoctor import run_settings

        saved = run_settings.SavedSettings(
            values=res.settings.values,
            physical_cores=res.settings.physical_cores,
            logical_cpus=res.settings.logical_cpus,
            flags=res.settings.flags,
            winner=res.winner,
            objective=res.objective,
            model=res.model,
            reasons=res.settings.reasons,
        )
        res.settings_file = str(run_settings.save(saved))


def _answer_key(machine, source: Path, cands: list[Candidate], **inputs) -> str:
    """What makes two tunes the same question: this CPU, the source, the candidates' builds, the inputs."""
    doc = {
        "machine": machine_key(machine),
        "source": str(source),
        "candidates": [(c.name, signature(c.plan) if c.plan is not None else c.status) for c in cands],
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in inputs.items()},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _finish(res: TuneResult) -> None:
    """The winner among the measured candidates, and each one's final status."""
    measured = [c for c in res.candidates if c.status == "measuring"]
    for c in measured:
        c.status = "measured"
    res.winner, res.winner_reason = choose_winner([c for c in res.candidates if c.status in ("measured",)])
    for c in res.candidates:
        if c.name == res.winner:
            c.status = "winner"


def sort_key(objective: str) -> Callable[[Candidate], tuple]:
    """Final table order: measured ones by the objective's ratio, then the rest."""

    def key(c: Candidate):
        if c.name == BASELINE:
            return (0, -1.0)
        if c.score is not None:
            return (0, -c.score.mean)
        return (1, 0.0)

    return key


def installed_settings(prefix: Path | None = None) -> dict | None:
    """The run-time settings the last tune saved beside builddoctor's installed build (for
    `which`; `run` applies them); None if none."""
    from builddoctor import run_settings

    saved = run_settings.load(prefix)
    if saved is None:
        return None
    link = Path(prefix or paths.data_home()) / "bin"
    return {
        "file": str(run_settings.settings_file(prefix)),
        "winner": saved.winner,
        "objective": saved.objective,
        "bin_dir": str(link),
        "values": saved.values,
        "flags": saved.flags,
        "server": ["llama-server", "-m", "MODEL.gguf", *saved.flags],
        "cli": ["llama-cli", "-m", "MODEL.gguf", *saved.flags],
        "reason": "; ".join(f"{k}: {v}" for k, v in saved.reasons.items()),
    }
