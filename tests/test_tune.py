"""builddoctor.tune: candidates per CPU (recorded profiles), the statistics and the halving on
recorded benchmark results, and the CLI's refusals of bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor import errors, tune
from builddoctor.profiles import BenchResult, Stat
from builddoctor.resolve import resolve

FIX = Path(__file__).parent / "fixtures"


def _machine(name: str):
    from builddoctor.probe import machine_profile

    if name.endswith(".json"):
        return machine_profile(profile=FIX / "machines" / name)
    return machine_profile(cpuinfo=FIX / "cpuinfo" / name)


def _candidates(machine):
    """What tune would try on that machine, were it the one building (host=True)."""
    base = resolve(machine, goal="native", backend="cpu", host=True)
    return base, {c.name: c for c in tune.plan_candidates(machine, base, host=True)}


def _opts(plan) -> dict[str, str]:
    return {o.name: o.value for o in plan.options}


# --------------------------------------------------------------------------- candidates per CPU


def test_amx_host_native_is_known_bad_and_the_amx_free_variants_are_planned():
    base, c = _candidates(_machine("sapphirerapids-xeon-8488c-aws.txt"))
    assert _opts(base)["GGML_NATIVE"] == "OFF"  # the known-bad row spells the plain plan's ISA out
    assert c["native"].status == "known-bad" and "amx" in c["native"].reason.lower() and c["native"].plan is None
    no_amx = _opts(c["native-no-amx"].plan)
    assert c["native-no-amx"].status == "planned" and no_amx["GGML_NATIVE"] == "ON"
    assert "-mno-amx-int8" in no_amx["CMAKE_C_FLAGS"] and "-mno-amx-tile" in no_amx["CMAKE_CXX_FLAGS"]
    assert _opts(c["no-avx512"].plan)["GGML_AVX512"] == "OFF"
    assert c["explicit"].status == "not-applicable"  # the plain plan is explicit already
    for cand in c.values():
        if cand.plan is not None:
            opts = _opts(cand.plan)
            assert not any(opts.get(f"GGML_AMX_{k}") == "ON" for k in ("TILE", "INT8", "BF16")), cand.name


def test_zen4_native_is_the_plain_plan_and_explicit_and_no_avx512_are_tried():
    base, c = _candidates(_machine("zen4-ryzen9-7950x.txt"))
    assert _opts(base)["GGML_NATIVE"] == "ON"
    assert c["native"].status == "same" and "plain" in c["native"].reason
    explicit = _opts(c["explicit"].plan)
    assert explicit["GGML_NATIVE"] == "OFF" and explicit["GGML_AVX512"] == "ON" and explicit["GGML_AVX512_BF16"] == "ON"
    assert _opts(c["no-avx512"].plan)["GGML_AVX512"] == "OFF"
    assert c["native-no-amx"].status == "not-applicable"


def test_zen3_and_alder_lake_have_no_avx512_candidate():
    for name, vnni in (("zen3-epyc-vm-debian12.txt", "OFF"), ("alderlake-i9-12900k.txt", "ON")):
        _, c = _candidates(_machine(name))
        assert c["no-avx512"].status == "not-applicable", name
        explicit = _opts(c["explicit"].plan)
        assert explicit["GGML_AVX2"] == "ON" and explicit["GGML_AVX512"] == "OFF", name
        assert explicit["GGML_AVX_VNNI"] == vnni, name


def test_apple_m_series_tries_no_x86_candidates_nor_a_threadpool_it_already_has():
    _, c = _candidates(_machine("mac-m2-pro.json"))
    for name in ("native-no-amx", "explicit", "no-avx512", "all-variants", "threadpool"):
        assert c[name].status == "not-applicable", name
    assert c["native"].status == "same" and c["lto"].status == "planned"


def test_graviton_gets_the_all_variants_build():
    _, c = _candidates(_machine("graviton3-neoverse-v1-aws.txt"))
    assert c["no-avx512"].status == c["explicit"].status == "not-applicable"
    assert _opts(c["all-variants"].plan)["GGML_CPU_ALL_VARIANTS"] == "ON"


def test_planned_candidates_are_all_different_builds():
    for name in ("sapphirerapids-xeon-8488c-aws.txt", "zen4-epyc-9r14-aws.txt", "rtx4090-cuda12.json"):
        base, c = _candidates(_machine(name))
        sigs = [tune.signature(base)] + [tune.signature(x.plan) for x in c.values() if x.plan is not None]
        assert len(sigs) == len(set(sigs)) > 2, name


def test_a_missing_compiler_is_named_with_its_install_command_and_a_present_one_is_tried():
    m = _machine("this-machine.json")
    m.toolchains.pop("clang", None)
    m.toolchains.pop("clang++", None)
    _, c = _candidates(m)
    assert c["clang"].status == "not-applicable" and "apt install clang" in c["clang"].reason
    from builddoctor.profiles import ToolInfo

    for t in ("clang", "clang++"):
        m.toolchains[t] = ToolInfo(name=t, found=True, path=f"/usr/bin/{t}", version="16.0.6")
    _, c = _candidates(m)
    assert c["clang"].status == "planned" and c["clang"].plan.env["CC"] == "clang"


def test_only_and_unknown_candidate_names():
    m = _machine("zen4-epyc-9r14-aws.txt")
    base = resolve(m, goal="native", backend="cpu", host=True)
    assert [c.name for c in tune.plan_candidates(m, base, only=["lto"])] == ["lto"]
    with pytest.raises(errors.UserError) as exc:
        tune.plan_candidates(m, base, only=["turbo"])
    assert exc.value.exit_code == errors.USAGE and "turbo" in exc.value.message and "lto" in exc.value.message


def test_bad_candidates_file_is_named(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[[candidate]]\nname = "x"\nspeed = "fast"\n')
    with pytest.raises(errors.UserError) as exc:
        tune.load_candidates(f)
    assert str(f) in exc.value.message and "speed" in exc.value.message
    f.write_text('[[candidate]]\nname = "x"\nwhen = { any = [{ cpu_speed = "high" }] }\n')
    with pytest.raises(errors.UserError) as exc:
        tune.load_candidates(f)
    assert "cpu_speed" in exc.value.message


# --------------------------------------------------------------------------- statistics and halving


def _runs(name: str, pp: list[float], tg: list[float], error_at: int | None = None) -> list[BenchResult]:
    out = []
    for i, (p, t) in enumerate(zip(pp, tg, strict=True)):
        r = BenchResult(binary=f"/b/{name}/llama-bench", pp=Stat(p, 1.0, 2), tg=Stat(t, 0.5, 2))
        if i == error_at:
            r.pp = r.tg = None
            r.error = "llama-bench died from SIGSEGV (a crash)"
        out.append(r)
    return out


def _cands(*names):
    return [tune.Candidate(name=n) for n in names]


def test_a_clear_gain_wins_and_its_interval_is_students():
    cands = _cands("plain", "fast")
    runs = {
        "plain": _runs("plain", [500, 510, 490], [100, 102, 98]),
        "fast": _runs("fast", [500, 510, 490], [110, 112.2, 107.8]),
    }
    tune.summarize(cands, runs, "generation")
    fast = cands[1]
    assert fast.tg_ratio.n == 3 and fast.tg_ratio.mean == pytest.approx(1.1)
    assert fast.pp_ratio.mean == pytest.approx(1.0)
    lo, hi = tune.interval(fast.score)
    assert lo == pytest.approx(1.1 - 4.30 * fast.score.stddev / math.sqrt(3))
    assert lo > 1.0 and hi > lo
    assert tune.choose_winner(cands)[0] == "fast"
    # the same runs judged by prompt speed: no gain, the plain plan stays
    tune.summarize(cands, runs, "prompt")
    name, why = tune.choose_winner(cands)
    assert name == "plain" and "no candidate" in why


def test_a_gain_within_noise_or_from_one_round_does_not_win():
    cands = _cands("plain", "noisy")
    runs = {"plain": _runs("plain", [500] * 3, [100, 100, 100]), "noisy": _runs("noisy", [500] * 3, [120, 90, 105])}
    tune.summarize(cands, runs, "generation")
    assert cands[1].score.mean > 1.0 and cands[1].low < 1.0
    name, why = tune.choose_winner(cands)
    assert name == "plain" and "within noise" in why and "noisy" in why
    one = {"plain": runs["plain"][:1], "noisy": _runs("noisy", [500], [150])}
    tune.summarize(cands, one, "generation")
    assert cands[1].score.mean == pytest.approx(1.5) and cands[1].low is None
    assert tune.choose_winner(cands)[0] == "plain"


def test_a_crashed_round_is_left_out_of_the_pairs():
    cands = _cands("plain", "flaky")
    runs = {"plain": _runs("plain", [500] * 3, [100] * 3), "flaky": _runs("flaky", [600] * 3, [120] * 3, error_at=1)}
    tune.summarize(cands, runs, "prompt")
    assert cands[1].rounds == 2 and cands[1].pp_ratio.n == 2 and cands[1].pp_ratio.mean == pytest.approx(1.2)


def test_balanced_is_the_geometric_mean_with_its_spread():
    s = tune.objective_ratio(Stat(1.44, 0.0, 3), Stat(1.0, 0.0, 3), "balanced")
    assert s.mean == pytest.approx(1.2) and s.stddev == 0.0 and s.n == 3
    s = tune.objective_ratio(Stat(1.0, 0.1, 3), Stat(1.0, 0.1, 4), "balanced")
    assert s.stddev == pytest.approx(0.5 * math.sqrt(0.02)) and s.n == 3
    assert tune.objective_ratio(None, Stat(1.0), "balanced") is None


def test_halving_keeps_the_faster_half_rounded_up():
    cands = _cands("plain", "a", "b", "c", "d", "e")
    tg = {"a": 101, "b": 130, "c": 90, "d": 115, "e": 99}
    runs = {"plain": _runs("plain", [500], [100])}
    runs.update({n: _runs(n, [500], [v]) for n, v in tg.items()})
    tune.summarize(cands, runs, "generation")
    kept, cut = tune.halve(cands[1:])
    assert [c.name for c in kept] == ["b", "d", "a"] and {c.name for c in cut} == {"e", "c"}
    assert [c.name for c in tune.halve(kept[:1])[0]] == ["b"]


def test_results_cache_round_trip_and_a_damaged_file(tmp_path):
    cache = tune.ResultsCache(tmp_path)
    runs = _runs("x", [500, 510], [100, 101])
    cache.save("key1", "ab" * 32, {"reps": 2}, runs)
    assert cache.load("key1", "ab" * 32, {"reps": 2}) == runs
    assert cache.load("key1", "cd" * 32, {"reps": 2}) == []  # another model
    assert cache.load("key1", "ab" * 32, {"reps": 3}) == []  # other settings
    next(tmp_path.glob("key1-*.json")).write_text("{ not json")
    assert cache.load("key1", "ab" * 32, {"reps": 2}) == []


def test_parse_budget():
    assert tune.parse_budget("20m") == 1200 and tune.parse_budget("1h30m") == 5400
    assert tune.parse_budget("90s") == 90 and tune.parse_budget("600") == 600
    for bad in ("soon", "20x", "5s", "m"):
        with pytest.raises(errors.UserError) as exc:
            tune.parse_budget(bad)
        assert exc.value.exit_code == errors.USAGE


def test_installed_settings_are_read_beside_the_installed_build(tmp_path):
    from builddoctor import run_settings

    assert tune.installed_settings(tmp_path) is None
    folder = tmp_path / "installs" / "abc"
    (folder / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to(Path("installs") / "abc" / "bin")
    saved = run_settings.SavedSettings(
        values={"threads": "2", "flash_attn": "on"},
        physical_cores=2,
        logical_cpus=2,
        flags=["-t", "2", "-fa", "on"],
        winner="lto",
        objective="prompt",
    )
    f = run_settings.save(saved, tmp_path)
    assert f == folder / "run-settings.json"
    got = tune.installed_settings(tmp_path)
    assert got["winner"] == "lto" and got["server"][-2:] == ["-fa", "on"] and got["objective"] == "prompt"
    f.write_text('{"values": 3}')
    assert tune.installed_settings(tmp_path) is None
    f.write_text("not json")
    assert tune.installed_settings(tmp_path) is None


# --------------------------------------------------------------------------- the CLI refuses bad input


def _invoke(*args):
    from builddoctor.cli import _register, cli

    _register()
    return CliRunner().invoke(cli, ["tune", *args])


def test_cli_bad_budget_model_and_candidate(tmp_path):
    res = _invoke("--budget", "forever")
    assert res.exit_code == errors.USAGE and "not a duration" in res.output
    res = _invoke("--model", str(tmp_path / "none.gguf"))
    assert res.exit_code == errors.USAGE and "no such file" in res.output
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 not a model")
    res = _invoke("--model", str(junk))
    assert res.exit_code == errors.USAGE and "not a GGUF file" in res.output


# --------------------------------------------------------------------------- end to end (slow)


class _CountingCache(tune.ResultsCache):
    """The real results cache, counting the runs it is given (each one a llama-bench run made)."""

    saves = 0

    def save(self, *args, **kwargs):
        self.saves += 1
        super().save(*args, **kwargs)


@pytest.mark.slow
def test_tune_end_to_end_interrupted_resumed_then_cached(tmp_path, monkeypatch):
    from builddoctor import run_settings, smoke_model
    from builddoctor.probe import machine_profile
    from builddoctor.source import ensure_source

    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    machine = machine_profile()
    source = ensure_source()
    base = resolve(machine, goal="native", backend="cpu", host=True)
    planned = [c.name for c in tune.plan_candidates(machine, base, source=source) if c.plan is not None]
    pick = next((n for n in ("no-avx512", "threadpool", "lto", *planned) if n in planned), None)
    if pick is None:
        pytest.skip("no candidate applies on this machine")
    model = smoke_model.ensure_model(20_000_000)
    results = _CountingCache(tmp_path / "results")
    kw = dict(
        source=source,
        objective="generation",
        budget_s=1800,
        model=model,
        only=[pick],
        targets=["llama-bench"],
        results=results,
        max_rounds=3,
        reps=1,
    )

    # 1. Ctrl-C after the first round (the plain plan's run and the candidate's)
    fired = []

    def interrupt(res):
        if results.saves >= 2 and not fired:
            fired.append(True)
            raise KeyboardInterrupt

    try:
        first = tune.tune(machine, install=False, settings=False, on_update=interrupt, **kw)
    except errors.UserError as exc:
        if exc.exit_code == errors.TOOLCHAIN:
            pytest.skip(exc.message)
        raise
    assert fired and first.interrupted and first.stopped == "interrupted" and not first.installed
    by = {c.name: c for c in first.candidates}
    assert by["plain"].rounds == 1 and by[pick].build_s is not None
    assert results.saves == 2

    # 2. the same inputs again: the builds come from the cache, the measuring continues where it stopped
    results.saves = 0
    second = tune.tune(machine, install=False, settings=False, **kw)
    by = {c.name: c for c in second.candidates}
    assert not second.interrupted and by["plain"].build_status == by[pick].build_status == "cached"
    if by[pick].status == "crashed":
        assert by[pick].reason
    else:
        assert by["plain"].rounds == by[pick].rounds == 3 and results.saves == 4
        assert by[pick].tg_ratio is not None and by[pick].tg_ratio.n == 3
    assert tune.choose_winner([c for c in second.candidates if c.status in ("measured", "winner")])[0] == second.winner
    winner = by[second.winner]
    assert winner.status == "winner" and (second.winner == "plain" or winner.low > 1.0)

    # 3. once more with install and run-time settings: no benchmark round is run again
    results.saves = 0
    third = tune.tune(machine, install=True, settings=True, **kw)
    s = third.settings
    assert s is not None and results.saves == len(s.tried) and s.threads in range(1, (machine.cpu.threads or 1) + 1)
    assert s.server[:1] == ["llama-server"] and "-t" in s.server
    assert (Path(third.installed) / "llama-bench").exists()
    saved = run_settings.SavedSettings.from_json(Path(third.settings_file).read_text())
    assert saved.winner == third.winner and saved.values == s.values and saved.flags == s.flags
    assert Path(third.settings_file).parent == (tmp_path / "home" / "bin").resolve().parent
    assert tune.installed_settings()["flags"] == s.flags  # what `which` shows

    # 4. and again: everything from the caches
    results.saves = 0
    fourth = tune.tune(machine, install=False, settings=True, **kw)
    assert results.saves == 0 and fourth.winner == third.winner and fourth.settings == s


def test_final_table_is_sorted_by_the_objective_with_bars_and_the_progress_line():
    from builddoctor.cli.tune_cmd import progress_line, table_lines

    def cand(name, score, status="measured"):
        c = tune.Candidate(name=name, status=status, build_s=30.0, build_status="ok")
        if score is not None:
            c.score = Stat(score, 0.01, 3)
            c.low, c.high = score - 0.02, score + 0.02
            c.pp = c.tg = Stat(100.0 * score, 1.0, 3)
        return c

    res = tune.TuneResult(objective="generation", budget_s=1200, elapsed_s=300, phase="measuring", runs_done=7)
    res.candidates = [
        cand("plain", None, "winner"),
        cand("slow", 0.80),
        cand("fast", 1.10),
        cand("broken", None, "crashed"),
    ]
    res.candidates[0].pp = res.candidates[0].tg = Stat(100.0, 1.0, 3)
    lines = "\n".join(table_lines(res, final=True, bars=True)).splitlines()
    order = [ln.split()[0] for ln in lines[1:] if ln and not ln.startswith(" ")]
    assert order == ["fast", "plain", "slow", "broken"]
    bars = [ln.count("#") for ln in lines if ln.strip().startswith("#")]
    assert bars == sorted(bars, reverse=True) and len(bars) == 3  # one per measured row, longest first
    p = progress_line(res)
    assert "measuring" in p and "5m00s of 20m00s" in p and "7 runs" in p and "ETA at most 15m00s" in p


def test_loader_pick_is_read_from_ggmls_load_line(tmp_path):
    """The line ggml-backend-reg.cpp prints ("%s: loaded %s backend from %s") names the variant."""
    exe = tmp_path / "llama-bench"
    exe.write_text(
        "#!/bin/sh\necho 'load_backend: loaded CPU backend from /x/bin/libggml-cpu-icelake.so' >&2\n"
        "echo 'Available devices:'\n"
    )
    exe.chmod(0o755)
    assert tune.loader_pick(exe) == "the loader picked the icelake variant"
    exe.write_text("#!/bin/sh\necho 'Available devices:'\n")
    assert tune.loader_pick(exe) == ""


def test_a_finished_tune_is_answered_again_for_the_same_inputs_only(tmp_path):
    machine = _machine("sapphirerapids-xeon-8488c-aws.txt")
    base, planned = _candidates(machine)
    cands = [tune.Candidate(name="plain", plan=base), *planned.values()]
    key = tune.answer_key(
        machine,
        Path("/src"),
        cands,
        budget_s=1200,
        objective="generation",
        max_rounds=5,
        reps=2,
        model=None,
        model_bytes=None,
        settings=True,
    )
    assert key == tune.answer_key(
        machine,
        Path("/src"),
        cands,
        budget_s=1200,
        objective="generation",
        max_rounds=5,
        reps=2,
        model=None,
        model_bytes=None,
        settings=True,
    )
    assert key != tune.answer_key(
        machine,
        Path("/src"),
        cands,
        budget_s=1800,
        objective="generation",
        max_rounds=5,
        reps=2,
        model=None,
        model_bytes=None,
        settings=True,
    )
    assert key != tune.answer_key(
        machine,
        Path("/src"),
        cands[:2],
        budget_s=1200,
        objective="generation",
        max_rounds=5,
        reps=2,
        model=None,
        model_bytes=None,
        settings=True,
    )
    cache = tune.ResultsCache(tmp_path)
    assert cache.answer(key) is None
    cache.keep_answer(key, tune.TuneResult(objective="generation", candidates=cands, winner="plain", stopped="budget"))
    got = cache.answer(key)
    assert got.winner == "plain" and got.candidates[0].plan == base
    (tmp_path / f"answer-{key}.json").write_text("{")
    assert cache.answer(key) is None  # damaged: asked anew
