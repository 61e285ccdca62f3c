"""The `build`, `bench`, `fix` and `rollback` commands: dry runs, refusals and exit codes."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from builddoctor import errors
from builddoctor.cli import _register, cli
from builddoctor.source import ensure_source  # the pinned tree, fetched once if missing
from tests.toolpath import only_tools

_register()


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BUILDDOCTOR_BUILD_LOCK", str(tmp_path / "build.lock"))


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _vendor():
    ensure_source()


def test_build_dry_run_prints_the_commands():
    _vendor()
    import shlex

    res = invoke("build", "--dry-run")
    assert res.exit_code == 0, res.output
    # comment lines, then `env -i VAR=... cmake ...` lines to paste into a shell
    lines = [shlex.split(ln) for ln in res.output.strip().splitlines() if not ln.startswith("#")]
    cmds = [ln[ln.index("cmake") :] for ln in lines]
    assert all(ln[:2] == ["env", "-i"] for ln in lines)
    from builddoctor.probe import machine_profile
    from builddoctor.resolve import resolve

    planned = {o.name: o.value for o in resolve(machine_profile()).options}
    assert cmds[0][:2] == ["cmake", "-S"] and "Ninja" in cmds[0]
    assert f"-DGGML_NATIVE={planned['GGML_NATIVE']}" in cmds[0]
    assert " ".join(cmds[1]).endswith("--target llama-cli llama-server llama-bench llama-quantize -j " + cmds[1][-1])


def test_build_with_a_bad_plan_file_is_a_usage_error(tmp_path):
    # refused before the source is looked at: no fetch for a plan that cannot be built
    bad = tmp_path / "plan.json"
    bad.write_text('{"goal": "native"}')
    res = invoke("build", "--plan", str(bad))
    assert res.exit_code == errors.USAGE
    assert "not a builddoctor build plan" in res.output


def test_build_from_a_plan_checks_this_machines_toolchain(tmp_path, monkeypatch):
    """A plan saved where glslc was found (another machine, or before an uninstall) is checked
    against the building machine: without glslc here the build stops before cmake and says so."""
    import json

    _vendor()
    plan_file = tmp_path / "vulkan-plan.json"
    res = invoke("recipe", "--backend", "vulkan", "--save", str(plan_file))
    assert res.exit_code in (0, 1), res.output
    doc = json.loads(plan_file.read_text())
    for p in doc["prerequisites"]:  # as recorded on a machine that had everything
        p["status"], p["found_version"] = "found", p.get("min_version") or "9.9"
    plan_file.write_text(json.dumps(doc))
    tools = only_tools(tmp_path / "tools", ("cc", "c++", "gcc", "g++", "cmake", "ninja", "ccache"))
    monkeypatch.setenv("PATH", str(tools))
    res = invoke("build", "--plan", str(plan_file))
    assert res.exit_code == errors.TOOLCHAIN, res.output
    assert "glslc (not found)" in res.output and "installs nothing by itself" in res.output
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "nothing configured, nothing cached"


def test_rollback_without_backup_explains():
    res = invoke("rollback")
    assert res.exit_code != 0 and "no backup" in res.output


def test_fix_needs_rebuild():
    res = invoke("fix")
    assert res.exit_code == errors.USAGE and "--rebuild" in res.output


def test_bench_with_a_crashing_llama_bench(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    src = folder / "main.c"
    src.write_text("#include <signal.h>\nint main(void){ raise(SIGSEGV); return 0; }\n")
    subprocess.run(["cc", str(src), "-o", str(folder / "llama-bench")], check=True, timeout=60)
    _vendor()
    res = invoke("bench", "--size", "8", "--no-bandwidth", str(folder))
    assert res.exit_code == errors.BENCH_FAILED
    assert "SIGSEGV" in res.output


def test_vulkan_build_names_what_is_missing_and_installs_nothing(tmp_path, monkeypatch):
    """No glslc on PATH: `build --backend vulkan` stops before configuring and names the package."""
    _vendor()
    tools = only_tools(tmp_path / "tools", ("cc", "c++", "gcc", "g++", "cmake", "ninja", "ccache"))
    monkeypatch.setenv("PATH", str(tools))
    res = invoke("build", "--backend", "vulkan")
    assert res.exit_code == errors.TOOLCHAIN, res.output
    assert "glslc (not found)" in res.output and "install glslc" in res.output
    assert "installs nothing by itself" in res.output
    assert "compiles llama.cpp's Vulkan shaders" in res.output  # the reason comes with it
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "nothing configured, nothing cached"
