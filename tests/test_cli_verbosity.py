"""-q and -v count and cancel as in pip: the real command group (in this process: click's runner calls the
same ``cli`` that ``main`` calls), and the Console it builds."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner, Result

from builddoctor import cli as cli_mod
from builddoctor.cli.options import verbosity_levels
from builddoctor.console import Console

# A command line with two problems (a deprecated option, an unknown one): a report on stdout, exit 1.
FLAGS = ["flags", "cmake -B build -DLLAMA_CUBLAS=ON -DGGML_NO_SUCH_OPTION=ON"]


def bd(*args: str) -> Result:
    cli_mod._register()
    return CliRunner().invoke(cli_mod.cli, list(args), prog_name="builddoctor")


@pytest.mark.parametrize(
    ("v", "q", "want"),
    [
        (0, 0, (0, 0)),
        (1, 0, (1, 0)),
        (0, 1, (0, 1)),
        (0, 2, (0, 2)),
        (0, 3, (0, 3)),
        (1, 1, (0, 0)),
        (2, 1, (1, 0)),
        (1, 3, (0, 2)),
    ],
)
def test_levels_are_one_net_count(v: int, q: int, want: tuple[int, int]) -> None:
    assert verbosity_levels(v, q) == want


def test_quiet_drops_the_report_but_not_the_verdict() -> None:
    plain = bd(*FLAGS)
    assert plain.exit_code == 1, plain.stderr
    assert "LLAMA_CUBLAS" in plain.stdout
    for q in ("-q", "-qq", "-qqq", "--quiet"):
        quiet = bd(q, *FLAGS)
        assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (1, "", ""), q


def test_verbose_and_quiet_cancel_out() -> None:
    plain = bd(*FLAGS)
    for args in (("-v", "-q"), ("-q", "-v"), ("-vq",), ("-vv", "-qq")):
        both = bd(*args, *FLAGS)
        assert (both.exit_code, both.stdout) == (plain.exit_code, plain.stdout), args
    # one -v left over is -v: the same report, with the info lines and codes -v adds
    assert bd("-vv", "-q", *FLAGS).stdout == bd("-v", *FLAGS).stdout


def test_quiet_still_prints_json() -> None:
    plain, quiet = bd(FLAGS[0], "--json", FLAGS[1]), bd("-qq", FLAGS[0], "--json", FLAGS[1])
    assert quiet.stdout and quiet.stdout == plain.stdout


def test_console_levels(capsys: pytest.CaptureFixture[str]) -> None:
    """-q: the report text goes, status lines on stderr stay; -qq: those go too."""
    for quiet, want_out, want_err in ((0, "report\n", "status\n"), (1, "", "status\n"), (2, "", ""), (3, "", "")):
        out = io.StringIO()
        con = Console(quiet=quiet, color=False, stream=out)
        con.echo("report")
        con.echo("status", err=True)
        con.json({"k": 1})
        assert out.getvalue() == want_out + '{\n  "k": 1\n}\n', quiet
        assert capsys.readouterr().err == want_err, quiet
