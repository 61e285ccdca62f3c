"""A plan file is data, never code: every payload class is refused before anything runs.

Each case writes a plan whose payload would leave a marker file if it ran (a compiler or launcher
script, a command in CMAKE_C_FLAGS, a CMake file, a preloaded library), and builds it from a tiny
llama.cpp-shaped tree with the real cmake, ninja and cc: builddoctor must refuse with exit 2,
naming the key, and the marker must not exist. Before the plan policy, each of them ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor import errors
from builddoctor.cli import _register, cli
from tests.hostile.payloads import fake_llama_tree, marker_program, plan_file, tree_files

_register()

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def world(tmp_path, monkeypatch):
    """builddoctor's folders in tmp_path, a llama.cpp-shaped source tree, and a marker path."""
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BUILDDOCTOR_BUILD_LOCK", str(tmp_path / "build.lock"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    src = fake_llama_tree(tmp_path / "src")

    class W:
        root = tmp_path
        marker = tmp_path / "PAYLOAD-RAN"
        source = src

    return W


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def refused(world, plan: Path, key: str, *extra: str) -> str:
    before = tree_files(world.source)
    res = invoke("build", "--plan", str(plan), "--source", str(world.source), *extra)
    assert not world.marker.exists(), "the payload ran"
    assert res.exit_code == errors.USAGE, res.output
    assert key in res.output and "Nothing was run" in res.output, res.output
    assert "\x1b" not in res.output and "\x07" not in res.output, "foreign control characters echoed raw"
    cache = world.root / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "nothing configured, nothing cached"
    assert tree_files(world.source) == before
    return res.output


def _cc_wrapper(world, path: Path) -> Path:
    return marker_program(path, world.marker, f'exec {shutil.which("cc") or "cc"} "$@"')


def test_compiler_at_an_absolute_path(world):
    evil = _cc_wrapper(world, world.root / "evil" / "bin" / "gcc")
    out = refused(world, plan_file(world.root / "p.json", {"CMAKE_C_COMPILER": str(evil)}), "options.CMAKE_C_COMPILER")
    assert "--allow-path" in out


def test_compiler_at_a_relative_path(world):
    _cc_wrapper(world, Path.cwd() / "bin" / "gcc")
    refused(world, plan_file(world.root / "p.json", {"CMAKE_C_COMPILER": "bin/gcc"}), "options.CMAKE_C_COMPILER")


def test_compiler_that_is_not_a_compiler(world):
    refused(world, plan_file(world.root / "p.json", {"CMAKE_C_COMPILER": "python3"}), "options.CMAKE_C_COMPILER")


@pytest.mark.parametrize("name", ["CMAKE_C_COMPILER_LAUNCHER", "CMAKE_C_LINKER_LAUNCHER"])
def test_launcher(world, name):
    launcher = marker_program(world.root / "launch", world.marker, 'exec "$@"')
    refused(world, plan_file(world.root / "p.json", {name: str(launcher)}), f"options.{name}")


def test_env_cc_script(world):
    evil = _cc_wrapper(world, world.root / "evil" / "bin" / "cc")
    refused(world, plan_file(world.root / "p.json", env={"CC": str(evil)}), "env.CC")


@pytest.mark.parametrize(
    "flags", ["-O2 `touch {m}`", "-O2 $(touch {m})", "-O2 ; touch {m} ;", "-O2 && touch {m}", "-O2 | touch {m}"]
)
def test_shell_in_compiler_flags(world, flags):
    value = flags.format(m=world.marker)
    refused(world, plan_file(world.root / "p.json", {"CMAKE_C_FLAGS": value}), "options.CMAKE_C_FLAGS")


@pytest.mark.parametrize(
    "flags",
    [
        "-O2 -fplugin=/tmp/evil.so",
        "-O2 -Wl,-plugin=/tmp/evil.so",
        "-O2 -B/tmp/evil",
        "-include /tmp/evil.h",
        "-O2 @/tmp/response-file",
        "-specs=/tmp/evil.specs",
    ],
)
def test_compiler_flags_that_load_files(world, flags):
    refused(world, plan_file(world.root / "p.json", {"CMAKE_C_FLAGS": flags}), "options.CMAKE_C_FLAGS")


def test_unknown_cmake_variable_that_includes_code(world):
    evil = world.root / "evil.cmake"
    evil.write_text(f'file(WRITE "{world.marker}" "ran")\n')
    refused(
        world, plan_file(world.root / "p.json", {"CMAKE_PROJECT_INCLUDE": str(evil)}), "options.CMAKE_PROJECT_INCLUDE"
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("GGML_NO_SUCH_OPTION", "ON"),
        ("GGML_VULKAN_SHADERS_GEN_TOOLCHAIN", "/tmp/evil.cmake"),
        ("BORINGSSL_GIT", "https://example.invalid/evil.git"),
        ("GGML_CPU_ARM_ARCH", "armv8-a;-fplugin=/tmp/evil.so"),
        ("GGML_NATIVE", "$(touch /tmp/x)"),
        ("GGML_BLAS_VENDOR", "A" * 100_000),
    ],
)
def test_options_llama_cpp_does_not_declare_or_values_it_must_not_get(world, name, value):
    refused(world, plan_file(world.root / "p.json", {name: value}), f"options.{name}")


@pytest.mark.parametrize("where", ["option", "env", "env-key"])
def test_control_characters(world, where):
    bad = "OFF\x1b]0;owned\x07\n"
    if where == "option":
        plan = plan_file(world.root / "p.json", {"GGML_NATIVE": bad})
        key = "options.GGML_NATIVE"
    elif where == "env":
        plan = plan_file(world.root / "p.json", env={"CC": "gcc\x1b[2J"})
        key = "env.CC"
    else:
        plan = plan_file(world.root / "p.json", env={"CC\x1b[2J": "gcc"})
        key = "env.'CC\\x1b[2J'"
    refused(world, plan, key)


def _preload_library(world) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    c = world.root / "evil.c"
    c.write_text(
        "#include <stdio.h>\n__attribute__((constructor)) static void f(void) "
        f'{{ FILE *o = fopen("{world.marker}", "a"); if (o) fclose(o); }}\n'
    )
    so = world.root / "evil.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(c)], check=True, timeout=60)
    return so


@pytest.mark.parametrize("key", ["LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "BASH_ENV", "CMAKE_PREFIX_PATH"])
def test_environment_keys_outside_the_list(world, key):
    evilbin = world.root / "evilbin"
    for tool in ("cmake", "ninja", "cc"):
        marker_program(evilbin / tool, world.marker, "exit 1")
    value = {
        "LD_PRELOAD": str(_preload_library(world)) if key == "LD_PRELOAD" else "",
        "PATH": str(evilbin),
        "LD_LIBRARY_PATH": str(world.root),
        "BASH_ENV": str(evilbin / "cc"),
        "CMAKE_PREFIX_PATH": str(world.root),
    }[key]
    refused(world, plan_file(world.root / "p.json", env={key: value}), f"env.{key}")


@pytest.mark.parametrize(
    "field, value", [("targets", ["install"]), ("targets", ["llama-bench", "../x"]), ("omit_cpu_variants", ["../../*"])]
)
def test_targets_and_variants_are_names(world, field, value):
    plan = plan_file(world.root / "p.json", {"GGML_NATIVE": "ON"}, **{field: value})
    refused(world, plan, f"{field}[")


def test_toolkit_folder_not_found_by_builddoctor(world):
    (world.root / "rocm" / "bin").mkdir(parents=True)
    refused(world, plan_file(world.root / "p.json", env={"HIP_PATH": str(world.root / "rocm")}), "env.HIP_PATH")


def test_a_confirmed_compiler_path_is_accepted(world):
    """--allow-path is the user's confirmation; the dry run shows it and still runs nothing."""
    evil = _cc_wrapper(world, world.root / "mine" / "bin" / "gcc")
    plan = plan_file(
        world.root / "p.json", {"CMAKE_C_COMPILER": str(evil), "CMAKE_C_FLAGS": "-march=native -mno-amx-tile -O2"}
    )
    refused(world, plan, "options.CMAKE_C_COMPILER", "--dry-run")
    res = invoke(
        "build", "--plan", str(plan), "--source", str(world.source), "--dry-run", "--allow-path", str(evil), "--json"
    )
    assert res.exit_code == 0, res.output
    configure = json.loads(res.output)["commands"][0]
    assert f"-DCMAKE_C_COMPILER={evil}" in configure and "-DCMAKE_C_FLAGS=-march=native -mno-amx-tile -O2" in configure
    assert not world.marker.exists()


def _gfx(doc):
    for g in doc["gpus"]:
        if g.get("gfx_target"):
            g["gfx_target"] = "gfx1100;-fplugin=/tmp/evil.so"


def _nvcc(doc, marker):
    doc["toolchains"]["nvcc"]["path"] = f"/usr/local/cuda/bin/$(touch {marker})/nvcc"


@pytest.mark.parametrize(
    "fixture, backend, key",
    [("rx7900xtx-rocm", "hip", "options.GPU_TARGETS"), ("rtx4090-cuda12", "cuda", "options.CMAKE_CUDA_COMPILER")],
)
def test_recipe_save_refuses_a_profile_that_smuggles_values(world, tmp_path, fixture, backend, key):
    """A recorded profile feeds the resolver: its GPU target lands in GPU_TARGETS of the saved plan,
    its nvcc path in CMAKE_CUDA_COMPILER. The saved plan would carry them to another machine."""
    doc = json.loads((REPO / "tests" / "fixtures" / "machines" / f"{fixture}.json").read_text())
    _gfx(doc) if backend == "hip" else _nvcc(doc, world.marker)
    prof = tmp_path / "profile.json"
    prof.write_text(json.dumps(doc))
    out = tmp_path / "saved.json"
    res = invoke("recipe", "--profile", str(prof), "--backend", backend, "--save", str(out))
    assert res.exit_code == errors.USAGE, res.output
    assert key in res.output and not out.exists()
    assert not world.marker.exists()


def _planner(tmp_path: Path, given: str) -> subprocess.CompletedProcess:
    tree = tmp_path / "llama"
    for sub in ("ggml", "include"):
        (tree / sub).mkdir(parents=True)
    (tree / "CMakeLists.txt").write_text("project(llama.cpp)\n")
    (tree / "ggml" / "CMakeLists.txt").write_text("\n")
    (tree / "include" / "llama.h").write_text("\n")
    (tmp_path / "given.tsv").write_text(given)
    env = dict(os.environ, PYTHONPATH=str(REPO), CMAKE_ARGS="")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "builddoctor._buildplan",
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
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cmake_args_go_through_the_same_policy(world, tmp_path):
    """pip install with CMAKE_ARGS: a llama.cpp option the command line adds is checked before it is
    written into plan.cmake and the recorded plan.json."""
    done = _planner(tmp_path, "GGML_CPU_ARM_ARCH\tSTRING\tarmv8-a;-fplugin=/tmp/evil.so\n")
    assert done.returncode == errors.USAGE, done.stdout + done.stderr
    assert "options.GGML_CPU_ARM_ARCH" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "plan.cmake").exists() and not (tmp_path / "plan.json").exists()


def test_a_bare_compiler_name_that_is_missing_is_a_missing_toolchain(world):
    """A compiler's name is safe whether it is installed or not: the build's toolchain check names
    it (exit 4, with how to install it) before cmake runs, instead of a configure failure."""
    plan = plan_file(world.root / "p.json", {"CMAKE_C_COMPILER": "x86_64-linux-gnu-gcc-99"})
    res = invoke("build", "--plan", str(plan), "--source", str(world.source))
    assert res.exit_code == errors.TOOLCHAIN, res.output
    assert "x86_64-linux-gnu-gcc-99" in res.output and "installs nothing by itself" in res.output
    cache = world.root / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "no configure ran"
