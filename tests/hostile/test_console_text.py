"""Foreign text and builddoctor's own colours on one line: only the own escapes reach a terminal."""

from __future__ import annotations

import io

import click

from builddoctor.console import Console, bound_json, listing, safe_text


class Terminal(io.StringIO):
    def isatty(self) -> bool:  # click writes colour only to a terminal
        return True


def test_own_colours_pass_and_foreign_ones_are_shown_escaped():
    out = Terminal()
    con = Console(color=True, stream=out)
    con.echo(con.style("ok", "ok") + " from the binary: \x1b[31mred\x1b[0m " + con.style("\x1b]0;t\x07", "dim"))
    text = out.getvalue()
    assert text.startswith(click.style("ok", fg="green", bold=False))
    assert "from the binary: \\x1b[31mred\\x1b[0m" in text
    assert "\\x1b]0;t\\x07" in text, "foreign text inside builddoctor's own style is filtered too"
    assert text.count("\x1b") == click.style("ok", fg="green", bold=False).count("\x1b") * 2


def test_without_colour_no_escape_and_no_mark_is_left():
    out = io.StringIO()
    con = Console(color=False, stream=out)
    con.echo(con.style("bold", bold=True) + " \x1b[1mforeign")
    assert out.getvalue() == "bold \\x1b[1mforeign\n"
    assert safe_text(Console(color=True).style("x", "ok")) == "x"


def test_a_cut_line_keeps_no_half_mark_and_ends_its_colour():
    con = Console(color=True, stream=io.StringIO())
    line = safe_text("x" * 1995 + con.style("coloured", "error") + "y" * 100, keep_style=True)
    assert line.endswith("\x1b[0m") and "more characters)" in line
    assert all(ord(c) < 0xF0000 for c in line)


def test_lists_are_cut_the_same_way_in_text_and_json():
    assert listing(range(25), 20).endswith("19, ... and 5 more")
    assert listing(["a"], 20) == "a"
    got = bound_json({"a": list(range(5)), "b": [{"c": list(range(4))}], "d": "x"}, limit=3)
    assert got["a"] == [0, 1, 2] and got["b"][0]["c"] == [0, 1, 2]
    assert got["truncated"] == [{"path": "a", "count": 5, "shown": 3}, {"path": "b[0].c", "count": 4, "shown": 3}]
    assert "truncated" not in bound_json({"a": [1, 2, 3]}, limit=3)
    assert bound_json(list(range(4)), limit=3) == {
        "items": [0, 1, 2],
        "truncated": [{"path": "items", "count": 4, "shown": 3}],
    }
