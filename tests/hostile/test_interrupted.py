"""A replace or rollback SIGKILLed half-way: the next rollback or replace finds its journal and undoes it,
byte for byte, before it does its own work; a journal still in use or forged is refused, nothing changed.

Real processes, really killed: the test hook PAUSE_HOOK (honoured only under pytest) makes them wait
after each file, so that the kill lands between two files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builddoctor import install
from tests.hostile.test_rollback import Setup, home, rollback, s, tree  # noqa: F401 - home, s: fixtures
from tests.test_install import make_new_build, make_old_install

REPO = Path(__file__).resolve().parents[2]

REPLACE = """
import sys
from pathlib import Path
from builddoctor import install
from builddoctor.profiles import BuildResult
install.replace(BuildResult.from_json(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
print("REPLACED")
"""


def paused(argv: list[str], progress: Path, at: int = 1) -> subprocess.Popen:
    """``argv`` started with the pause hook: it appends each finished step to ``progress`` and waits
    after step ``at``."""
    return subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), install.PAUSE_HOOK: f"{progress}:{at}"},
    )


def killed_after(p: subprocess.Popen, progress: Path, steps: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if progress.exists() and len(progress.read_text().split()) >= steps:
                break
            assert p.poll() is None, p.communicate()
            time.sleep(0.05)
        else:
            raise AssertionError(f"step {steps} was not reached in {timeout} s")
    finally:
        p.kill()
        p.wait(timeout=10)


def rollback_cli() -> list[str]:
    return [sys.executable, "-m", "builddoctor", "rollback"]


@pytest.mark.parametrize("at", ["first", "last"])
def test_a_rollback_killed_half_way_is_finished_by_the_next(s, tmp_path, at):
    progress = tmp_path / "progress"
    steps = 1 if at == "first" else len(s.manifest()["files"])
    killed_after(paused(rollback_cli(), progress, steps), progress, steps)
    half = tree(s.dest)
    assert half != s.replaced, "the kill came after a file was restored"
    assert at == "last" or half != s.before, "and before the others were"
    assert (s.backup / install.JOURNAL).exists()
    res = rollback()
    assert res.exit_code == 0, res.output
    assert "interrupted rollback" in res.output
    assert tree(s.dest) == s.before, "restored byte for byte, no temporary file left"
    assert install.list_backups() == []
    assert not (s.backup / install.JOURNAL).exists() and not (s.backup / ".undo").exists()
    assert tree(s.other) == s.other_tree


def _second_folder(s: Setup, tmp_path: Path):
    dest = tmp_path / "opt" / "bin"
    make_old_install(dest)
    new = make_new_build(tmp_path / "build2", b"two")
    spec = tmp_path / "build2.json"
    spec.write_text(new.to_json())
    return dest, new, spec


def test_a_replace_killed_half_way_is_undone_by_the_next_rollback(s, tmp_path):
    dest, _new, spec = _second_folder(s, tmp_path)
    before = tree(dest)
    first_backup = tree(s.backup)
    progress = tmp_path / "progress"
    killed_after(paused([sys.executable, "-c", REPLACE, str(spec), str(dest)], progress, 2), progress, 2)
    assert tree(dest) != before, "the kill came after files were replaced"
    res = rollback()
    assert res.exit_code == 0, res.output
    assert "interrupted replace" in res.output
    assert tree(dest) == before, "the folder is as it was before the replace, byte for byte"
    assert install.list_backups() == [s.backup], "the unfinished replace's backup went; the older one stays"
    assert tree(s.backup) == first_backup and tree(s.dest) == s.replaced, "the other folder's rollback was not run"


def test_a_replace_killed_half_way_is_undone_by_the_next_replace(s, tmp_path):
    dest, new, spec = _second_folder(s, tmp_path)
    before = tree(dest)
    progress = tmp_path / "progress"
    killed_after(paused([sys.executable, "-c", REPLACE, str(spec), str(dest)], progress), progress, 1)
    got = install.replace(new, dest)
    assert any("interrupted replace" in said for said in got.recovered), got.recovered
    assert (dest / "llama-cli").read_bytes() == Path(new.binaries[0]).read_bytes()
    res = rollback()
    assert res.exit_code == 0, res.output
    assert tree(dest) == before


def test_a_journal_in_use_is_left_alone(s, tmp_path):
    """A second builddoctor while the first is still at work: refused, nothing touched."""
    progress = tmp_path / "progress"
    p = paused(rollback_cli(), progress)
    try:
        deadline = time.monotonic() + 60
        while not progress.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        half = tree(s.dest)
        res = rollback()
        assert res.exit_code == 1, res.output
        assert "another builddoctor" in res.output
        assert tree(s.dest) == half
    finally:
        p.kill()
        p.wait(timeout=10)
    assert rollback().exit_code == 0
    assert tree(s.dest) == s.before


@pytest.mark.parametrize("how", ["outside", "src-outside", "not-json", "fifo"])
def test_a_forged_journal_is_refused_and_nothing_changes(s, tmp_path, how):
    victim = s.other / "victim"
    journal = s.backup / install.JOURNAL
    step = {
        "dest": str(s.dest / "llama-cli"),
        "want": {"type": "absent"},
        "undo": {"type": "file", "sha256": "0" * 64, "mode": 0o755},
        "undo_src": str(s.backup / "files" / "000-llama-cli"),
    }
    if how == "outside":
        step.update(
            dest=str(victim),
            want={"type": "file", "sha256": install.files.state_of(victim).sha256},
            undo={"type": "absent"},
            undo_src=None,
        )
    elif how == "src-outside":
        step.update(want=install.files.state_of(s.dest / "llama-cli").to_dict(), undo_src=str(s.other / "payload"))
    if how == "not-json":
        journal.write_bytes(b"\x00{not json")
    elif how == "fifo":
        os.mkfifo(journal)
    else:
        journal.write_text(json.dumps({"format": 2, "command": "replace", "dest_dir": str(s.dest), "steps": [step]}))
    backup_before = tree(s.backup)
    res = rollback()
    assert res.exit_code == 2, res.output
    assert "journal" in res.output and "nothing was changed" in res.output
    assert tree(s.dest) == s.replaced and tree(s.other) == s.other_tree and tree(s.backup) == backup_before


def test_the_pause_hook_is_ignored_outside_pytest(s, tmp_path):
    progress = tmp_path / "progress"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update({"PYTHONPATH": str(REPO), install.PAUSE_HOOK: f"{progress}:1"})
    done = subprocess.run(rollback_cli(), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not progress.exists()
    assert tree(s.dest) == s.before
