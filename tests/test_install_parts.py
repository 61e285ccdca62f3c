"""The named steps inside builddoctor.install, each on real files: the marker reader, the backup
names, the journal's choice of steps to undo, and the manifest's entry checks."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from builddoctor import paths
from builddoctor.install import files, recover
from builddoctor.install.journal import Journal, JournalStep
from builddoctor.install.manifest import BackupEntry, BackupManifest, check_entries
from builddoctor.install.replace import _choose_backup
from builddoctor.install_marker import MAX_MARKER, Unusable, read_marker, read_small


def _file(path: Path, data: bytes) -> files.FileState:
    path.write_bytes(data)
    return files.FileState("file", sha256=hashlib.sha256(data).hexdigest(), mode=0o644)


def test_the_marker_is_read_only_from_a_regular_file_and_only_its_string_fields(tmp_path):
    marker = tmp_path / paths.REPLACED_MARKER
    marker.write_text('{"build_dir": "/b", "backup": 7, "cmake_cache": "a\\u0000b", "other": "x"}')
    got = read_marker(tmp_path)
    assert got is not None and got.build_dir == "/b" and got.backup is None and got.cmake_cache is None
    marker.unlink()
    (tmp_path / "real.json").write_text('{"build_dir": "/b"}')
    marker.symlink_to(tmp_path / "real.json")
    assert read_marker(tmp_path) is None, "a symlinked marker is not the one replace wrote"
    marker.unlink()
    os.mkfifo(marker)
    assert read_marker(tmp_path) is None, "a FIFO neither blocks nor counts"


def test_a_small_file_over_its_cap_is_refused_not_cut(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_MARKER + 1))
    with pytest.raises(Unusable, match="over 64 KiB"):
        read_small(big, MAX_MARKER)
    assert read_small(big, MAX_MARKER + 1) == b"x" * (MAX_MARKER + 1)


def test_backups_are_ordered_by_number_and_a_taken_name_gets_the_next(tmp_path):
    for name in ("20260101-000000-10", "20260101-000000-2", "20260101-000000", "not-a-backup", ".partial"):
        (tmp_path / name).mkdir()
    found = files.stamped_folders(tmp_path, lambda p: True)
    assert [p.name for p in found] == ["20260101-000000", "20260101-000000-2", "20260101-000000-10"]
    dest = tmp_path / "dest"
    dest.mkdir()
    now = time.time()
    for t in (now, now + 1, now + 2):  # the clock may tick meanwhile: every second it could read is taken twice
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t))
        (tmp_path / stamp).mkdir(exist_ok=True)
        (tmp_path / f"{stamp}-2").mkdir(exist_ok=True)
    got = _choose_backup(tmp_path, dest)
    assert got.backup.name == f"{got.stamp}-3" and not got.backup.exists()
    assert got.old_marker.type == "absent" and got.marker == dest / paths.REPLACED_MARKER


def test_recovery_undoes_only_the_steps_done_and_refuses_a_file_changed_since(tmp_path):
    backup, dest = tmp_path / "backup", tmp_path / "dest"
    (backup / "files").mkdir(parents=True)
    dest.mkdir()
    old_a = _file(backup / "files" / "000-a", b"old a")
    new_a = _file(dest / "a", b"new a")  # step done: a holds what the step put there
    old_b = _file(dest / "b", b"old b")  # step not done: b still holds what was there
    new_b = files.FileState("file", sha256=hashlib.sha256(b"new b").hexdigest())
    steps = [
        JournalStep(str(dest / "a"), new_a, old_a, str(backup / "files" / "000-a")),
        JournalStep(str(dest / "b"), new_b, old_b, str(backup / "files" / "001-b")),
    ]
    j = Journal(format=files.FORMAT, command="replace", dest_dir=str(dest), steps=steps)
    assert [st.dest for st in recover._steps_to_undo(backup, j)] == [str(dest / "a")]
    (dest / "b").write_bytes(b"the user's own b")
    with pytest.raises(files.FilesChanged, match="b changed since"):
        recover._steps_to_undo(backup, j)
    (dest / "b").write_bytes(b"old b")
    (backup / "files" / "000-a").write_bytes(b"altered copy")
    with pytest.raises(files.BackupDamaged, match="missing or altered"):
        recover._steps_to_undo(backup, j)


def _manifest(dest: str, *entries: BackupEntry) -> BackupManifest:
    marker = BackupEntry(
        path=f"{dest}/{paths.REPLACED_MARKER}",
        kind="added",
        old=files.FileState("absent"),
        new=files.FileState("marker"),
    )
    return BackupManifest(format=files.FORMAT, created="", build="", dest_dir=dest, files=[*entries, marker])


def test_the_manifest_check_takes_what_replace_writes_and_nothing_else(tmp_path):
    sha = "0" * 64
    good = BackupEntry(
        path="/opt/llama/llama-cli",
        kind="replaced",
        old=files.FileState("file", sha256=sha, mode=0o755, backup="000-llama-cli"),
        new=files.FileState("file", sha256=sha),
    )
    check_entries(_manifest("/opt/llama", good))
    outside = BackupEntry(**{**good.__dict__, "path": "/opt/llama/../etc/passwd"})
    with pytest.raises(Unusable, match="not a file directly in /opt/llama"):
        check_entries(_manifest("/opt/llama", outside))
    wrong_copy = BackupEntry(**{**good.__dict__, "old": files.FileState("file", sha256=sha, mode=0o755, backup="x")})
    with pytest.raises(Unusable, match="does not hold what replace records"):
        check_entries(_manifest("/opt/llama", wrong_copy))
    added_program = BackupEntry(path="/opt/llama/llama-cli", kind="added", old=files.FileState("absent"), new=good.new)
    with pytest.raises(Unusable, match="for an 'added' file"):
        check_entries(_manifest("/opt/llama", added_program))
    with pytest.raises(Unusable, match="listed twice"):
        check_entries(_manifest("/opt/llama", good, good))
    no_marker = _manifest("/opt/llama", good)
    no_marker.files.pop()
    with pytest.raises(Unusable, match="does not list the marker"):
        check_entries(no_marker)
