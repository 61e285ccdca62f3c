"""Monolithic builds: the ggml CPU backend linked into one file that is not named for it (a Python extension
module, a libllama.so with ggml inside). They get the same CPU verdict as a split libggml-cpu.so.

The files are the object files of the real SSE-only test build (tests/llama_builds.py) linked into one shared
object (tests/elf_fixtures.make_monolithic): real llama.cpp code, no compile. Expectations come from a recorded
machine (the Zen 4 cpuinfo fixture: AVX-512) and from this host's own CPU features.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builddoctor.findings import findings_for
from builddoctor.findings.rules import _level_of
from builddoctor.inspect import inspect_paths
from builddoctor.probe import cpu_from_file, machine_profile
from tests import elf_fixtures as fx

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def modules(sse_build, tmp_path_factory):
    if fx.GXX is None:
        pytest.skip("g++ is not installed")
    root = sse_build.parent
    d = tmp_path_factory.mktemp("mono")
    return {
        "module": fx.make_monolithic(d / "module", root),
        "stripped": fx.make_monolithic(d / "stripped", root, strip=True),
        "libllama": fx.make_monolithic(d / "libllama", root, name="libllama.so", export="llama_backend_init"),
    }


def _profile(path: Path):
    (build,), _msgs = inspect_paths([path], run=False)
    return build


def _zen4():
    m = machine_profile()
    m.cpu = cpu_from_file(FIX / "cpuinfo/zen4-epyc-9r14-aws.txt").cpu
    return m


@pytest.mark.parametrize("kind", ["module", "stripped", "libllama"])
def test_monolithic_cpu_backend_found(modules, kind):
    b = _profile(modules[kind])
    assert "CPU" in b.backends
    assert b.isa_level == "sse" and "AVX" not in b.isa and "SSSE3" in b.isa


@pytest.mark.parametrize("kind", ["module", "stripped", "libllama"])
def test_monolithic_sse_build_warned_like_split_one(modules, sse_build, kind):
    """On an AVX-512 machine (recorded Zen 4) the module gets the warning the split libggml-cpu.so gets."""
    zen4 = _zen4()
    split = [f for f in findings_for(_profile(sse_build), zen4) if f.code == "BD130"]
    mono = [f for f in findings_for(_profile(modules[kind]), zen4) if f.code == "BD130"]
    assert len(split) == 1 and len(mono) == 1
    assert mono[0].title == split[0].title and "AVX512" in mono[0].title
    assert modules[kind].name in mono[0].evidence


def test_monolithic_on_this_host(modules):
    """This host's verdict follows its own CPU: a warning when it has AVX or better, else an ok CPU line."""
    live = machine_profile()
    if live.cpu.arch != "x86_64":
        pytest.skip("x86-64 code")
    found = findings_for(_profile(modules["module"]), live)
    warned = [f for f in found if f.code == "BD130"]
    if _level_of(live.cpu.features) == "sse":
        assert not warned and any(f.code == "ok:cpu" for f in found)
    else:
        assert len(warned) == 1 and _level_of(live.cpu.features).upper() in warned[0].title


def test_hot_functions_match_readelf(sse_build):
    """Every defined function whose name a [hot] pattern matches is decoded, as many as readelf lists: the
    old whole-table regex let one `_ZN.*ggml.*repack` match run across names and swallow most others."""
    import re
    import subprocess

    from builddoctor.inspect import isa
    from builddoctor.inspect.binary import analyze

    lib = (sse_build / "libggml-cpu.so").resolve()
    out = subprocess.run(["readelf", "-sW", str(lib)], capture_output=True, text=True, check=True).stdout
    pats = [re.compile(p) for p in isa._data()["hot"]["patterns"]]
    want = set()
    for line in out.splitlines():
        cols = line.split()  # Num: Value Size Type Bind Vis Ndx Name
        if len(cols) >= 8 and cols[3] in ("FUNC", "IFUNC") and cols[6] != "UND" and 0 < int(cols[2], 0) <= 1 << 20:
            name = cols[7].split("@")[0]
            if any(p.match(name) for p in pats):
                want.add(name)
    m = re.search(r"decoded (\d+) hot functions", analyze(lib).isa_how)
    assert len(want) > 100 and m and int(m.group(1)) == len(want)
