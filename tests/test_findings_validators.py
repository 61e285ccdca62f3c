"""The findings as validators: one per area, each owning its checks and its ok line; a check that
raises costs its area one line and the rest of the report stands; every code is in checks.toml."""

from __future__ import annotations

import copy
import dataclasses
import io
import re
from pathlib import Path

import pytest

from builddoctor import render
from builddoctor.console import Console
from builddoctor.findings import catalogue, findings_for
from builddoctor.findings.areas import VALIDATORS, Validator
from builddoctor.findings.catalogue import Hit, check_for
from builddoctor.findings.engine import _context
from builddoctor.findings.rules import RULES
from builddoctor.profiles import BuildReport, Diagnosis
from tests.test_findings import HASWELL, build, machine

PACKAGE = Path(__file__).resolve().parents[1] / "builddoctor"


def _sse_on_zen4():
    """A build with problems in several areas: SSE-only code (cpu), Debug (build), an old version."""
    return dataclasses.replace(build(isa=["SSE3", "SSSE3"], build_type="Debug"), version="0.4.0", commit="1234567")


def _report(findings, verbose: int) -> str:
    out = io.StringIO()
    b = _sse_on_zen4()
    render.report(
        Diagnosis(machine=machine(), builds=[BuildReport(build=b, findings=findings)]),
        Console(verbose=verbose, color=False, stream=out),
    )
    return out.getvalue()


def test_every_area_is_one_validator():
    cat = catalogue()
    assert list(VALIDATORS) and set(VALIDATORS) == set(cat["areas"])
    for area in cat["areas"]:
        assert isinstance(VALIDATORS[area], Validator) and VALIDATORS[area].area == area


def test_a_raising_rule_leaves_the_rest_of_the_report_intact(monkeypatch):
    b, m = _sse_on_zen4(), machine()
    before = findings_for(b, m)
    assert {"BD130", "BD140", "BD180"} <= {f.code for f in before}  # cpu, build and version speak

    def broken(build_, machine_, ctx):
        raise RuntimeError("deliberately broken rule")

    monkeypatch.setitem(RULES, "cpu_isa_below", broken)
    after = findings_for(b, m)
    lines = [f for f in after if f.code.startswith("internal:")]
    assert len(lines) == 1
    line = lines[0]
    assert line.code == "internal:cpu" and line.area == "cpu" and line.severity == "warning"
    assert "did not complete" in line.title and "BD130" in line.title and "deliberately broken rule" in line.title
    assert "Traceback" in line.trace and "RuntimeError: deliberately broken rule" in line.trace
    # every other area says exactly what it said before; the cpu area keeps its other checks
    others = [(f.code, f.title) for f in before if f.area != "cpu"]
    assert [(f.code, f.title) for f in after if f.area != "cpu"] == others
    assert "BD130" not in {f.code for f in after}
    # the traceback is shown under -v only
    assert "deliberately broken rule" in _report(after, 0) and "Traceback" not in _report(after, 0)
    assert "Traceback" in _report(after, 1)


def test_a_raising_ok_line_costs_its_area_one_line(monkeypatch):
    b, m = build(), machine()
    before = findings_for(b, m)
    assert "ok:version" in {f.code for f in before}

    def broken(build_, machine_, ctx):
        raise KeyError("no such value")

    monkeypatch.setitem(VALIDATORS, "version", Validator("version", broken))
    after = findings_for(b, m)
    assert [f.code for f in after if f.code.startswith("internal:")] == ["internal:version"]
    assert "ok:version" not in {f.code for f in after}
    assert [f.code for f in after if f.area != "version"] == [f.code for f in before if f.area != "version"]


def test_a_rule_that_returns_nonsense_is_caught_too(monkeypatch):
    monkeypatch.setitem(RULES, "debug_build", lambda b, m, c: 42)
    found = findings_for(_sse_on_zen4(), machine())
    assert [f.code for f in found if f.code.startswith("internal:")] == ["internal:build"]
    assert "BD130" in {f.code for f in found}


def test_adding_a_check_is_one_rule_and_one_table(monkeypatch):
    m = machine(features=HASWELL, variant="haswell")
    ctx = _context(m, 5.0, None)
    ctx.catalogue = copy.deepcopy(ctx.catalogue)
    ctx.catalogue["check"].append(
        {
            "code": "BD999",
            "area": "build",
            "rule": "test_many_files",
            "severity": "info",
            "title": "{count} files in {root}",
            "fix": "nothing",
        }
    )
    monkeypatch.setitem(RULES, "test_many_files", lambda b, mm, c: Hit({"count": len(b.files)}))
    found = findings_for(build(isa=HASWELL), m, ctx)
    new = [f for f in found if f.code == "BD999"]
    assert len(new) == 1 and new[0].title == "2 files in /b/bin" and new[0].area == "build"


def test_every_code_the_code_emits_is_declared_in_checks_toml():
    """No finding code is made up in Python: each BD code in the package's source is a [[check]]."""
    declared = {c["code"] for c in catalogue()["check"]}
    used = set()
    for path in PACKAGE.rglob("*.py"):
        used |= set(re.findall(r'code="(BD\d{3})"', path.read_text(encoding="utf-8")))
    assert used and used <= declared, used - declared
    assert {f"BD40{i}" for i in range(1, 10)} <= declared


def test_each_variant_is_a_table_of_its_checks_words():
    for check in catalogue()["check"]:
        for name, words in check.get("variants", {}).items():
            assert set(words) <= {"title", "evidence", "fix", "speedup", "severity"}, (check["code"], name)


def test_a_hit_naming_an_undeclared_code_is_a_bug_not_a_finding():
    with pytest.raises(KeyError):
        check_for("BD998")


def test_severity_of_a_variant_comes_from_the_catalogue():
    # BD180 for an older release of the same line is information (its [check.variants.minor])
    found = findings_for(dataclasses.replace(build(), version="0.4.0", commit="1234567"), machine())
    old = [f for f in found if f.code == "BD180"]
    assert len(old) == 1 and old[0].severity == "info"
    assert check_for("BD180")["variants"]["minor"]["severity"] == "info"
