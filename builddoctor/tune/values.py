"""The values a tune carries between its steps: candidates as far as they got, the run-time
settings, the whole result (JSON-serializable, so a cached answer is read back whole)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from builddoctor import paths
from builddoctor.profiles import BuildPlan, Serializable, Stat

CANDIDATES_FILE = paths.DATA_DIR / "tune_candidates.toml"
BASELINE = "plain"
OBJECTIVES = ("generation", "prompt", "balanced")
#: what a candidate's build recompiles (data/tune_candidates.toml's header)
SCOPES = ("cpu", "gpu", "ggml", "tree")
#: what `tune --backend` takes: a GPU one needs a GPU of that API in the machine profile
BACKENDS = ("cpu", "cuda", "hip", "vulkan", "metal", "sycl")
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
    scope: str = "tree"  # cpu, gpu, ggml or tree: what the change recompiles (the data file's header)
    scope_why: str = ""


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
    scope: str = ""  # cpu, ggml or tree: what its build recompiles (CandidateSpec.scope); "" the plain plan


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
    backend: str = "cpu"  # the backend tuned
    backend_note: str = ""  # why it is not the one asked for (no such GPU here)
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
    # what the budget left undone (candidates not built, rounds, settings): such a tune is not kept as
    # the answer, so that a rerun continues it from the cached builds and runs
    unfinished: list[str] = field(default_factory=list)
    settings: RunSettings | None = None
    installed: str = ""  # bin folder of the installed winner
    backup: str | None = None
    settings_file: str = ""
