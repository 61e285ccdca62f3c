"""The named parts around builddoctor.proc: which processes a run owns (on a recorded process
table, so that no real process is needed) and the bounded capture of a child's output."""

from __future__ import annotations

import os

from builddoctor import proc_tree
from builddoctor.proc_output import LINE_MAX, Capture, Lines


def test_a_run_owns_its_group_session_and_descendants_but_not_its_leader_or_zombies():
    me = os.getpid()
    leader = 10_000_001
    table = {
        leader: (me, leader, leader, "S"),
        leader + 1: (leader, leader, leader, "S"),  # its child, same group
        leader + 2: (1, leader + 2, leader, "S"),  # setsid'ed away from the group, same session
        leader + 3: (leader + 1, leader + 3, leader + 3, "S"),  # a grandchild in a session of its own
        leader + 4: (leader, leader, leader, "Z"),  # a zombie: nothing to kill
        leader + 5: (1, leader + 5, leader + 5, "S"),  # someone else's
    }
    got = proc_tree.members(leader, "no-such-marker", table)
    assert got == {leader + 1, leader + 2, leader + 3}


def test_capture_keeps_the_head_and_the_tail_and_says_what_it_cut():
    c = Capture(head=4, tail=3)
    for chunk in (b"ab", b"cdef", b"ghij"):
        c.add(chunk)
    assert c.total == 10
    assert c.text() == "abcd\n[... 3 bytes of output cut ...]\nhij"
    small = Capture(head=100, tail=10)
    small.add(b"all of it")
    assert small.text() == "all of it"


def test_lines_come_whole_across_chunks_and_an_endless_line_is_cut_once():
    got: list[str] = []
    lines = Lines(got.append)
    lines.add(b"one\r\ntw")
    lines.add(b"o\n")
    lines.add(b"x" * (LINE_MAX + 10))
    lines.add(b"still the long line\nthree")
    lines.close()
    assert got[:2] == ["one", "two"]
    assert got[2].endswith("[... line cut ...]") and len(got) == 4 and got[3] == "three"
