"""Build and verify each planned candidate, the plain plan first, within the building share of
the budget: candidates that change only the CPU backend (scope "cpu": the rest of the tree comes
from ccache) go first, whole-tree rebuilds last, and a build whose estimate does not fit is not
started."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor import bench, build, errors, proc
from builddoctor.errors import UserError
from builddoctor.fix import build_error
from builddoctor.tune.budget import BUILD_SHARE, Budget, Estimates
from builddoctor.tune.cache import ResultsCache, machine_key
from builddoctor.tune.values import BASELINE, Candidate, TuneResult

#: build order by scope: what comes from ccache first
SCOPE_ORDER = {"cpu": 0, "gpu": 1, "ggml": 2, "tree": 3}


@dataclass
class Builds:
    """What the building step needs and what it leaves: each built candidate's build and llama-bench."""

    machine: Any
    source: Path
    budget: Budget
    results: ResultsCache
    cache_root: Path | None = None
    estimates: Estimates = field(default_factory=Estimates)
    say: Callable[[str], None] = lambda _m: None
    update: Callable[[], None] = lambda: None
    built: dict[str, tuple[Any, Path]] = field(default_factory=dict)  # name -> (BuildResult, llama-bench)


def build_order(cands: list[Candidate]) -> list[Candidate]:
    """The plain plan first, then by scope (cpu, gpu, ggml, tree), the data's order within a scope."""
    planned = [c for c in cands if c.plan is not None and c.status == "planned"]
    return sorted(planned, key=lambda c: (c.name != BASELINE, SCOPE_ORDER.get(c.scope, 3)))


def build_all(res: TuneResult, b: Builds) -> None:
    """Build and verify every planned candidate that fits; raises for a plain plan that fails."""
    for c in build_order(res.candidates):
        if c.name != BASELINE and not _starts(c, b):
            b.update()
            continue
        _build_one(c, b)
        b.update()


def _starts(c: Candidate, b: Builds) -> bool:
    """Whether a candidate's build is started: its estimate fits in the building share left."""
    scope = c.scope or "tree"
    est = b.estimates.build(scope)
    until = b.budget.at(BUILD_SHARE)
    if b.budget.fits(est, until):
        return True
    left = max(0.0, b.budget.left(until))
    c.status = "skipped"
    c.reason = f"not built: a {scope}-scope build takes about {est:.0f} s, {left:.0f} s of the building half is left"
    return False


def _build_one(c: Candidate, b: Builds) -> None:
    """Build (cut at the budget), verify (cached verdict), and keep its llama-bench."""
    assert c.plan is not None
    b.say(f"build {c.name}: {c.title}")
    c.status = "building"
    b.update()
    until = None if c.name == BASELINE else b.budget.at(BUILD_SHARE)
    limit = max(1.0, min(build.BUILD_TIMEOUT, b.budget.left(until)))
    r = build.build(c.plan, b.source, cache_root=b.cache_root, timeout=limit)
    c.build_status, c.build_s, c.build_key, c.build_dir = r.status, r.duration_s, r.cache_key, r.build_dir
    if r.status == "interrupted":
        raise KeyboardInterrupt
    if r.status not in ("ok", "cached"):
        if c.name == BASELINE:
            err = build_error(r)
            if "time limit" in (r.error or "") and limit < build.BUILD_TIMEOUT:
                err.message += (
                    f"\nThe plain plan's build was stopped at the end of the budget ({limit:.0f} s left): "
                    "run again with a larger --budget (what compiled is in ccache)."
                )
            raise err
        c.status, c.reason = "build-failed", (r.error or r.status).splitlines()[0][:200]
        if "time limit" in (r.error or ""):
            c.status, c.reason = "skipped", f"its build did not finish in what was left of the budget ({limit:.0f} s)"
        return
    b.estimates.built(c.scope or "tree", r.duration_s or 0.0, cached=r.status == "cached")
    lb = bench.find_llama_bench(Path(r.build_dir) / "bin")
    why = _verify(r, lb, b)
    if why:
        if c.name == BASELINE:
            raise UserError(
                f"The plain plan's build does not pass verification: {why}. It is at {r.build_dir}/bin.",
                exit_code=errors.VERIFY_FAILED,
            )
        c.status, c.reason = "crashed", why
        return
    assert lb is not None
    c.status = "built"
    all_variants = any(o.name == "GGML_CPU_ALL_VARIANTS" and o.value.upper() == "ON" for o in c.plan.options)
    c.note = loader_pick(lb) if all_variants else ""
    b.built[c.name] = (r, lb)


def _verify(r, lb: Path | None, b: Builds) -> str:
    """Why the build cannot be measured (the compute probe failed, no llama-bench), or ""."""
    mkey = machine_key(b.machine)
    v = b.results.verdict(r.cache_key, mkey)
    if v is None:
        ver = build.verify(r, b.machine)
        v = {"ok": ver.ok, "message": ver.message}
        b.results.keep_verdict(r.cache_key, mkey, ver.ok, ver.message)
    if not v["ok"]:
        return str(v["message"])
    return "" if lb is not None else "the build has no llama-bench"


def loader_pick(bench_binary: Path) -> str:
    """The CPU variant ggml's loader picks on this machine (its "loaded CPU backend from
    .../libggml-cpu-<variant>.so" line), or "" when it says none."""
    done = proc.run([str(bench_binary), "--list-devices"], timeout=60, extra_env=proc.from_user(proc.DEVICE_ENV))
    m = re.search(r"loaded CPU backend from \S*?ggml-cpu-([A-Za-z0-9_]+)\.(?:so|dll|dylib)", done.output)
    return f"the loader picked the {m.group(1)} variant" if m else ""
