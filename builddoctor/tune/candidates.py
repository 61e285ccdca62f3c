"""The candidates of ``data/tune_candidates.toml`` whose condition holds here, each a plan derived
from the plain one (same plans merged, known-bad ones named and left out)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from builddoctor import errors, known_bad
from builddoctor.errors import UserError
from builddoctor.findings import catalogue
from builddoctor.llama_options import isa_table
from builddoctor.profiles import BuildPlan, PlanOption
from builddoctor.recipe_schema import CONDITION_KEYS
from builddoctor.recipes import Context, cpu_features, evaluate
from builddoctor.resolve import resolve, source_version
from builddoctor.tomlload import load_toml
from builddoctor.tune.values import BASELINE, CANDIDATES_FILE, SCOPES, Candidate, CandidateSpec


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
        if raw.get("scope", "tree") not in SCOPES:
            raise UserError(
                f"{where} ({raw['name']}): scope '{raw['scope']}' is not one of {', '.join(SCOPES)}.",
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
    specs = _chosen(load_candidates() if specs is None else specs, only)
    rows = known_bad.applying(cpu_features(machine), version or source_version(source))
    avoided = frozenset(f for r in rows for f in r.avoid)
    ctx = Context(machine, goal=baseline.goal, backend=baseline.backend, host=host, avoided=avoided)
    seen = {signature(baseline): BASELINE}
    out = []
    for s in specs:
        c = Candidate(name=s.name, title=s.title, why=s.why, scope=s.scope)
        out.append(c)
        c.status, c.reason = _applies(s, ctx, host)
        if c.status:
            continue
        plan = derive_plan(s, machine, baseline, source=source, host=host)
        c.status, c.reason = _known_bad(plan, machine, rows, avoided)
        if c.status:
            continue
        sig = signature(plan)
        if sig in seen:
            c.status, c.reason = "same", f"the same build as {seen[sig]}"
            continue
        c.status = "planned"
        seen[sig] = s.name
        c.plan = plan
    return out


def _chosen(specs: list[CandidateSpec], only: list[str] | None) -> list[CandidateSpec]:
    """The specs ``--candidates`` names (all without it); an unknown name is a usage error."""
    if not only:
        return specs
    unknown = sorted(set(only) - {s.name for s in specs})
    if unknown:
        raise errors.InputError(
            f"Unknown candidate(s) {', '.join(unknown)}; known: {', '.join(s.name for s in specs)}."
        )
    return [s for s in specs if s.name in only]


def _applies(s: CandidateSpec, ctx: Context, host: bool) -> tuple[str, str]:
    """("", "") when the candidate's condition holds here, else ("not-applicable", why)."""
    ok, key = evaluate(s.when, ctx)
    if not ok:
        return "not-applicable", s.unmet.get(key or "", f"its condition '{key}' does not hold on this machine")
    if s.native and not host:
        return "not-applicable", "-march=native would compile the building machine's CPU, not this one"
    return "", ""


def derive_plan(s: CandidateSpec, machine, baseline: BuildPlan, *, source: Path | None, host: bool) -> BuildPlan:
    """The candidate's plan: resolved again (another goal, the ISA spelled out, features avoided)
    or the plain plan, with its native, set and env changes on top."""
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
    return plan


def _known_bad(plan: BuildPlan, machine, rows, avoided: frozenset[str]) -> tuple[str, str]:
    """("known-bad", the row) when the plan's CPU code holds a feature a known-bad row takes away."""
    bad = sorted(code_features(plan, machine) & avoided & cpu_features(machine))
    if not bad:
        return "", ""
    row = next(r for r in rows if set(r.avoid) & set(bad))
    return "known-bad", f"its CPU code would hold {', '.join(bad)}: known-bad row {row.id} ({row.short or row.title})"
