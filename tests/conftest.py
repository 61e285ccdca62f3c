"""Shared fixtures: small gcc-compiled ELF files and the real llama.cpp test builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import elf_fixtures as fx
from tests import llama_builds

# Test tiers (pyproject.toml markers; README "Tests"): each test is in one. A test marked `slow` or
# `network` in its file keeps that; one that needs a fixture below is in that fixture's tier (the
# fixture compiles llama.cpp, builds and repairs a wheel, or downloads); every other test is `unit`.
TIER_OF_FIXTURE = {
    "llama_build": "slow",
    "native_build": "slow",
    "sse_build": "slow",
    "debug_build": "slow",
    "planned_build": "slow",  # tests/llama_builds.py: compiled on first use (.cache/test-builds)
    "repaired_wheel": "slow",  # tests/test_discover.py: a wheel built and run through auditwheel
    "sdist": "network",  # tests/test_source.py: the pinned sdist, downloaded through pip
    "small_model": "slow",  # tests/test_bench.py: an 8 MB generated GGUF model
}
#: tests (or whole files) that build a wheel or write a smoke model themselves: tens of seconds each
TIER_OF_TEST = {
    "tests/test_wheel.py": "slow",  # pip wheel of this project
    "tests/hostile/test_smoke_room.py::test_model_is_written_in_bounded_memory": "slow",
    "tests/hostile/test_exit70.py::test_llama_bench_json_with_wrong_types_costs_that_build_only": "slow",
    "tests/test_build_cli.py::test_bench_with_a_crashing_llama_bench": "slow",
}
TIERS = ("slow", "network")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every test in its tier, so that ``-m unit`` is exactly the fast rest."""
    for item in items:
        if any(item.get_closest_marker(t) for t in TIERS):
            continue
        tiers = {TIER_OF_FIXTURE[f] for f in getattr(item, "fixturenames", ()) if f in TIER_OF_FIXTURE}
        tiers |= {
            tier
            for key, tier in TIER_OF_TEST.items()
            if item.nodeid == key or item.nodeid.startswith((key + "::", key + "["))
        }
        for tier in sorted(tiers) or ["unit"]:
            item.add_marker(tier)


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
