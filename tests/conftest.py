"""Shared fixtures: small gcc-compiled ELF files and the real llama.cpp test builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from builddoctor.tomlload import load_toml
from tests import elf_fixtures as fx
from tests import llama_builds

#: the test tiers, as data: tests/tiers.toml says which fixture or test is in which tier, and why
TIERS_FILE = Path(__file__).with_name("tiers.toml")
TIERS = ("slow", "network")


def _tier_data() -> tuple[dict[str, str], dict[str, str]]:
    """tests/tiers.toml as {fixture: tier} and {"FILE" or "FILE::TEST": tier}."""
    data = load_toml(TIERS_FILE)
    by_test = {}
    for tier, files in data["tests"].items():
        for file, names in files.items():
            keys = [file] if names == "*" else [f"{file}::{name}" for name in names]
            by_test.update(dict.fromkeys(keys, tier))
    return dict(data["fixtures"]), by_test


TIER_OF_FIXTURE, TIER_OF_TEST = _tier_data()


def _matches(nodeid: str, key: str) -> bool:
    return nodeid == key or nodeid.startswith((key + "::", key + "["))


def _tiers_of(item: pytest.Item) -> set[str]:
    tiers = {TIER_OF_FIXTURE[f] for f in getattr(item, "fixturenames", ()) if f in TIER_OF_FIXTURE}
    return tiers | {tier for key, tier in TIER_OF_TEST.items() if _matches(item.nodeid, key)}


def _stale_entries(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Entries of tests/tiers.toml that match no test of a file collected whole (a renamed test)."""
    if any(not Path(arg).is_dir() for arg in config.args):
        return []  # single files or tests asked for: the rest of a file is not collected
    files = {item.nodeid.split("::")[0] for item in items}
    return [
        key
        for key in TIER_OF_TEST
        if key.split("::")[0] in files and not any(_matches(item.nodeid, key) for item in items)
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every test in its tier, so that ``-m unit`` is exactly the fast rest."""
    stale = _stale_entries(config, items)
    if stale:
        raise pytest.UsageError(f"{TIERS_FILE}: no test is called {', '.join(stale)}")
    for item in items:
        if any(item.get_closest_marker(t) for t in TIERS):
            continue
        for tier in sorted(_tiers_of(item)) or ["unit"]:
            item.add_marker(tier)


@pytest.fixture(autouse=True)
def _own_data_home(tmp_path_factory, monkeypatch):
    """Every test gets its own builddoctor data home (install prefix, backups, tuned settings).

    Without it a test sees what `fix` or `tune` installed for the user: `run server` found the tuned
    llama-server in ~/.local/share/builddoctor and exec'd it in the pytest process, which then served
    on port 8080 until killed. A test that sets BUILDDOCTOR_HOME itself overrides this one.
    """
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path_factory.mktemp("data-home")))


@pytest.fixture(autouse=True)
def _unit_tests_have_no_source(request, tmp_path_factory, monkeypatch):
    """A unit test runs as on a fresh clone: no pinned tree, and no fetch of one.

    A test that needs vendor/llama.cpp asks for ``pinned_source`` (the network tier: a fresh clone
    downloads it); without this guard such a test passes wherever the tree happens to be fetched and
    makes the "fast" tier download the sdist on a fresh clone.
    """
    if request.node.get_closest_marker("unit") is None:
        return
    from builddoctor import source

    monkeypatch.setenv("BUILDDOCTOR_VENDOR", str(tmp_path_factory.getbasetemp() / "no-vendor" / "llama.cpp"))

    def refuse(*_a, **_k):
        pytest.fail("a unit test fetched the pinned llama.cpp source: give it the pinned_source fixture")

    monkeypatch.setattr(source, "_download", refuse)


@pytest.fixture(scope="session")
def pinned_source() -> Path:
    """The pinned llama.cpp tree (vendor/llama.cpp), fetched once if missing: tests/tiers.toml puts its users in
    the network tier."""
    from builddoctor.source import ensure_source

    return ensure_source()


@pytest.fixture(scope="session")
def elf_dir(tmp_path_factory) -> Path:
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    return tmp_path_factory.mktemp("elf")


def _build(name: str) -> Path:
    try:
        return llama_builds.ensure_build(name)
    except llama_builds.BuildUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def llama_build():
    """Factory: ``llama_build("native")`` -> the bin folder of that test build (built once)."""
    return _build


@pytest.fixture(scope="session")
def native_build() -> Path:
    return _build("native")


@pytest.fixture(scope="session")
def sse_build() -> Path:
    return _build("sse")


@pytest.fixture(scope="session")
def debug_build() -> Path:
    return _build("debug")


@pytest.fixture(scope="session")
def planned_build() -> Path:
    """A build with builddoctor's own CPU plan for this host: one that computes on every CPU."""
    return _build("planned")
