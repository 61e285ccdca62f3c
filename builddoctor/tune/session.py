"""The whole tune: plan, build and verify, measure, run-time settings, install the winner."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builddoctor import bandwidth, bench, build, errors, paths, run_settings, smoke_model
from builddoctor import install as inst
from builddoctor.fix import build_error
from builddoctor.profiles import BuildPlan
from builddoctor.recipes import Context, evaluate
from builddoctor.resolve import resolve
from builddoctor.source import sha256_file
from builddoctor.tune.budget import Budget
from builddoctor.tune.building import Builds, build_all
from builddoctor.tune.cache import ResultsCache, answer_key, machine_key
from builddoctor.tune.candidates import plan_candidates
from builddoctor.tune.halving import Entry, measure
from builddoctor.tune.settings import runtime_settings
from builddoctor.tune.stats import choose_winner
from builddoctor.tune.values import BACKENDS, BASELINE, OBJECTIVES, SETTINGS_SHARE, Candidate, TuneResult


def parse_budget(text: str) -> float:
    """'20m', '90s', '1h', '1h30m' or plain seconds -> seconds; anything else is a usage error."""
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


@dataclass
class Session:
    """One tune's inputs and state, passed from step to step."""

    machine: Any
    source: Path
    res: TuneResult
    budget: Budget
    results: ResultsCache
    key: str = ""
    runs_key: str = ""  # what the kept benchmark runs belong to: the answer key less the settings step
    model: Path | None = None
    model_bytes: int | None = None
    max_rounds: int = 5
    reps: int = 2
    settings: bool = True
    install: bool = True
    replace_dir: Path | None = None
    cache_root: Path | None = None
    say: Callable[[str], None] = lambda _m: None
    report: Callable[[TuneResult], None] = lambda _r: None
    builds: Builds | None = None

    def update(self, r: TuneResult | None = None) -> None:
        """Every update carries the time spent and the runs done, for the progress line."""
        r = r or self.res
        r.elapsed_s = round(self.budget.spent(), 1)
        r.runs_done = sum(c.rounds for c in r.candidates)
        self.report(r)


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
    backend: str = "cpu",
    fresh: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> TuneResult:
    """Plan, build, verify and measure the candidates within ``budget_s`` (a hard bound: see
    ``budget``); install the winner. ``fresh``: no cached answer or run is read, all is measured
    again. Ctrl-C returns what was measured (``interrupted``); nothing is installed then."""
    s = Session(
        machine=machine,
        source=source,
        res=TuneResult(objective=objective, budget_s=budget_s),
        budget=Budget(budget_s, clock=clock),
        results=results or ResultsCache(),
        model=model,
        model_bytes=model_bytes,
        max_rounds=max_rounds,
        reps=reps,
        settings=settings,
        install=install,
        replace_dir=replace_dir,
        cache_root=cache_root,
        say=say,
        report=on_update,
    )
    if fresh:
        s.results.fresh = True
    _plan(s, baseline=baseline, only=only, targets=targets, backend=backend)
    cached = s.results.answer(s.key)
    if cached is not None:
        return _answer_again(s, cached)
    try:
        _build(s)
        _measure(s)
    except KeyboardInterrupt:
        s.res.interrupted, s.res.stopped = True, "interrupted"
    _finish(s.res)
    s.update()
    if s.res.interrupted or s.builds is None or BASELINE not in s.builds.built:
        return s.res
    return _conclude(s)


def _plan(s: Session, *, baseline: BuildPlan | None, only, targets, backend: str) -> None:
    """The plain plan, the candidates and the key of this question (the answer cache's)."""
    res = s.res
    if res.objective not in OBJECTIVES:
        raise errors.InputError(f"Unknown objective '{res.objective}': use one of {', '.join(OBJECTIVES)}.")
    res.backend, res.backend_note = choose_backend(s.machine, backend)
    if res.backend_note:
        s.say(f"--backend {backend}: {res.backend_note}")
    base_plan = baseline or resolve(s.machine, goal="native", backend=res.backend, source=s.source, host=True)
    if targets:
        base_plan.targets = list(targets)
    if "llama-bench" not in build.targets_of(base_plan):
        base_plan.targets = build.targets_of(base_plan) + ["llama-bench"]
    res.cpu = s.machine.cpu.model or s.machine.cpu.vendor
    res.threads = bench.physical_cores(s.machine)
    plain = Candidate(
        name=BASELINE,
        title="the plain plan (builddoctor's resolved plan)",
        status="planned",
        plan=base_plan,
        why="what `builddoctor fix --rebuild` builds",
    )
    res.candidates = [plain] + plan_candidates(s.machine, base_plan, source=s.source, only=only)
    if s.model is not None:
        if not Path(s.model).is_file():
            raise errors.InputError(f"--model {s.model}: no such file.")
        res.model = str(s.model)
    inputs = dict(
        budget_s=res.budget_s,
        objective=res.objective,
        max_rounds=s.max_rounds,
        reps=s.reps,
        model=s.model,
        model_bytes=s.model_bytes,
    )
    s.key = answer_key(s.machine, s.source, res.candidates, settings=s.settings, **inputs)
    # the benchmark runs are the same question with or without the run-time settings after them
    s.runs_key = answer_key(s.machine, s.source, res.candidates, **inputs)


def choose_backend(machine, backend: str) -> tuple[str, str]:
    """The backend to tune and, when it is not the one asked for, why: a GPU backend needs a real
    GPU of that API in the machine profile (the recipes' ``gpu_api`` condition)."""
    if backend not in BACKENDS:
        raise errors.InputError(f"Unknown backend '{backend}': use one of {', '.join(BACKENDS)}.")
    if backend == "cpu":
        return "cpu", ""
    ok, _key = evaluate({"gpu_api": backend}, Context(machine))
    if ok:
        return backend, ""
    return "cpu", f"no {backend} GPU on this machine (its profile lists none): tuning the CPU candidates only"


def _answer_again(s: Session, cached: TuneResult) -> TuneResult:
    """The same inputs were tuned to the end before: that answer, in seconds (installed again)."""
    cached.answer_cached = True
    cached.elapsed_s = round(s.budget.spent(), 1)
    cached.phase = "done"
    if s.install:
        winner = next(c for c in cached.candidates if c.name == cached.winner)
        assert winner.plan is not None  # every cached candidate keeps the plan it was built from
        win_build = build.build(winner.plan, s.source, cache_root=s.cache_root)
        if win_build.status not in ("ok", "cached"):
            raise build_error(win_build)
        _install(cached, win_build, s.replace_dir)
    s.update(cached)
    return cached


def _build(s: Session) -> None:
    """Build and verify the candidates (``building``), the plain plan first."""
    s.res.phase = "building"
    s.update()
    s.builds = Builds(
        machine=s.machine,
        source=s.source,
        budget=s.budget,
        results=s.results,
        cache_root=s.cache_root,
        say=s.say,
        update=s.update,
    )
    build_all(s.res, s.builds)


def _measure(s: Session) -> None:
    """The model (the user's, else a smoke model past the cache knee), then the halving."""
    assert s.builds is not None
    res, built = s.res, s.builds.built
    model = Path(s.model) if s.model is not None else _smoke_model(s)
    res.model = str(model)
    res.model_sha256 = sha256_file(model)
    entries = [Entry(c.name, built[c.name][1], c.build_key) for c in res.candidates if c.name in built]
    res.phase = "measuring"
    res.load_avg = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    for c in res.candidates:
        if c.name in built:
            c.status = "measuring"
    byname = {c.name: c for c in res.candidates if c.name in built}
    deadline = s.budget.at(1.0 - (SETTINGS_SHARE if s.settings else 0.0))
    with build.build_lock(on_wait=lambda: s.say("bench: waiting for a llama.cpp build to finish first")):
        res.stopped = measure(
            entries,
            byname,
            model,
            res.model_sha256,
            objective=res.objective,
            cache=s.results,
            deadline=deadline,
            max_rounds=s.max_rounds,
            reps=s.reps,
            threads=res.threads,
            on_run=lambda _n, _r: s.update(),
            budget=s.budget,
            session=s.runs_key,
        )


def _smoke_model(s: Session) -> Path:
    """bench's default smoke model: past the measured cache knee, or the plain 100 MB."""
    size = s.model_bytes
    if not size:
        mkey = machine_key(s.machine)
        size = bandwidth.plan_smoke(
            None, threads=s.machine.cpu.threads or None, remember=s.results.root / f"sweep-{mkey}.json"
        ).model_bytes
    return smoke_model.ensure_model(size)


def _conclude(s: Session) -> TuneResult:
    """Run-time settings on the winner while the budget lasts, keep the answer, install."""
    assert s.builds is not None
    res = s.res
    win_build, win_bench = s.builds.built[res.winner]
    if s.settings and s.budget.left() <= 0:
        s.say("run-time settings: not measured, the budget is spent (run again: the builds and rounds are cached)")
    elif s.settings:
        try:
            _settings(s, win_build, win_bench)
        except KeyboardInterrupt:
            res.interrupted, res.stopped = True, "interrupted"
            return res
    res.phase = "done"
    keep_if_finished(s.results, s.key, res, settings=s.settings, say=s.say)
    if s.install:
        _install(res, win_build, s.replace_dir)
    res.elapsed_s = round(s.budget.spent(), 1)
    return res


def keep_if_finished(
    results: ResultsCache, key: str, res: TuneResult, *, settings: bool, say: Callable[[str], None]
) -> bool:
    """Keep ``res`` as the answer to ``key`` only when the budget left nothing undone; else say what
    a rerun of the same command goes on with (``res.unfinished``)."""
    res.unfinished = unfinished(res, settings)
    if res.unfinished:
        say(
            f"the budget ran out before {'; '.join(res.unfinished)}: run the same command again to go on "
            "(every build and run so far is cached), or give a larger --budget"
        )
        return False
    results.keep_answer(key, res)
    return True


def unfinished(res: TuneResult, settings: bool) -> list[str]:
    """What the budget left undone. A tune cut short is no answer to keep: its rerun would return it
    in seconds and never build the candidates it skipped, measure the rounds or settings it missed."""
    left = []
    skipped = [c.name for c in res.candidates if c.status == "skipped"]  # tune/building.py: for the budget
    if skipped:
        left.append(f"building {', '.join(skipped)}")
    if res.stopped == "budget":
        left.append("the last rounds")
    if settings and (res.settings is None or not res.settings.complete):
        left.append("the run-time settings")
    return left


def _settings(s: Session, win_build, win_bench: Path) -> None:
    """The run-time settings measured on the winner, up to the end of the budget."""
    res = s.res
    s.say(f"run-time settings on {res.winner}:")
    res.phase = "settings"
    s.update()
    with build.build_lock():
        res.settings = runtime_settings(
            win_bench,
            Path(res.model),
            objective=res.objective,
            physical=bench.physical_cores(s.machine),
            logical=s.machine.cpu.threads or os.cpu_count() or 1,
            reps=s.reps,
            say=s.say,
            cache=s.results,
            build_key=win_build.cache_key,
            model_sha=res.model_sha256,
            deadline=s.budget.end,
            budget=s.budget,
        )


def _install(res: TuneResult, win_build, replace_dir: Path | None) -> None:
    """Install the winner as `fix` does, its tune result and run-time settings beside it."""
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
