"""The `scope` of each tune candidate (data/tune_candidates.toml) against the pinned llama.cpp's
CMake: a "cpu" candidate changes only options that ggml-cpu's CMake alone reads, so the rest of
the tree comes from ccache; one the source shows to reach further is not labelled "cpu"."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from builddoctor import tune
from builddoctor.resolve import resolve

ROOT = Path(__file__).resolve().parent.parent
LLAMA = ROOT / "vendor" / "llama.cpp"
FIX = Path(__file__).parent / "fixtures"
PROFILES = ("sapphirerapids-xeon-8488c-aws.txt", "zen4-ryzen9-7950x.txt", "zen3-epyc-vm-debian12.txt")

pytestmark = pytest.mark.usefixtures("pinned_source")  # the network tier: a fresh clone fetches the tree


@functools.cache
def _cmake_files() -> list[tuple[Path, list[str]]]:
    """The pinned tree's CMake files under ggml/ and the top-level one, with their lines."""
    files = [LLAMA / "CMakeLists.txt", *(LLAMA / "ggml").rglob("CMakeLists.txt"), *(LLAMA / "ggml").rglob("*.cmake")]
    return [(f, f.read_text(errors="replace").splitlines()) for f in files]


def _outside_cpu(name: str, backend: str = "cpu") -> list[str]:
    """The lines of the pinned CMake, outside the ``backend``'s folder (ggml-cpu, ggml-cuda), that
    read option ``name`` for more than declaring it: where a change of it would reach another
    target's compile lines."""
    ggml = LLAMA / "ggml"
    cpu_dir = ggml / "src" / f"ggml-{backend}"
    other_backends = [p for p in (ggml / "src").glob("ggml-*") if p.is_dir() and p != cpu_dir]
    if backend != "cpu":  # a GPU plan builds ggml-cpu too
        other_backends = [p for p in other_backends if p.name != "ggml-cpu"]
    word = re.compile(rf"\b{re.escape(name)}\b")
    out = []
    for f, lines in _cmake_files():
        if f.is_relative_to(cpu_dir) or any(f.is_relative_to(b) for b in other_backends):
            continue  # ggml-cpu itself; a GPU backend's folder is not configured for a CPU plan
        for n, line in enumerate(lines, 1):
            code = line.split("#", 1)[0].strip()
            if not word.search(code):
                continue
            if code.startswith(("option(", "message(", "llama_option_depr(")) or code == f"if (NOT DEFINED {name})":
                continue  # a declaration, a debug print, a deprecated alias, a default for when it is unset
            if f == ggml / "CMakeLists.txt" and code == "if (GGML_NATIVE OR NOT GGML_NATIVE_DEFAULT)":
                continue  # sets INS_ENB, the default of the ISA option() lines alone (checked below)
            out.append(f"{f.relative_to(LLAMA)}:{n}: {code}")
    return out


def test_ins_enb_is_only_the_default_of_isa_options():
    uses = [
        line.strip()
        for line in (LLAMA / "ggml" / "CMakeLists.txt").read_text().splitlines()
        if "INS_ENB" in line.split("#", 1)[0]
    ]
    assert uses and all(u.startswith(("option(", "set(INS_ENB", "message(")) for u in uses), uses


def _changes(plan, base) -> tuple[set[str], dict[str, str]]:
    """The option names a candidate's plan sets differently from the plain plan, and its env."""
    mine = {o.name: o.value for o in plan.options}
    theirs = {o.name: o.value for o in base.options}
    return {k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}, dict(plan.env)


def _planned():
    from builddoctor.probe import machine_profile

    for prof in PROFILES:
        machine = machine_profile(cpuinfo=FIX / "cpuinfo" / prof)
        base = resolve(machine, goal="native", backend="cpu", host=True, source=LLAMA)
        for c in tune.plan_candidates(machine, base, host=True, source=LLAMA):
            if c.plan is not None:
                yield prof, c, base


def test_every_candidate_has_a_scope_and_a_reason_when_it_is_wider_than_cpu():
    specs = tune.load_candidates()
    assert {s.scope for s in specs} <= set(tune.SCOPES)
    for s in specs:
        assert s.scope in ("cpu", "gpu") or s.scope_why, s.name  # one backend's library: no reason needed


def test_cpu_scope_candidates_change_only_what_ggml_cpu_alone_reads():
    seen = set()
    for prof, c, base in _planned():
        names, env = _changes(c.plan, base)
        reach = {n: _outside_cpu(n) for n in names}
        narrow = not env and not any(reach.values()) and not any(n.startswith("CMAKE_") for n in names)
        if c.scope == "cpu":
            seen.add(c.name)
            assert narrow, f"{c.name} on {prof}: {env or {n: r for n, r in reach.items() if r}}"
        else:
            # wider than cpu: the source must show why, else it is labelled too wide
            assert not narrow, f"{c.name} on {prof} changes only ggml-cpu's options {sorted(names)}: scope cpu"
    assert "no-avx512" in seen and "explicit" in seen  # the ISA candidates were checked


def test_native_less_amx_is_a_whole_tree_build_and_is_built_after_the_cpu_ones():
    from builddoctor.probe import machine_profile
    from builddoctor.tune.building import build_order

    machine = machine_profile(cpuinfo=FIX / "cpuinfo" / PROFILES[0])
    base = resolve(machine, goal="native", backend="cpu", host=True, source=LLAMA)
    cands = tune.plan_candidates(machine, base, host=True, source=LLAMA)
    by = {c.name: c for c in cands}
    names, _env = _changes(by["native-no-amx"].plan, base)
    assert {"CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"} <= names and by["native-no-amx"].scope == "tree"
    plain = tune.Candidate(name=tune.BASELINE, plan=base, status="planned")
    order = [c.name for c in build_order([*cands, plain])]
    assert order[0] == tune.BASELINE
    assert order.index("no-avx512") < order.index("threadpool") < order.index("native-no-amx")


def test_gpu_scope_candidates_change_only_what_ggml_cuda_alone_reads():
    from builddoctor.probe import machine_profile

    machine = machine_profile(profile=FIX / "machines" / "rtx4090-cuda12.json")
    backend, note = tune.choose_backend(machine, "cuda")
    assert (backend, note) == ("cuda", "")
    base = resolve(machine, goal="native", backend="cuda", host=True, source=LLAMA)
    gpu = [c for c in tune.plan_candidates(machine, base, host=True, source=LLAMA) if c.scope == "gpu"]
    assert {c.name for c in gpu} == {"cuda-mmq", "cuda-cublas", "cuda-no-graphs"}
    for c in gpu:
        assert c.plan is not None, c.reason
        names, env = _changes(c.plan, base)
        assert names and not env, c.name
        assert not {n: _outside_cpu(n, "cuda") for n in names if _outside_cpu(n, "cuda")}, c.name
