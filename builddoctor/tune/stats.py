"""The statistics of a tune, pure functions of recorded runs: speeds, ratios to the plain plan
over paired rounds, 95 % intervals, the halving and the winner."""

from __future__ import annotations

import math

from builddoctor import bench
from builddoctor.profiles import BenchResult, Stat
from builddoctor.tune.values import BASELINE, Candidate

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
