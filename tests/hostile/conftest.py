"""Fixtures of the hostile tier: the real CLI in a child process, fed files the tests make; a folder
unique to each test for hostile programs, and no process left behind by it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from builddoctor import proc
from tests import elf_fixtures as fx
from tests.hostile import programs

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"


@pytest.fixture
def den(tmp_path):
    """A unique folder for the test's hostile programs; whatever they left running is killed after the test."""
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    folder = tmp_path / "den"
    folder.mkdir()
    yield folder
    programs.kill_all(str(folder))


#: every real builddoctor run of the tier, for the campaign's counts (tests/hostile/campaign.py)
RUNS = {"runs": 0}


class Cli:
    """``cli("probe", "--profile", f)`` runs ``python -m builddoctor`` with a time limit and a private cache."""

    def __init__(self, home: Path):
        self.env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            BUILDDOCTOR_CACHE=str(home / "cache"),
            BUILDDOCTOR_HOME=str(home / "data"),
            NO_COLOR="1",
            # bench waits for the machine-wide llama.cpp build lock: another user's build is no hang
            BUILDDOCTOR_BUILD_LOCK=str(home / "build.lock"),
        )
        self.env.pop("PYTHONIOENCODING", None)

    def __call__(self, *args, timeout: float = 120, **env) -> proc.Completed:
        done = proc.run(
            [sys.executable, "-m", "builddoctor", *map(str, args)],
            timeout=timeout,
            env={**self.env, **{k: str(v) for k, v in env.items()}},
        )
        RUNS["runs"] += 1
        assert not done.timed_out, f"builddoctor {' '.join(map(str, args))} hung ({timeout} s)"
        assert done.returncode != 70, f"exit 70 (a bug): {done.stderr[-2000:]}"
        return done


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path)


def one_paragraph(done: proc.Completed) -> str:
    """The error message: one paragraph, the end of stderr (progress lines may come before it)."""
    err = done.stderr.strip()
    assert "Traceback" not in err, err
    start = err.rfind("\nerror: ") + 1 if not err.startswith("error: ") else 0
    msg = err[start:]
    assert msg.startswith("error: ") and "\n\n" not in msg, err
    return msg
