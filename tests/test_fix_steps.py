"""fix's speed judgement on its own: a rebuild that is slower than the old build is not installed."""

from __future__ import annotations

import pytest

from builddoctor import errors, fix
from builddoctor.bench import Comparison
from builddoctor.profiles import BenchResult, BuildPlan, BuildResult, Stat


def _run() -> fix._Fix:
    return fix._Fix(machine=None, source=None, rep=fix.FixReport(), say=lambda _m: None)


def _cmp(pp: float, tg: float, *, old_error: str | None = None) -> Comparison:
    old = BenchResult(binary="old/llama-bench", error=old_error)
    new = BenchResult(binary="new/llama-bench", pp=Stat(500.0), tg=Stat(100.0))
    return Comparison(results=[old, new], pp_ratio=[None, Stat(pp, 0.01)], tg_ratio=[None, Stat(tg, 0.01)])


RESULT = BuildResult(status="ok", plan=BuildPlan(goal="native", backend="cpu"), source_dir="/s", build_dir="/c/k")


def test_slower_generation_is_refused_with_not_faster():
    with pytest.raises(errors.UserError) as err:
        fix._judge_speed(_run(), RESULT, _cmp(1.2, fix.SLOWER_BELOW - 0.01), has_old=True)
    assert err.value.exit_code == errors.NOT_FASTER and "slower than the old one (generation:" in str(err.value)


def test_within_the_margin_counts_as_not_slower():
    run = _run()
    fix._judge_speed(run, RESULT, _cmp(fix.SLOWER_BELOW, 1.0), has_old=True)
    assert run.rep.steps == [
        f"bench: new/old prompt processing {fix.SLOWER_BELOW:.2f}x ± 0.01, generation 1.00x ± 0.01"
    ]


def test_an_old_build_that_crashed_gives_the_new_speeds_not_a_ratio():
    run = _run()
    fix._judge_speed(run, RESULT, _cmp(0.1, 0.1, old_error="SIGILL"), has_old=True)
    assert run.rep.steps == [
        "bench: before: crashed (SIGILL); after: prompt processing 500.0 t/s, generation 100.0 t/s"
    ]
