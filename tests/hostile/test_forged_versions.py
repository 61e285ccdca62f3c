"""Version strings a file forges (a glibc version of 5000 digits: packaging's Version raises a plain
ValueError on it, not InvalidVersion) and a check that raises: each costs at most one report line."""

from __future__ import annotations

import json

import pytest

from builddoctor import errors
from builddoctor.findings import engine
from tests import elf_fixtures as fx


@pytest.fixture
def forged(tmp_path):
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    return fx.make_new_glibc_lib(tmp_path / "forged", version="GLIBC_2." + "9" * 5000)


def test_a_5000_digit_glibc_version_is_no_crash(cli, forged):
    done = cli("check", "--no-run", "--json", forged)
    assert done.returncode in (errors.OK, errors.PROBLEMS), done.stderr[-2000:]
    report = json.loads(done.stdout)["builds"][0]
    assert not [f for f in report["findings"] if f["code"].startswith("internal:")], report["findings"]


def test_a_check_that_raises_costs_one_line(sse_build, monkeypatch):
    """The engine's containment, on a real build: one rule replaced by one that raises (the only way
    to make a rule fail on purpose once every input the campaign found is handled)."""
    from builddoctor.inspect import inspect_paths
    from builddoctor.probe import machine_profile

    machine = machine_profile()
    (build,), _ = inspect_paths([sse_build], run=False)
    before = engine.findings_for(build, machine)

    def broken(build, machine, ctx):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(engine.RULES, "cpu_isa_below", broken)
    after = engine.findings_for(build, machine)
    lines = [f for f in after if f.code.startswith("internal:")]
    assert len(lines) == 1 and "ZeroDivisionError" in lines[0].title and lines[0].severity == "warning"
    assert {f.code for f in before} - {"BD130", "ok:cpu"} <= {f.code for f in after}


def test_configure_messages_reach_the_terminal_without_their_escapes():
    """cmake's configure lines are foreign text (a CMakeLists or a compiler can print anything): the
    progress view shows an escape sequence as text, never sends it to the terminal."""
    import io

    from builddoctor.build import ProgressEvent
    from builddoctor.cli.build_cmd import ProgressView

    out = io.StringIO()
    ProgressView(out)(ProgressEvent(stage="configure", message="-- Found \x1b]0;owned\x07\x1b[2J ccache"))
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "\\x1b]0;owned" in out.getvalue()
