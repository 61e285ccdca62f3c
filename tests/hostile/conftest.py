"""Fixtures of the hostile tier: a folder unique to the test, and no process left behind by it."""

from __future__ import annotations

import pytest

from tests import elf_fixtures as fx
from tests.hostile import programs


@pytest.fixture
def den(tmp_path):
    """A unique folder for the test's hostile programs; whatever they left running is killed after the test."""
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    folder = tmp_path / "den"
    folder.mkdir()
    yield folder
    programs.kill_all(str(folder))
