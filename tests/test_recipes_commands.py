"""`builddoctor recipe` prints exactly the commands `builddoctor build` runs (one command builder)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor.cli import _register, cli

_register()

MACHINES = Path(__file__).parent / "fixtures" / "machines"


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BUILDDOCTOR_BUILD_LOCK", str(tmp_path / "build.lock"))


def _invoke(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _dry_run_commands(profile: Path) -> list[list[str]]:
    """The argv of each `build --dry-run` line, without its `env -i VAR=...` prefix."""
    out = []
    for line in _invoke("build", "--dry-run", "--profile", str(profile), "-j", "3").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        words = shlex.split(line)
        assert words[0] == "env" and words[1] == "-i"
        words = words[2:]
        while "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)
        out.append(words)
    return out


def _recipe_commands(profile: Path, env: dict[str, str]) -> list[list[str]]:
    """The argv of each command line under the recipe's "Configure and build" heading."""
    text = _invoke("recipe", "--profile", str(profile), "-j", "3")
    block = text.split("Configure and build", 1)[1].splitlines()[1:]
    out = []
    for line in block:
        if not line.startswith("  cmake") and not (env and line.startswith("  " + next(iter(env)))):
            continue
        words = shlex.split(line)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)  # the plan's environment, in front
        out.append(words)
    return out


@pytest.mark.parametrize(
    "name", ["zen3-desktop", "mac-intel", "sapphire-rapids-server", "raspberry-pi-5", "this-machine"]
)
def test_recipe_prints_the_commands_build_runs(name):
    from builddoctor.probe import load_profile
    from builddoctor.resolve import resolve

    profile = MACHINES / f"{name}.json"
    plan = resolve(load_profile(profile))
    built = _dry_run_commands(profile)
    assert len(built) == 2 and built[0][:2] == ["cmake", "-S"] and built[1][:2] == ["cmake", "--build"]
    assert _recipe_commands(profile, plan.env) == built
    # what the recipe once left out, and once added
    configure = built[0]
    assert "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON" in configure
    assert any(a.startswith("-DLLAMA_BUILD_COMMIT=") for a in configure)
    assert "--config" not in built[1]


def test_recipe_build_dir_is_the_one_given(tmp_path):
    profile = MACHINES / "zen3-desktop.json"
    text = _invoke("recipe", "--profile", str(profile), "--build-dir", str(tmp_path / "b"), "-j", "2")
    lines = [ln for ln in text.splitlines() if ln.startswith("  cmake")]
    assert len(lines) == 2 and all(str(tmp_path / "b") in ln for ln in lines)
