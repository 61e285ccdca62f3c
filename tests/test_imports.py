"""How the package's modules import each other: what the command line loads before a command runs."""

from __future__ import annotations

import ast
import sys

from builddoctor import proc

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
    from builddoctor.cli.tune_cmd import tune_cmd
    from builddoctor.tune import BACKENDS, OBJECTIVES

    choices = {p.name: list(p.type.choices) for p in tune_cmd.params if p.name in ("backend", "objective")}
    assert choices == {"backend": list(BACKENDS), "objective": list(OBJECTIVES)}
