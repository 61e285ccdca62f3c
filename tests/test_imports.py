"""How the package's modules import each other: what the command line loads before a command runs, what
the wheel build's environment can import, and no import cycle (each module imported first)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from builddoctor import proc
from builddoctor.cli.tune_cmd import tune_cmd
from builddoctor.tomlload import load_toml
from builddoctor.tune import BACKENDS, OBJECTIVES

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "builddoctor"

#: the stage packages and modules: a sub-command imports them when it runs, not at start-up
STAGES = (
    "bench",
    "build",
    "findings",
    "fix",
    "inspect",
    "install",
    "probe",
    "resolve",
    "source",
    "tune",
)


def test_command_line_start_up_loads_no_stage():
    """Every sub-command registered (what `builddoctor --help` and each command do first) loads no
    stage: they come when a command runs, so that `--help` and a quick command start fast."""
    code = (
        "import sys, builddoctor.cli as c; c._register(); "
        "print(sorted(m for m in sys.modules if m.startswith('builddoctor.')))"
    )
    res = proc.run([sys.executable, "-c", code], timeout=60)
    assert res.ok, res.stderr
    loaded = ast.literal_eval(res.stdout)
    assert "builddoctor.cli.tune_cmd" in loaded
    assert [m for m in loaded if m.split(".")[1] in STAGES] == []


def test_tune_command_choices_are_the_tunes():
    """`tune --backend` and `--objective` spell the tune package's names out (importing them would load
    the tune package at start-up): the two lists are the same."""
    choices = {p.name: list(p.type.choices) for p in tune_cmd.params if p.name in ("backend", "objective")}
    assert choices == {"backend": list(BACKENDS), "objective": list(OBJECTIVES)}


#: what the wheel build's isolated environment lacks ([build-system].requires: scikit-build-core, pip,
#: tomli, gguf, numpy): the planner and the compute gate run there (CMakeLists.txt)
NOT_IN_THE_BUILD_ENVIRONMENT = ("click", "cpuinfo", "elftools", "iced_x86", "pefile", "lief", "auditwheel")


def test_the_planner_and_the_compute_gate_import_without_the_runtime_dependencies():
    """`python -m builddoctor._buildplan` and `-m builddoctor.compute_gate` run in pip's build environment:
    what they import at module level must not need click, py-cpuinfo, pyelftools, iced-x86 or pefile."""
    code = (
        "import sys\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {NOT_IN_THE_BUILD_ENVIRONMENT!r}:\n"
        "            raise ImportError(name + ' is not in the build environment')\n"
        "sys.meta_path.insert(0, Absent())\n"
        "import builddoctor._buildplan, builddoctor.compute_gate\n"
        "print('ok')\n"
    )
    res = proc.run([sys.executable, "-c", code], timeout=60)
    assert res.ok and res.stdout.strip() == "ok", res.stderr


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [n for n in names if n != "builddoctor.__main__"]  # that one runs the CLI


def test_every_module_imports_first():
    """Each module imported first, in a fresh interpreter: an import cycle between a package's
    __init__ and its modules, or between modules, fails here whatever order the tests import in."""
    failed = {}
    for name in _modules():
        res = proc.run([sys.executable, "-c", f"import {name}"], timeout=60)
        if not res.ok:
            failed[name] = (res.stderr.strip().splitlines() or ["?"])[-1]
    assert failed == {}


def test_the_acyclic_contract_names_every_subpackage():
    """pyproject's import-linter contract "no import cycle inside a subpackage" lists every package
    under builddoctor/ (lint-imports checks only those it names)."""
    contracts = load_toml(REPO / "pyproject.toml")["tool"]["importlinter"]["contracts"]
    inside = next(c for c in contracts if c["name"] == "no import cycle inside a subpackage")
    packages = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("*/__init__.py")}
    assert sorted(inside["ancestors"]) == sorted(packages)
