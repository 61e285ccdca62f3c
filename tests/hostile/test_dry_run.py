"""`build --dry-run` runs nothing and writes nothing, and prints commands that paste as they read.

Every program the dry run could reach (the plan's CC, cmake, ninja, git, ccache, the compilers the
toolchain probe asks) is a marker-writing stand-in first on PATH; the pinned source is missing.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from click.testing import CliRunner

from builddoctor import errors
from builddoctor.cli import _register, cli
from tests.hostile.payloads import fake_llama_tree, marker_program, plan_file, tree_files

_register()

STAND_INS = (
    "x86_64-linux-gnu-gcc-99",
    "cmake",
    "ninja",
    "git",
    "ccache",
    "cc",
    "c++",
    "gcc",
    "g++",
    "clang",
    "nvcc",
    "glslc",
)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """builddoctor's folders (one with a space in its name) in tmp_path, marker programs first on
    PATH, and a pinned-source location that is empty."""
    marker = tmp_path / "SOMETHING-RAN"
    bin_dir = tmp_path / "bin"
    for name in STAND_INS:
        marker_program(bin_dir / name, marker, "exit 1")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "bd home"))
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "bd cache"))
    monkeypatch.setenv("BUILDDOCTOR_BUILD_LOCK", str(tmp_path / "build.lock"))
    monkeypatch.setenv("BUILDDOCTOR_VENDOR", str(tmp_path / "vendor" / "llama.cpp"))
    monkeypatch.chdir(tmp_path)

    class W:
        root = tmp_path
        vendor = tmp_path / "vendor" / "llama.cpp"

    W.marker = marker
    return W


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_dry_run_with_a_plan_runs_nothing_fetches_nothing_writes_nothing(world):
    plan = plan_file(
        world.root / "plan.json",
        {"GGML_NATIVE": "ON", "CMAKE_BUILD_TYPE": "Release"},
        env={"CC": "x86_64-linux-gnu-gcc-99"},
    )
    before = tree_files(world.root)
    res = invoke("build", "--plan", str(plan), "--dry-run")
    assert not world.marker.exists(), "a dry run ran a program: " + world.marker.read_text()
    assert res.exit_code == 0, res.output
    assert tree_files(world.root) == before, "a dry run wrote a file"
    assert not (world.root / "vendor").exists() and not (world.root / "bd cache").exists()
    # what the real build would do about the missing source is said, not done
    assert "would first fetch" in res.output and str(world.vendor) in res.output
    # the environment is part of what is printed: the plan's CC included
    lines = [shlex.split(ln) for ln in res.output.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 2 and all(ln[:2] == ["env", "-i"] for ln in lines)
    assert "CC=x86_64-linux-gnu-gcc-99" in lines[0]


def test_dry_run_lines_paste_into_a_shell_as_they_read(world):
    """A ';' list (CUDA architectures), a folder with a space and the <key> placeholder: each line,
    run by /bin/sh, gives exactly the words of the JSON form, and the shell runs no `89`."""
    marker_program(world.root / "bin" / "89", world.marker, "exit 0")
    src = fake_llama_tree(world.root / "src")
    plan = plan_file(world.root / "plan.json", {"CMAKE_CUDA_ARCHITECTURES": "86;89", "CMAKE_C_FLAGS": "-O2 -g"})
    doc = invoke("build", "--plan", str(plan), "--source", str(src), "--dry-run", "--json")
    assert doc.exit_code == 0, doc.output
    want = json.loads(doc.output)
    text = invoke("build", "--plan", str(plan), "--source", str(src), "--dry-run")
    lines = [ln for ln in text.output.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == len(want["commands"]) == 2
    env_words = [f"{k}={v}" for k, v in sorted(want["env"].items())]
    for line, argv in zip(lines, want["commands"], strict=True):
        done = subprocess.run(
            ["/bin/sh", "-c", f'set -- {line}\nfor w in "$@"; do printf "%s\\0" "$w"; done'],
            capture_output=True,
            timeout=10,
            cwd=world.root,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().split("\0")[:-1] == ["env", "-i", *env_words, *argv]
    assert not world.marker.exists(), "pasting the printed line ran a command"
    assert "-DCMAKE_CUDA_ARCHITECTURES=86;89" in want["commands"][0]
    assert any(" " in a for a in want["commands"][0]), "the build folder has a space in its name"


def test_dry_run_refuses_a_hostile_plan_before_printing(world):
    src = fake_llama_tree(world.root / "src")
    plan = plan_file(world.root / "plan.json", {"GGML_NATIVE": f"$(touch {world.marker})"})
    res = invoke("build", "--plan", str(plan), "--source", str(src), "--dry-run")
    assert res.exit_code == errors.USAGE and "options.GGML_NATIVE" in res.output, res.output
    assert "cmake -S" not in res.output and not world.marker.exists()
