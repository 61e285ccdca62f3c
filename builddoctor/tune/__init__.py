"""`builddoctor tune`: build candidate variants of the plan, measure them against it, keep the fastest.

Static feature scores pick the wrong CPU variant on some hosts (FACTS.md: explicit AVX-512 beats
-march=native for generation on the AMX Xeon); only measurement says. The stages:

- ``plan_candidates``: the candidates of ``data/tune_candidates.toml`` whose condition holds here,
  each a plan derived from the plain one (same plans merged, known-bad ones named and left out).
- ``building``: build (``build.build``: cache, ccache) and verify (``build.verify``: the compute
  probe) each one, the plain plan first, then by scope (what comes from ccache first).
- ``measure`` (``halving``): successive halving against the plain plan, interleaved, every run kept in a results cache keyed by build and model, so an interrupted or repeated tune
  resumes where it stopped.
- ``summarize`` / ``halve`` / ``choose_winner``: the statistics, pure functions of recorded runs.
  A candidate wins only when its ratio's 95 % interval lies above 1.0; else the plain plan does.
- ``runtime_settings``: threads and flash attention on the winner, as a recommended command line.
- ``budget``: the budget is a hard bound; no build or run starts when its estimate does not fit.

The package's modules, one per step: ``values`` (the dataclasses), ``candidates``, ``stats``,
``cache``, ``building``, ``halving``, ``settings``, ``budget`` and ``session`` (the whole tune). ``from builddoctor import
tune; tune.tune(...)`` and the names below keep working.
"""

from builddoctor.run_settings import installed_settings
from builddoctor.tune.building import loader_pick
from builddoctor.tune.cache import ResultsCache, answer_key, machine_key
from builddoctor.tune.candidates import code_features, load_candidates, plan_candidates, signature
from builddoctor.tune.halving import Entry, measure
from builddoctor.tune.session import choose_backend, keep_if_finished, parse_budget, sort_key, tune, unfinished
from builddoctor.tune.settings import Setting, runtime_settings
from builddoctor.tune.stats import choose_winner, halve, interval, objective_ratio, summarize
from builddoctor.tune.values import (
    BACKENDS,
    BASELINE,
    CANDIDATES_FILE,
    OBJECTIVES,
    SCHEMA,
    SCOPES,
    SETTINGS_SHARE,
    Candidate,
    CandidateSpec,
    RunSettings,
    TuneResult,
)

__all__ = [
    "BACKENDS",
    "BASELINE",
    "CANDIDATES_FILE",
    "OBJECTIVES",
    "SCHEMA",
    "SCOPES",
    "SETTINGS_SHARE",
    "Candidate",
    "CandidateSpec",
    "Entry",
    "ResultsCache",
    "RunSettings",
    "Setting",
    "TuneResult",
    "answer_key",
    "choose_backend",
    "choose_winner",
    "code_features",
    "halve",
    "installed_settings",
    "interval",
    "keep_if_finished",
    "load_candidates",
    "loader_pick",
    "machine_key",
    "measure",
    "objective_ratio",
    "parse_budget",
    "plan_candidates",
    "runtime_settings",
    "signature",
    "sort_key",
    "summarize",
    "tune",
    "unfinished",
]
