"""Restore the newest (or a named) backup, all or nothing, byte for byte.

The phases, in order: undo interrupted commands; choose the backup; check it (manifest, copies);
look at the folder now; decide which files changed since the replace (refused unless --force);
keep copies of what will be taken away; journal; apply.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from builddoctor import paths
from builddoctor.install.files import (
    DONE,
    JOURNAL,
    KEPT,
    UNDO,
    BackupDamaged,
    FilesChanged,
    FileState,
    InstallError,
    copy_verified,
    failure_exit,
    reason,
    same,
    state_of,
)
from builddoctor.install.journal import Failed, Step, end_journal, transact, write_journal
from builddoctor.install.manifest import BackupEntry, BackupManifest, list_backups, load_manifest
from builddoctor.install.recover import Undone, recover_all
from builddoctor.install_marker import Unusable, read_marker
from builddoctor.profiles import SCHEMA_VERSION, Serializable


@dataclass
class RollbackResult(Serializable):
    backup: str
    dest_dir: str
    restored: list[str] = field(default_factory=list)  # every path put back as it was before the replace
    kept: list[str] = field(default_factory=list)  # --force: what was there instead, now in <backup>/displaced/
    recovered: list[str] = field(default_factory=list)  # interrupted replaces/rollbacks undone first, in words
    schema_version: int = SCHEMA_VERSION


@dataclass
class _Restore:
    """One rollback once its backup is checked: what to put back, and the copies kept meanwhile."""

    backup: Path
    manifest: BackupManifest
    current: list[FileState]  # what each entry's path holds now
    steps: list[Step] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "<path> -> <its copy in displaced/>"
    kept_files: list[Path] = field(default_factory=list)

    @property
    def dest_dir(self) -> Path:
        return Path(self.manifest.dest_dir)

    @property
    def undo_dir(self) -> Path:
        return self.backup / UNDO

    @property
    def kept_dir(self) -> Path:
        return self.backup / KEPT

    def drop_copies(self) -> None:
        """Remove the copies made for this rollback: nothing changed, so none is needed."""
        shutil.rmtree(self.undo_dir, ignore_errors=True)
        for k in self.kept_files:
            k.unlink(missing_ok=True)


def rollback(backup: Path | None = None, *, backup_root: Path | None = None, force: bool = False) -> RollbackResult:
    """Restore the newest (or the given) backup, all or nothing, byte for byte.

    Every backup file's hash and every current file are checked against what replace recorded
    before anything changes; files changed since the replace are refused unless ``force``, and
    then kept in <backup>/displaced/. A replace or rollback killed half-way is undone first
    (``recover_interrupted``); an interrupted replace undone is itself the rollback.
    """
    undone = recover_all(backup_root, Path(backup).absolute() if backup is not None else None)
    recovered = [said for *_rest, said in undone]
    instead = _recovery_was_the_rollback(undone, backup, recovered)
    if instead is not None:
        return instead
    backup = _choose(backup, backup_root)
    manifest, manifest_sha = _checked_manifest(backup)
    r = _Restore(backup, manifest, _current_states(backup, manifest))
    changed = _changed_since(r, manifest_sha, force)
    _keep_copies(r, {e.path for e, _ in changed})
    _apply(r)
    return RollbackResult(
        backup=str(backup),
        dest_dir=str(r.dest_dir),
        restored=[e.path for e in manifest.files],
        kept=r.kept,
        recovered=recovered,
    )


def _recovery_was_the_rollback(
    undone: list[Undone], backup: Path | None, recovered: list[str]
) -> RollbackResult | None:
    """The last replace (or the one asked for) was never completed and is undone now: that was the rollback."""
    replaces = [u for u in undone if u[0] == "replace"]
    if not replaces or (backup is not None and os.path.lexists(backup)):
        return None
    _cmd, dest, put_back, _said = replaces[-1]
    return RollbackResult(
        backup="(the interrupted replace's, removed)", dest_dir=dest, restored=put_back, recovered=recovered
    )


def _choose(backup: Path | None, backup_root: Path | None) -> Path:
    """The backup to restore: the one given, or the newest not rolled back; refused when there is none."""
    if backup is None:
        found = list_backups(backup_root)
        if not found:
            raise InstallError(
                "There is no backup to roll back to: `builddoctor fix --replace` makes one before it replaces files."
            )
        backup = found[-1]
    backup = Path(backup).absolute()
    if not os.path.isdir(backup):
        raise InstallError(f"{backup}: no such backup.")
    if os.path.lexists(backup / DONE):
        raise InstallError(f"The backup in {backup} was already rolled back.")
    return backup


def _damaged(backup: Path, why: str) -> BackupDamaged:
    return BackupDamaged(
        f"the backup in {backup} is damaged: {why}; nothing was changed; the files are in {backup}/files/."
    )


def _checked_manifest(backup: Path) -> tuple[BackupManifest, str]:
    """The backup's manifest and its sha256, once every copy it lists is the file replace saved."""
    if os.path.islink(backup):
        raise _damaged(backup, "it is a symlink, not the folder replace made")
    try:
        manifest, manifest_sha = load_manifest(backup)
    except Unusable as exc:
        raise _damaged(backup, str(exc)) from None
    files_dir = backup / "files"
    if any(e.old.backup for e in manifest.files) and (os.path.islink(files_dir) or not files_dir.is_dir()):
        raise _damaged(backup, "its files/ folder is missing or a symlink")
    for e in manifest.files:
        if e.old.backup:
            got = state_of(files_dir / e.old.backup)
            if got.type != "file":
                why = {"absent": "is missing", "link": "is a symlink"}.get(got.type, "is not a regular file")
                raise _damaged(backup, f"the copy of {e.path} (files/{e.old.backup}) {why}")
            if got.sha256 != e.old.sha256:
                raise _damaged(
                    backup,
                    f"the copy of {e.path} (files/{e.old.backup}) is not the file replace saved "
                    f"(sha256 {(got.sha256 or '')[:12]}, recorded {(e.old.sha256 or '')[:12]})",
                )
    return manifest, manifest_sha


def _current_states(backup: Path, manifest: BackupManifest) -> list[FileState]:
    """What each path of the manifest holds now; refused when the folder or a path is no longer a file or link."""
    dest_dir = Path(manifest.dest_dir)
    if not dest_dir.is_dir():
        raise FilesChanged(
            f"{dest_dir}, where the backup in {backup} was made, is not a folder any more; nothing was changed."
        )
    current = [state_of(Path(e.path)) for e in manifest.files]
    odd = [e.path for e, cur in zip(manifest.files, current, strict=True) if cur.type == "other"]
    if odd:
        raise FilesChanged(
            f"{', '.join(odd)} {'is' if len(odd) == 1 else 'are'} now a folder or a special file; "
            "rollback puts back only files and links. Move it away and run again; nothing was changed."
        )
    return current


def _unconfirmed(r: _Restore, manifest_sha: str) -> str:
    """Why nothing shows that the backup belongs to the files there now, or "" when the marker does.

    The marker replace left names this backup and its manifest's sha256: only then do the entries
    belong to that folder, and only then is a file that matches what replace installed safe to take away."""
    backup, dest_dir = r.backup, r.dest_dir
    mark = read_marker(dest_dir)
    if (
        r.manifest.format >= 2
        and mark is not None
        and mark.backup == backup.name
        and mark.manifest_sha256 != manifest_sha
    ):
        raise _damaged(
            backup, f"manifest.json is not the one replace wrote (the marker in {dest_dir} records another sha256)"
        )
    if r.manifest.format < 2:
        return (
            f"The backup in {backup} was made by an older builddoctor that did not record what it "
            f"installed, so rollback cannot tell whether the files in {dest_dir} changed since"
        )
    if mark is None or mark.backup != backup.name:
        why = (
            f"names another backup ({mark.backup[:60]})"
            if mark is not None and mark.backup
            else "is missing or unreadable"
        )
        return (
            f"The marker replace left in {dest_dir} ({paths.REPLACED_MARKER}) {why}, so nothing shows "
            f"that the backup in {backup} belongs to the files there now"
        )
    return ""


def _changed_since(r: _Restore, manifest_sha: str, force: bool) -> list[tuple[BackupEntry, str]]:
    """The files that are not what replace put there (each with why); refused unless ``force``."""
    unconfirmed = _unconfirmed(r, manifest_sha)
    changed: list[tuple[BackupEntry, str]] = []
    for e, cur in zip(r.manifest.files, r.current, strict=True):
        if unconfirmed:
            if cur.type != "absent":
                changed.append((e, "unconfirmed"))
        elif e.new is None or e.new.type == "marker":
            continue
        elif cur.type == "absent":
            if e.kind == "replaced":
                changed.append((e, "was removed"))
        elif not same(cur, e.new):
            changed.append((e, "differs from what replace put there"))
    if unconfirmed and not force:
        raise FilesChanged(
            f"{unconfirmed}; nothing was changed. `builddoctor rollback --force` restores it anyway "
            f"and keeps every file it takes away in {r.backup}/{KEPT}/."
        )
    if changed and not force:
        listed = "; ".join(f"{os.path.basename(e.path)} {why}" for e, why in changed[:20])
        raise FilesChanged(
            f"{len(changed)} file(s) in {r.dest_dir} changed since the replace ({listed}); nothing was "
            f"changed. `builddoctor rollback --force` restores the backup anyway and keeps those "
            f"files in {r.backup}/{KEPT}/."
        )
    return changed


def _keep_copies(r: _Restore, keep: set[str]) -> None:
    """Copy what each path holds now (to .undo/, or displaced/ for the paths in ``keep``) and make the
    steps that restore the backup; on failure the copies go and nothing changed."""
    files_dir = r.backup / "files"
    try:
        shutil.rmtree(r.undo_dir, ignore_errors=True)
        r.undo_dir.mkdir()
        for i, (e, cur) in enumerate(zip(r.manifest.files, r.current, strict=True)):
            want_src = files_dir / e.old.backup if e.old.backup else None
            undo_src = None
            if e.path in keep and cur.type != "absent":
                r.kept_dir.mkdir(exist_ok=True)
                undo_src = r.kept_dir / f"{i:03d}-{os.path.basename(e.path)}"
                r.kept.append(f"{e.path} -> {undo_src}")
                r.kept_files.append(undo_src)
            elif cur.type == "file":
                undo_src = r.undo_dir / f"{i:03d}-{os.path.basename(e.path)}"
            if cur.type == "file":
                copy_verified(Path(e.path), undo_src, cur.sha256, cur.mode)  # type: ignore[arg-type]
            elif cur.type == "link" and undo_src is not None:
                os.symlink(cur.link, undo_src)  # type: ignore[arg-type]
            r.steps.append(Step(Path(e.path), e.old, want_src, cur, undo_src))
    except BaseException as exc:
        r.drop_copies()
        if isinstance(exc, (OSError, InstallError)):
            raise InstallError(
                f"keeping a copy of the files in {r.dest_dir} before the rollback failed "
                f"({reason(exc)}); nothing was changed.",
                exit_code=failure_exit(exc),
            ) from None
        raise


def _apply(r: _Restore) -> None:
    """Journal the steps, run them, and mark the backup rolled back; a failure undoes them and says how far."""
    backup = r.backup
    try:
        jfd = write_journal(backup / JOURNAL, "rollback", r.dest_dir, r.steps)
    except OSError as exc:
        r.drop_copies()
        raise InstallError(
            f"writing the rollback's journal in {backup} failed ({reason(exc)}); nothing was changed.",
            exit_code=failure_exit(exc),
        ) from None

    def commit() -> None:
        (backup / DONE).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
        (backup / JOURNAL).unlink()

    try:
        transact(r.steps, commit)
    except Failed as failed:
        _failed(r, failed, jfd)
    os.close(jfd)
    shutil.rmtree(r.undo_dir, ignore_errors=True)


def _failed(r: _Restore, failed: Failed, jfd: int) -> NoReturn:
    """Report a rollback whose steps failed (and were undone as far as they could be); always raises."""
    backup = r.backup
    (backup / DONE).unlink(missing_ok=True)
    if failed.stuck:  # the journal stays: the next rollback finishes putting them back
        os.close(jfd)
        raise InstallError(
            f"rolling back {r.dest_dir} failed at {failed.at} ({reason(failed.cause)}), and "
            f"{len(failed.stuck)} file(s) could not be put back: {', '.join(failed.stuck)}; "
            f"their copies are in {r.undo_dir}/ and {r.kept_dir}/, the backup in {backup} is kept.",
            exit_code=failure_exit(failed.cause),
        ) from None
    end_journal(backup / JOURNAL, jfd)
    r.drop_copies()
    back = f" ({', '.join(os.path.basename(p) for p in failed.put_back)})" if failed.put_back else ""
    raise InstallError(
        f"rolling back {r.dest_dir} failed at {failed.at} ({reason(failed.cause)}); the "
        f"{len(failed.put_back)} file(s) already restored were put back as they were{back}; "
        f"nothing changed, the backup in {backup} is kept.",
        exit_code=failure_exit(failed.cause),
    ) from None
