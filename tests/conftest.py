"""Shared fixtures: small gcc-compiled ELF files and the real llama.cpp test builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import elf_fixtures as fx
from tests import llama_builds


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
