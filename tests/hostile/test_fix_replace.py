"""`fix --replace` with no terminal to ask on and no --yes is refused before step 1."""

from __future__ import annotations

import time

from click.testing import CliRunner

from builddoctor import errors
from builddoctor.cli import _register, cli
from tests.hostile.payloads import fake_llama_tree, tree_files

_register()


def test_replace_without_a_terminal_or_yes_refuses_before_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BUILDDOCTOR_BUILD_LOCK", str(tmp_path / "build.lock"))
    # a source that builds in seconds: before the early refusal, fix went on to build it
    src = fake_llama_tree(tmp_path / "src")
    target = tmp_path / "bin"
    target.mkdir()
    (target / "llama-cli").write_bytes(b"#!/bin/sh\nexit 0\n")
    before = tree_files(tmp_path)
    t0 = time.monotonic()
    res = CliRunner().invoke(
        cli, ["fix", "--rebuild", "--replace", "--source", str(src), str(target)], catch_exceptions=False
    )
    assert res.exit_code == errors.USAGE, res.output
    assert "--yes" in res.output and "Nothing was built" in res.output, res.output
    assert time.monotonic() - t0 < 5, "refused at once, not after a check, a build and a benchmark"
    assert tree_files(tmp_path) == before
