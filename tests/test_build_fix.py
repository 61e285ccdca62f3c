"""`builddoctor fix --rebuild` end to end on the deliberately bad test builds (slow)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor import errors
from builddoctor.cli import _register, cli
from builddoctor.profiles import BuildPlan, PlanOption

_register()
pytestmark = pytest.mark.slow


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() if not p.is_symlink() else "->" + str(p.readlink())
        for p in sorted(folder.iterdir())
    }


@pytest.fixture
def sse_copy(tmp_path):
    from tests.llama_builds import BuildUnavailable, ensure_build

    try:
        bin_dir = ensure_build("sse")
    except BuildUnavailable as exc:
        pytest.skip(str(exc))
    copy = tmp_path / "sse"
    shutil.copytree(bin_dir.parent / "bin", copy / "bin", symlinks=True)
    shutil.copy2(bin_dir.parent / "CMakeCache.txt", copy / "CMakeCache.txt")
    return copy / "bin"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_fix_dry_run_changes_nothing(sse_copy, home):
    before = _tree(sse_copy)
    res = invoke("fix", "--rebuild", "--dry-run", "--replace", str(sse_copy))
    assert res.exit_code == 0, res.output
    from builddoctor.probe import machine_profile
    from builddoctor.resolve import resolve

    native = {o.name: o.value for o in resolve(machine_profile()).options}["GGML_NATIVE"]
    assert "would build: cmake -S" in res.output and f"-DGGML_NATIVE={native}" in res.output
    assert "would verify:" in res.output and "would bench:" in res.output and "would install: back up" in res.output
    assert _tree(sse_copy) == before and not home.exists()


def test_fix_with_a_failing_build_leaves_the_old_binaries(sse_copy, home, tmp_path):
    before = _tree(sse_copy)
    plan = BuildPlan(
        goal="native",
        backend="cpu",
        targets=["llama-bench"],
        options=[
            PlanOption("GGML_NATIVE", "ON", "t", "t"),
            PlanOption("CMAKE_C_FLAGS_RELEASE", "-O3 -mbuilddoctor-no-such-option", "t", "t"),
        ],
    )
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    res = invoke("fix", "--rebuild", "--replace", "--yes", "--plan", str(plan_file), str(sse_copy))
    assert res.exit_code == errors.BUILD_FAILED, res.output
    assert "builddoctor-no-such-option" in res.output and "Full log:" in res.output
    assert "old binaries are untouched" in res.output
    assert _tree(sse_copy) == before


def test_fix_replace_then_rollback(sse_copy, home):
    before = _tree(sse_copy)
    res = invoke("fix", "--rebuild", "--replace", "--yes", "--rounds", "1", str(sse_copy))
    if res.exit_code == errors.VERIFY_FAILED:
        pytest.fail("verification failed: " + res.output)
    assert res.exit_code == 0, res.output
    assert "fixed" in res.output and "builddoctor rollback" in res.output
    assert _tree(sse_copy) != before
    res = invoke("check", str(sse_copy))
    assert res.exit_code == 0, res.output
    res = invoke("rollback")
    assert res.exit_code == 0, res.output
    after = _tree(sse_copy)
    assert after == before


def _amx_rows():
    from builddoctor import known_bad
    from builddoctor.probe import machine_profile
    from builddoctor.source import load_pin

    return known_bad.applying(machine_profile().cpu.features, load_pin().llama_version)


@pytest.fixture
def native_copy(tmp_path):
    from tests.llama_builds import ensure_build

    if not _amx_rows():
        pytest.skip(
            "no known-bad row applies to the pinned llama.cpp on this CPU (no AMX): "
            "its plain GGML_NATIVE=ON build computes here, there is no crash to fix"
        )
    bin_dir = ensure_build("native")
    copy = tmp_path / "native"
    shutil.copytree(bin_dir, copy / "bin", symlinks=True)
    shutil.copy2(bin_dir.parent / "CMakeCache.txt", copy / "CMakeCache.txt")
    return copy / "bin"


def test_fix_rebuilds_a_build_that_crashes_when_it_computes(native_copy, home):
    """AMX host: the plain native build dies in the compute probe; fix --rebuild ends with an
    installed build that computes, and says so with before ("crashed") and after figures."""
    res = invoke("check", str(native_copy))
    assert res.exit_code == errors.PROBLEMS and "a real inference died with SIG" in res.output, res.output
    before = _tree(native_copy)
    res = invoke("fix", "--rebuild", "--replace", "--yes", "--rounds", "1", str(native_copy))
    assert res.exit_code == 0, res.output
    assert "bench: before: crashed (llama-bench died from SIG" in res.output, res.output
    assert re.search(r"after: prompt processing [\d.]+ t/s, generation [\d.]+ t/s", res.output), res.output
    res = invoke("check", str(native_copy))
    assert res.exit_code == 0 and "a real inference ran" in res.output, res.output
    assert invoke("rollback").exit_code == 0
    assert _tree(native_copy) == before


def test_fix_replans_once_when_a_given_plan_crashes(sse_copy, home, tmp_path):
    """AMX host: a plan that compiles AMX in (given with --plan) crashes in verification; the crash
    matches the known-bad row, so fix plans again without AMX, once, and says what it changed."""
    if not _amx_rows():
        pytest.skip("no known-bad row applies to the pinned llama.cpp on this CPU (no AMX)")
    plan = BuildPlan(
        goal="native",
        backend="cpu",
        targets=["llama-bench"],
        options=[PlanOption("CMAKE_BUILD_TYPE", "Release", "t", "t"), PlanOption("GGML_NATIVE", "ON", "t", "t")],
    )
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    res = invoke("fix", "--rebuild", "--plan", str(plan_file), "--rounds", "1", str(sse_copy))
    assert res.exit_code == 0, res.output
    assert "replan: the new build crashed in its compute probe" in res.output
    assert "amx-mul-mat-crash" in res.output and "AMX_INT8" in res.output
    assert "-DGGML_AMX_INT8=OFF" in res.output
