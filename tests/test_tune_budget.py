"""`tune --budget` as a hard bound, on recorded timings and a clock the test moves (no timing
assertions): no step starts when its estimate does not fit, a running benchmark is cut at the end
of the budget and not taken for a crash. Also `--fresh` and `--backend`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from builddoctor import tune
from builddoctor.profiles import BenchResult, Stat
from builddoctor.tune.budget import Budget, Estimates
from builddoctor.tune.building import Builds, _starts

FIX = Path(__file__).parent / "fixtures"

#: seconds one llama-bench run (-p 128 -n 64 -r 2, 100 MB smoke model) took per build in the last
#: session's quiet run on the AMX Xeon (2 builds x 3 rounds in 59 s), and speeds of that run
RECORDED = {"plain": (9.8, 416.0, 66.3), "no-avx512": (9.9, 75.0, 43.8), "threadpool": (9.6, 410.0, 67.0)}


class Clock:
    """A clock that moves only when a stand-in step says how long it took."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runner(clock: Clock, calls: list, slow: dict[str, float] | None = None):
    """llama-bench stand-in: takes the recorded time (or ``slow``'s), or is cut at its timeout."""

    def run(binary, model, *, threads, reps, timeout):
        name = Path(binary).name
        took = (slow or {}).get(name, RECORDED[name][0])
        calls.append((name, timeout))
        if took > timeout:
            clock.now += timeout
            return BenchResult(binary=str(binary), model=str(model), error=f"did not finish within {timeout:.0f} s")
        clock.now += took
        _s, pp, tg = RECORDED[name]
        return BenchResult(binary=str(binary), model=str(model), pp=Stat(pp, 1.0, reps), tg=Stat(tg, 0.5, reps))

    return run


def _measure(tmp_path, budget: Budget, deadline: float, runner, names=("plain", "no-avx512", "threadpool")):
    entries = [tune.Entry(n, Path(n), f"key-{n}") for n in names]
    cands = {n: tune.Candidate(name=n, status="measuring") for n in names}
    stopped = tune.measure(
        entries,
        cands,
        Path("m.gguf"),
        "s" * 64,
        objective="generation",
        cache=tune.ResultsCache(tmp_path),
        deadline=deadline,
        max_rounds=5,
        budget=budget,
        runner=runner,
    )
    return stopped, cands


def test_measuring_starts_no_run_that_does_not_fit(tmp_path):
    clock, calls = Clock(), []
    budget = Budget(65.0, clock=clock)
    stopped, cands = _measure(tmp_path, budget, budget.end, _runner(clock, calls))
    assert stopped == "budget"
    assert clock.now <= budget.end  # every run that started ended inside the budget
    # round 1: plain, no-avx512, threadpool; the slower half (no-avx512) is cut; then plain and
    # threadpool; then plain, and threadpool's run (estimate 9.9 s, 6.5 s left) is not started
    assert len(calls) == 6 and cands["no-avx512"].status == "cut" and cands["threadpool"].rounds == 2
    assert all(c.status != "crashed" for c in cands.values())


def test_a_run_past_the_end_is_cut_and_not_taken_for_a_crash(tmp_path):
    clock, calls = Clock(), []
    budget = Budget(40.0, clock=clock)
    # threadpool hangs this time: its run gets what is left of the budget as its time limit
    stopped, cands = _measure(tmp_path, budget, budget.end, _runner(clock, calls, slow={"threadpool": 500.0}))
    assert stopped == "budget" and clock.now <= budget.end
    assert calls[2][0] == "threadpool" and calls[2][1] < budget.total - 19
    assert cands["threadpool"].status != "crashed" and cands["threadpool"].rounds == 0
    assert cands["no-avx512"].rounds == 1


def test_the_halving_ends_on_rounds_when_the_budget_is_ample(tmp_path):
    clock, calls = Clock(), []
    budget = Budget(3600.0, clock=clock)
    stopped, cands = _measure(tmp_path, budget, budget.end, _runner(clock, calls))
    assert stopped == "rounds"
    # one round for both, then the faster (threadpool) two more, up to 5: the slow one is cut
    assert cands["no-avx512"].status == "cut" and cands["threadpool"].rounds == 5


def test_a_build_starts_only_when_its_scope_estimate_fits_the_building_half():
    clock = Clock()
    budget = Budget(1200.0, clock=clock)
    b = Builds(machine=None, source=Path("."), budget=budget, results=tune.ResultsCache(Path("/nonexistent")))
    b.estimates = Estimates(build_s={"cpu": 160.0, "tree": 600.0})
    clock.now += 300  # the plain plan took 5 minutes: 300 s of the building half left
    cpu = tune.Candidate(name="no-avx512", scope="cpu", status="planned")
    tree = tune.Candidate(name="native-no-amx", scope="tree", status="planned")
    assert _starts(cpu, b) and cpu.status == "planned"
    assert not _starts(tree, b) and tree.status == "skipped" and "600 s" in tree.reason
    b.estimates.built("cpu", 41.0, cached=False)  # a measured build replaces the guess
    b.estimates.built("tree", 5.0, cached=True)  # a cached one says nothing
    assert b.estimates.build("cpu") == 41.0 and b.estimates.build("tree") == 600.0


def test_settings_stop_at_the_deadline_on_a_moving_clock():
    clock = Clock()
    budget = Budget(30.0, clock=clock)
    calls: list = []

    def runner(binary, model, *, threads, reps, pp, tg, extra):
        calls.append(threads)
        clock.now += 9.8
        return BenchResult(binary=str(binary), model=str(model), pp=Stat(400.0, 4.0, 2), tg=Stat(60.0, 0.6, 2))

    got = tune.runtime_settings(
        Path("llama-bench"),
        Path("m.gguf"),
        objective="generation",
        physical=2,
        logical=2,
        runner=runner,
        deadline=budget.end,
        budget=budget,
    )
    assert not got.complete and clock.now <= budget.end and len(calls) == 3
    assert "budget" in got.reasons["ubatch"] and got.values["ubatch"] == "512"


def test_fresh_reads_no_answer_nor_run_back(tmp_path):
    res = tune.TuneResult(objective="generation", winner="plain")
    old = tune.ResultsCache(tmp_path)
    old.keep_answer("k", res)
    run = BenchResult(binary="b", model="m", tg=Stat(60.0, 1.0, 2))
    old.save("b", "m" * 16, {"x": 1}, [run])
    old.keep_verdict("b", "cpu", True, "ok")
    assert old.answer("k") is not None and old.load("b", "m" * 16, {"x": 1})
    fresh = tune.ResultsCache(tmp_path, fresh=True)
    assert fresh.answer("k") is None and fresh.load("b", "m" * 16, {"x": 1}) == []
    assert fresh.verdict("b", "cpu") == {"ok": True, "message": "ok"}  # a build's verdict is no speed


def test_backend_without_such_a_gpu_falls_back_to_the_cpu_with_a_message():
    from builddoctor.probe import machine_profile

    here = machine_profile(profile=FIX / "machines" / "this-machine.json")
    backend, note = tune.choose_backend(here, "cuda")
    assert backend == "cpu" and "no cuda GPU" in note and "CPU candidates only" in note
    assert tune.choose_backend(here, "cpu") == ("cpu", "")
    gpu = machine_profile(profile=FIX / "machines" / "rtx4090-cuda12.json")
    assert tune.choose_backend(gpu, "cuda") == ("cuda", "")
    assert tune.choose_backend(gpu, "hip")[0] == "cpu"


def test_cli_refuses_an_unknown_backend():
    from builddoctor.cli import _register, cli

    _register()
    got = CliRunner().invoke(cli, ["tune", "--backend", "tpu", "--no-install"])
    assert got.exit_code == 2 and "tpu" in got.output


def test_only_a_rerun_of_the_same_tune_resumes_from_its_runs(tmp_path):
    """The plain plan's runs are kept per tune (its answer key): a rerun of the same tune resumes
    from them, another tune of the same build and model (e.g. on a busier machine an hour ago) does
    not join its figures to this one's."""

    def once(session: str) -> list:
        clock, calls = Clock(), []
        budget = Budget(1e6, clock=clock)
        entries = [tune.Entry(n, Path(n), f"key-{n}") for n in ("plain", "threadpool")]
        cands = {n: tune.Candidate(name=n, status="measuring") for n in ("plain", "threadpool")}
        tune.measure(
            entries,
            cands,
            Path("m.gguf"),
            "s" * 64,
            objective="generation",
            cache=tune.ResultsCache(tmp_path),
            deadline=budget.end,
            max_rounds=1,
            budget=budget,
            runner=_runner(clock, calls),
            session=session,
        )
        return calls

    assert len(once("tune-a")) == 2  # plain and threadpool, one round
    assert once("tune-a") == []  # the same tune again: everything was kept
    assert len(once("tune-b")) == 2  # another tune measures its own


def test_a_tune_the_budget_cut_short_is_not_kept_as_the_answer(tmp_path):
    """Seen on a new machine: the plain plan's cold build took 562 s of a 20-minute budget, every
    candidate was skipped, and the same command again answered that from the cache in seconds, never
    building them. A tune cut short keeps no answer: its rerun goes on (builds and runs cached)."""
    cache, said = tune.ResultsCache(tmp_path), []
    done = tune.RunSettings(threads=2, complete=True)
    res = tune.TuneResult(
        objective="generation",
        winner="plain",
        stopped="rounds",
        settings=done,
        candidates=[
            tune.Candidate(name="plain", status="winner"),
            tune.Candidate(name="threadpool", status="skipped", reason="not built: a ggml-scope build takes ..."),
            tune.Candidate(name="native", status="known-bad"),
        ],
    )
    assert not tune.keep_if_finished(cache, "k", res, settings=True, say=said.append)
    assert cache.answer("k") is None and res.unfinished == ["building threadpool"]
    assert "run the same command again" in said[0] and "threadpool" in said[0]
    # the rerun built it, but its rounds and the settings were cut at the end of the budget
    res.candidates[1].status, res.stopped, res.settings = "cut", "budget", tune.RunSettings(threads=2, complete=False)
    assert not tune.keep_if_finished(cache, "k", res, settings=True, say=said.append)
    assert res.unfinished == ["the last rounds", "the run-time settings"] and cache.answer("k") is None
    # settings not asked for (--no-settings) are not missing; everything done: kept, and answered again
    res.stopped = "rounds"
    assert tune.keep_if_finished(cache, "k", res, settings=False, say=said.append)
    assert res.unfinished == [] and cache.answer("k").winner == "plain" and len(said) == 2
