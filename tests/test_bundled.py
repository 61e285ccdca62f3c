"""The bundled llama.cpp: planning it at build time (builddoctor._buildplan), finding it
(builddoctor.bundled) and the `which` / `run` commands. The compiled bundle itself is built
in tests/test_wheel.py (slow)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor import _buildplan, bundled, errors, proc
from builddoctor.cli import _register, cli
from builddoctor.cmake_bool import same_value
from builddoctor.profiles import BuildPlan, MachineProfile
from builddoctor.resolve import resolve

REPO = Path(__file__).resolve().parent.parent
MACHINES = REPO / "tests" / "fixtures" / "machines"
CMAKE = shutil.which("cmake")

_register()


def _machine(name: str) -> MachineProfile:
    return MachineProfile.from_json((MACHINES / name).read_text())


# --------------------------------------------------------------------------- planning


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("ON", "on", True),
        ("ON", "TRUE", True),
        ("1", "YES", True),
        ("OFF", "0", True),
        ("OFF", "FALSE", True),
        ("ON", "OFF", False),
        ("86;89", "86;89", True),
        ("86", "89", False),
        ("Release", "release", False),
    ],
)
def test_same_value_reads_like_cmake(a, b, same):
    assert same_value(a, b) is same


def test_cmake_args_names():
    text = '-DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES:STRING="86;89" -D GGML_BLAS=ON -G Ninja -Wno-dev'
    assert _buildplan.cmake_args_names(text) == {"GGML_NATIVE", "CMAKE_CUDA_ARCHITECTURES", "GGML_BLAS"}


def test_overrides_replace_planned_values_and_extend_the_plan():
    plan = resolve(_machine("zen3-desktop.json"), host=True)  # what `pip install .` plans on that machine
    native = next(o for o in plan.options if o.name == "GGML_NATIVE")
    assert native.value == "ON"
    given = {
        "GGML_NATIVE": ("UNINITIALIZED", "OFF"),  # from CMAKE_ARGS: an override
        "GGML_OPENMP": ("BOOL", "TRUE"),  # same as the plan's ON: not an override
        "GGML_BLAS": ("BOOL", "ON"),  # not in the plan: an extension
        "CMAKE_C_COMPILER": ("FILEPATH", "/usr/bin/cc"),  # CMake's own: ignored
    }
    effective, overrides = _buildplan.apply_overrides(plan, given, "-DGGML_NATIVE=OFF")
    eff = {o.name: o for o in effective}
    assert eff["GGML_NATIVE"].value == "OFF" and eff["GGML_NATIVE"].recipe == "user"
    assert "CMAKE_ARGS" in eff["GGML_NATIVE"].reason and "the plan had ON" in eff["GGML_NATIVE"].reason
    assert eff["GGML_OPENMP"].recipe != "user"
    assert eff["GGML_BLAS"].value == "ON" and eff["GGML_BLAS"].recipe == "user"
    assert "CMAKE_C_COMPILER" not in eff
    by_name = {o.name: o for o in overrides}
    assert set(by_name) == {"GGML_NATIVE", "GGML_BLAS"}
    assert by_name["GGML_NATIVE"].planned == "ON" and by_name["GGML_NATIVE"].source == "CMAKE_ARGS"
    assert by_name["GGML_BLAS"].planned is None and "config settings" in by_name["GGML_BLAS"].source


def _fake_llama_tree(root: Path) -> Path:
    """The three files that make a folder a llama.cpp tree for builddoctor.source (no build needed)."""
    (root / "ggml").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "CMakeLists.txt").write_text("project(llama.cpp)\n")
    (root / "ggml" / "CMakeLists.txt").write_text("\n")
    (root / "include" / "llama.h").write_text("\n")
    return root


def _run_planner(tmp_path: Path, given: str, goal: str = "native", cmake_args: str = "") -> tuple[int, str]:
    tree = _fake_llama_tree(tmp_path / "llama")
    (tmp_path / "given.tsv").write_text(given)
    env = dict(os.environ, PYTHONPATH=str(REPO), CMAKE_ARGS=cmake_args)
    done = proc.run(
        [
            sys.executable,
            "-m",
            "builddoctor._buildplan",
            "--goal",
            goal,
            "--source",
            str(tree),
            "--given",
            str(tmp_path / "given.tsv"),
            "--out",
            str(tmp_path / "plan.cmake"),
            "--json",
            str(tmp_path / "plan.json"),
            "--info",
            str(tmp_path / "bundle.json"),
        ],
        timeout=120,
        env=env,
    )
    return done.returncode, done.output


def _planned_native() -> str:
    """GGML_NATIVE in builddoctor's plan for this host (OFF where a known-bad row spells the ISA out)."""
    from builddoctor.probe import machine_profile

    return next(o.value for o in resolve(machine_profile()).options if o.name == "GGML_NATIVE")


def test_planner_writes_the_plan_files(tmp_path):
    planned = _planned_native()
    other = "OFF" if planned == "ON" else "ON"
    rc, out = _run_planner(tmp_path, f"GGML_NATIVE\tUNINITIALIZED\t{other}\n", cmake_args=f"-DGGML_NATIVE={other}")
    assert rc == 0, out
    assert "builddoctor: plan: goal native" in out
    assert f"override: GGML_NATIVE={other} set by CMAKE_ARGS (the plan had {planned})" in out
    plan = BuildPlan.from_json((tmp_path / "plan.json").read_text())
    native = next(o for o in plan.options if o.name == "GGML_NATIVE")
    assert (native.value, native.recipe) == (other, "user")
    assert plan.machine is not None and plan.machine.source == "live"
    assert {"llama-server", "llama-cli", "llama-bench", "llama-quantize"} <= set(plan.targets)
    info = bundled.BundleInfo.from_json((tmp_path / "bundle.json").read_text())
    assert info.source == "checkout" and info.goal == "native"
    assert [o.name for o in info.overrides] == ["GGML_NATIVE"]
    assert next(o for o in info.planned if o.name == "GGML_NATIVE").value == planned
    cmake = (tmp_path / "plan.cmake").read_text()
    assert "set(GGML_NATIVE " not in cmake  # the command line holds it
    assert "set(LLAMA_BUILD_COMMON [=[ON]=] CACHE BOOL" in cmake
    assert f"set(BUILDDOCTOR_LLAMA_SOURCE_DIR [=[{(tmp_path / 'llama').as_posix()}]=])" in cmake


def test_planner_portable_goal(tmp_path):
    rc, out = _run_planner(tmp_path, "", goal="portable")
    assert rc == 0, out
    plan = BuildPlan.from_json((tmp_path / "plan.json").read_text())
    opts = {o.name: o.value for o in plan.options}
    assert plan.goal == "portable"
    if plan.backend == "cpu" and plan.machine and plan.machine.arch == "x86_64":
        assert opts["GGML_NATIVE"] == "OFF" and opts["GGML_CPU_ALL_VARIANTS"] == "ON"
        assert opts["GGML_BACKEND_DL"] == "ON"


def test_planner_refuses_a_folder_that_is_not_llama_cpp(tmp_path):
    (tmp_path / "given.tsv").write_text("")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = proc.run(
        [
            sys.executable,
            "-m",
            "builddoctor._buildplan",
            "--source",
            str(tmp_path),
            "--given",
            str(tmp_path / "given.tsv"),
            "--out",
            str(tmp_path / "plan.cmake"),
            "--json",
            str(tmp_path / "p.json"),
            "--info",
            str(tmp_path / "b.json"),
        ],
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "is not a llama.cpp source tree" in done.stderr
    assert "Traceback" not in done.output


@pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")
def test_command_line_wins_over_the_plan_in_cmake(tmp_path):
    """The generated plan.cmake in a real CMake configure: the plan fills in, a -D wins."""
    rc, out = _run_planner(tmp_path, "GGML_NATIVE\tUNINITIALIZED\tOFF\n")
    assert rc == 0, out
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\n"
        f'include("{(tmp_path / "plan.cmake").as_posix()}")\n'
        "project(t LANGUAGES NONE)\n"
        'message(STATUS "NATIVE=${GGML_NATIVE} OPENMP=${GGML_OPENMP} COMMIT=${LLAMA_BUILD_COMMIT}")\n'
    )
    done = proc.run([CMAKE, "-S", str(project), "-B", str(tmp_path / "b"), "-DGGML_NATIVE=OFF"], timeout=120)
    assert done.ok, done.output
    assert "NATIVE=OFF OPENMP=ON COMMIT=unknown" in done.stdout


# --------------------------------------------------------------------------- finding the bundle


def _bundle(tmp_path: Path, tools=("llama-bench",)) -> Path:
    """A bundle folder as the wheel lays it out; the tools are stand-in scripts."""
    root = tmp_path / "_llama"
    (root / "bin").mkdir(parents=True)
    for name in tools:
        exe = root / "bin" / name
        exe.write_text(f'#!/bin/sh\necho "{name} args: $*"\necho "env: $BD_TEST_VALUE"\nexit 3\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (root / "bin" / "libllama.so").write_bytes(b"\x7fELF")
    rc, out = _run_planner(tmp_path, "")
    assert rc == 0, out
    shutil.copy(tmp_path / "plan.json", root / "plan.json")
    shutil.copy(tmp_path / "bundle.json", root / "bundle.json")
    return root


def test_bundled_dir_and_records(tmp_path, monkeypatch):
    root = _bundle(tmp_path)
    monkeypatch.setenv("BUILDDOCTOR_BUNDLED_DIR", str(root))
    assert bundled.bundled_dir() == root / "bin"
    assert bundled.binaries() == {"llama-bench": root / "bin" / "llama-bench"}
    assert [p.name for p in bundled.libraries()] == ["libllama.so"]
    assert bundled.plan().goal == "native"
    assert bundled.info().targets[0].startswith("llama-")
    assert bundled.binary("bench") == bundled.binary("llama-bench") == root / "bin" / "llama-bench"
    with pytest.raises(bundled.NotBundledError, match="llama-server is not in the bundled"):
        bundled.binary("server")
    with pytest.raises(bundled.errors.InputError, match="not a bundled tool"):
        bundled.binary("llama-perplexity")


def test_nothing_bundled(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_BUNDLED_DIR", str(tmp_path / "nothing"))
    assert bundled.bundled_dir() is None and bundled.binaries() == {} and bundled.plan() is None
    with pytest.raises(bundled.NotBundledError, match="BUILDDOCTOR_BINARY=skip"):
        bundled.binary("bench")
    result = CliRunner().invoke(cli, ["which"])
    assert result.exit_code == errors.NOT_BUNDLED
    assert "no bundled llama.cpp" in result.output


def test_which_command(tmp_path, monkeypatch):
    root = _bundle(tmp_path)
    monkeypatch.setenv("BUILDDOCTOR_BUNDLED_DIR", str(root))
    result = CliRunner().invoke(cli, ["which"])
    assert result.exit_code == 0, result.output
    assert f"bundled llama.cpp in {root / 'bin'}" in result.output
    assert str(root / "bin" / "llama-bench") in result.output
    assert f"GGML_NATIVE={_planned_native()}" in result.output and "goal native" in result.output
    data = json.loads(CliRunner().invoke(cli, ["which", "--json"]).output)
    assert data["binaries"] == {"llama-bench": str(root / "bin" / "llama-bench")}
    assert data["plan"]["goal"] == "native" and data["info"]["source"] == "checkout"


def test_run_replaces_builddoctor_with_the_tool(tmp_path):
    """`builddoctor run` and the console-script function exec the tool: its args, env and exit code."""
    root = _bundle(tmp_path)
    env = dict(os.environ, BUILDDOCTOR_BUNDLED_DIR=str(root), BD_TEST_VALUE="kept", PYTHONPATH=str(REPO))
    done = proc.run(
        [sys.executable, "-m", "builddoctor", "run", "llama-bench", "--help", "-p", "64"], timeout=60, env=env
    )
    assert done.returncode == 3, done.output
    assert "llama-bench args: --help -p 64" in done.stdout and "env: kept" in done.stdout
    done = proc.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv[1:] = ['--version']; from builddoctor.bundled import bench_main; bench_main()",
        ],
        timeout=60,
        env=env,
    )
    assert done.returncode == 3 and "llama-bench args: --version" in done.stdout
    done = proc.run(
        [sys.executable, "-c", "from builddoctor.bundled import server_main; server_main()"], timeout=60, env=env
    )
    assert done.returncode == errors.NOT_BUNDLED and "llama-server is not in the bundled" in done.stderr


def test_run_help_and_unknown_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_BUNDLED_DIR", str(tmp_path / "nothing"))
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0 and "Run a bundled llama.cpp tool" in result.output
    result = CliRunner().invoke(cli, ["run", "llama-perplexity"])
    assert result.exit_code == 2 and "not a bundled tool" in result.output
    result = CliRunner().invoke(cli, ["run", "server", "--port", "8080"])
    assert result.exit_code == errors.NOT_BUNDLED and "no bundled llama.cpp" in result.output


def test_which_help_names_the_exit_code_it_exits_with():
    """`which --help` said 13 while a build without binaries exits NOT_BUNDLED (14)."""
    import re

    from click.testing import CliRunner

    from builddoctor import errors
    from builddoctor.cli import _register, cli

    _register()
    text = CliRunner().invoke(cli, ["which", "--help"]).output
    assert re.search(r"Exit code (\d+)", text).group(1) == str(errors.NOT_BUNDLED)
