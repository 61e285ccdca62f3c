"""Undo a replace or rollback that was killed half-way, from the journal it left in its backup.

Each step is undone only when its file still holds what the step put there; a file changed since,
or an undo copy missing or altered, stops the recovery before anything changes.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
from pathlib import Path

from builddoctor.install.files import (
    DONE,
    JOURNAL,
    KEPT,
    TEMP,
    UNDO,
    BackupDamaged,
    FilesChanged,
    InstallError,
    backups_dir,
    failure_exit,
    put,
    reason,
    same,
    stamped_folders,
    state_of,
)
from builddoctor.install.journal import Journal, JournalStep, load_journal
from builddoctor.install_marker import Unusable, open_regular

#: (command, folder, paths put back, words) of one interrupted command undone
Undone = tuple[str, str, list[str], str]


def recover_interrupted(root: Path | None = None, backup: Path | None = None) -> list[str]:
    """Undo every replace or rollback that was killed half-way (its journal is still on disk), newest
    step first, to the files as they were before it; what was done, in words. An interrupted rollback's
    backup can be rolled back again; an interrupted replace's backup goes (it was never completed)."""
    return [said for _cmd, _dest, _undone, said in recover_all(root, backup)]


def recover_all(root: Path | None, backup: Path | None) -> list[Undone]:
    """Each interrupted command in ``root`` (and ``backup``, wherever it is) undone, oldest first."""
    found = stamped_folders(Path(root or backups_dir()), lambda p: os.path.lexists(p / JOURNAL))
    if backup is not None and os.path.lexists(Path(backup) / JOURNAL) and Path(backup) not in found:
        found.append(Path(backup))
    return [recover(b) for b in found]


def recover(backup: Path) -> Undone:
    """Undo the interrupted command whose journal is in ``backup``, under the journal's lock."""
    path = backup / JOURNAL
    try:
        fd = open_regular(path)
    except Unusable as exc:
        raise BackupDamaged(
            f"the journal of an interrupted replace or rollback in {backup} is unusable: {exc}; nothing was changed."
        ) from None
    try:
        _lock(fd, path)
        j = _read(backup, path)
        undone = _undo(backup, j, _steps_to_undo(backup, j))
        _remove_temporaries(j)
        return _close(backup, j, undone)
    finally:
        os.close(fd)


def _lock(fd: int, path: Path) -> None:
    """The journal's lock, or a refusal: a live replace or rollback holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise InstallError(
            f"another builddoctor is replacing or rolling back files now (its journal "
            f"{path} is locked); run again when it is done. Nothing was changed."
        ) from None


def _read(backup: Path, path: Path) -> Journal:
    try:
        return load_journal(backup, path)
    except Unusable as exc:
        raise BackupDamaged(
            f"the journal of an interrupted replace or rollback in {backup} is damaged: {exc}; "
            f"nothing was changed; the old files are in {backup}/files/."
        ) from None


def _steps_to_undo(backup: Path, j: Journal) -> list[JournalStep]:
    """The steps that were done (their file holds what they put there); refused when a file holds
    neither that nor what was there before, or the copy to put back is not the one saved."""
    todo, odd = [], []
    for st in j.steps:
        cur = state_of(Path(st.dest))
        if same(cur, st.undo):
            continue
        if not same(cur, st.want):
            odd.append(os.path.basename(st.dest))
        elif st.undo.type == "file" and state_of(Path(str(st.undo_src))).sha256 != st.undo.sha256:
            raise BackupDamaged(
                f"an interrupted {j.command} of {j.dest_dir} left a journal in {backup}, but "
                f"the copy of {st.dest} it needs ({st.undo_src}) is missing or altered; nothing "
                "was changed."
            )
        else:
            todo.append(st)
    if odd:
        raise FilesChanged(
            f"an interrupted {j.command} of {j.dest_dir} left a journal in {backup}, but "
            f"{', '.join(odd[:20])} changed since; nothing was changed. The files as they were "
            f"before it are in {backup}/files/ and {backup}/{UNDO}/."
        )
    return todo


def _undo(backup: Path, j: Journal, todo: list[JournalStep]) -> list[str]:
    """Put back what each step in ``todo`` replaced, newest first; the paths put back."""
    undone: list[str] = []
    for st in reversed(todo):
        try:
            put(Path(st.dest), st.undo, Path(st.undo_src) if st.undo_src else None)
        except (OSError, InstallError) as exc:
            raise InstallError(
                f"undoing the interrupted {j.command} of {j.dest_dir} failed at "
                f"{os.path.basename(st.dest)} ({reason(exc)}); "
                f"{len(undone)} file(s) were put back, the journal in {backup} is kept: run "
                "again to finish.",
                exit_code=failure_exit(exc),
            ) from None
        undone.append(st.dest)
    return undone


def _remove_temporaries(j: Journal) -> None:
    """The temporary files an interrupted ``put`` left beside the journal's files."""
    for name in {os.path.basename(st.dest) for st in j.steps}:
        for tmp in Path(j.dest_dir).glob(f".{glob.escape(name[:200])}.bd-*"):
            if TEMP.fullmatch(tmp.name) and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)


def _close(backup: Path, j: Journal, undone: list[str]) -> Undone:
    """Clear away what the undone command left: a replace's whole backup (never completed), or a
    rollback's copies and journal (its backup stays, to be rolled back again)."""
    if j.command == "replace":
        shutil.rmtree(backup, ignore_errors=True)
        (backup.parent / f".{backup.name}.marker.json").unlink(missing_ok=True)
        return (
            j.command,
            j.dest_dir,
            undone,
            f"an interrupted replace of the files in {j.dest_dir} was undone: "
            f"{len(undone)} file(s) put back as they were before it",
        )
    (backup / DONE).unlink(missing_ok=True)
    shutil.rmtree(backup / UNDO, ignore_errors=True)
    for st in j.steps:
        if st.undo_src and os.path.dirname(st.undo_src) == str(backup / KEPT):
            Path(st.undo_src).unlink(missing_ok=True)
    (backup / JOURNAL).unlink(missing_ok=True)
    return (
        j.command,
        j.dest_dir,
        undone,
        f"an interrupted rollback of the files in {j.dest_dir} was undone: "
        f"{len(undone)} file(s) put back as they were before it (the backup in {backup} is kept)",
    )
