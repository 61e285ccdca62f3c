"""The concepts that had two implementations now have one: each reader here is the one the others call."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from builddoctor import build, platforms, versions
from builddoctor.cmake_bool import is_off, is_on, same_value
from builddoctor.findings.rules import _variant_rank
from builddoctor.probe import load_profile
from builddoctor.probe.cpu import variants_for
from builddoctor.resolve import platform_key

MACHINES = Path(__file__).parent / "fixtures" / "machines"


@pytest.mark.parametrize(
    "value,on,off",
    [
        ("ON", True, False),
        ("yes", True, False),
        (" 1 ", True, False),
        ("OFF", False, True),
        ("", False, True),
        ("n", False, True),
        ("Foo-NOTFOUND", False, True),
        ("maybe", False, False),
        (None, False, False),
    ],
)
def test_cmake_truthiness(value, on, off):
    assert is_on(value) is on and is_off(value) is off


def test_same_value_reads_switches_as_cmake_does():
    assert same_value("ON", "true") and same_value("0", "OFF") and not same_value("ON", "OFF")
    assert same_value("86;89", "86;89") and not same_value("86", "89")


def test_version_order_never_raises_on_forged_input():
    forged = "2." + "9" * 5000
    assert versions.parse(forged) is None and versions.parse("not a version") is None
    assert max(["2.34", forged, "2.38", "junk"], key=versions.sort_key) == "2.38"
    assert versions.parse("12.10") > versions.parse("12.4")


@pytest.mark.parametrize("path", sorted(MACHINES.glob("*.json")), ids=lambda p: p.stem)
def test_one_variant_scorer(path):
    """The findings rank CPU code with the probe's scorer: same best variant for every recorded CPU and
    for the CPU with features taken away one by one."""
    m = load_profile(path)
    feats = list(m.cpu.features)
    for n in range(len(feats) + 1):
        have = set(feats[:n])
        ranked = variants_for(have, m.os, m.cpu.arch)
        assert _variant_rank(have, m) == (ranked[-1] if ranked else (None, 0))
    if m.cpu.variant:
        assert _variant_rank(set(feats), m)[0] == m.cpu.variant


@pytest.mark.parametrize("path", sorted(MACHINES.glob("*.json")), ids=lambda p: p.stem)
def test_one_reading_of_the_distribution(path):
    """A profile's distribution and this machine's are read by the same function (install_keys)."""
    m = load_profile(path)
    assert platform_key(m) == platforms.install_keys(m.os, m.os_version)
    doc = json.loads(path.read_text())
    if "debian" in (doc.get("os_version") or "").lower() or "ubuntu" in (doc.get("os_version") or "").lower():
        assert platform_key(m) == ["debian"]


def test_this_machines_distribution_uses_the_same_words(monkeypatch):
    monkeypatch.setattr(platforms, "this_description", lambda: "rocky rhel centos fedora")
    assert build._distro() == "fedora"
    monkeypatch.setattr(platforms, "this_description", lambda: "")
    assert build._distro() == "debian"  # unknown: the first install key, as before


def test_arch_spellings_are_one_table():
    from builddoctor.findings.rules import _same_arch
    from builddoctor.recipes import norm_arch

    for a, b in [("amd64", "x86_64"), ("x86-64", "x86_64"), ("arm64", "aarch64"), ("ARM64", "aarch64")]:
        assert _same_arch(a, b) and norm_arch(a) == platforms.canonical_arch(b)


def test_the_pin_has_one_reader():
    from builddoctor.source import load_pin

    pin = load_pin()
    assert build.pin_data() == (pin.short_commit, pin.build_number)


def test_concern_recipes_come_in_their_priority_order():
    from builddoctor.resolve import resolve

    plan = resolve(load_profile(MACHINES / "zen3-desktop.json"))
    assert plan.recipes[:2] == ["release", "no-network"]


def test_isa_labels_come_from_data():
    from builddoctor.recipes import load_recipes
    from builddoctor.resolve import Facts

    m = load_profile(MACHINES / "zen3-desktop.json")
    rs = {r.name: r for r in load_recipes()}
    sse = dataclasses.replace(m, cpu=dataclasses.replace(m.cpu, features=["SSE3"]))
    assert Facts(sse, rs)._cpu_isa() == "SSE only, no AVX"
    amx = dataclasses.replace(
        m, cpu=dataclasses.replace(m.cpu, features=["AVX", "AVX2", "AVX512", "AVX512_BF16", "AMX_TILE"])
    )
    assert Facts(amx, rs)._cpu_isa() == "AVX-512 (BF16), AMX"
