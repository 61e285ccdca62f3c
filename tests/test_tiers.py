"""The tier table (tests/tiers.toml): only declared tiers, real files, and a renamed test is caught."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from builddoctor.tomlload import load_toml
from tests import conftest

REPO = Path(__file__).resolve().parent.parent


def _declared_markers() -> set[str]:
    markers = load_toml(REPO / "pyproject.toml")["tool"]["pytest"]["ini_options"]["markers"]
    return {m.split(":")[0] for m in markers}


def test_every_tier_is_a_declared_marker_and_every_file_exists():
    tiers = set(conftest.TIER_OF_FIXTURE.values()) | set(conftest.TIER_OF_TEST.values())
    assert tiers <= _declared_markers() - {"unit"}
    assert all((REPO / key.split("::")[0]).is_file() for key in conftest.TIER_OF_TEST)


def test_a_listed_test_and_its_parameters_are_in_its_tier_and_a_neighbour_is_not():
    key = next(k for k in conftest.TIER_OF_TEST if "::" in k)
    tier = conftest.TIER_OF_TEST[key]
    item = SimpleNamespace(nodeid=f"{key}[param]", fixturenames=[])
    assert tier in conftest._tiers_of(item)
    assert conftest._tiers_of(SimpleNamespace(nodeid=f"{key}_other", fixturenames=[])) == set()


def test_an_entry_matching_no_collected_test_is_reported_only_for_a_whole_collection():
    key = next(k for k in conftest.TIER_OF_TEST if "::" in k)
    file = key.split("::")[0]
    items = [SimpleNamespace(nodeid=f"{file}::test_renamed")]
    assert key in conftest._stale_entries(SimpleNamespace(args=["tests"]), items)
    assert conftest._stale_entries(SimpleNamespace(args=[file]), items) == []
