"""Put a new build's files where a user runs them: in builddoctor's own prefix, or over a found build.

``replace`` backs up every file it changes before the first one changes (the backup appears, with
its journal, in one rename); after that a failure is undone by the journal, and before it nothing
changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import paths
from builddoctor.install.files import (
    FORMAT,
    JOURNAL,
    MANIFEST,
    FileState,
    InstallError,
    backups_dir,
    copy_verified,
    failure_exit,
    is_lib,
    put,
    reason,
    state_of,
)
from builddoctor.install.journal import Failed, Step, end_journal, transact, write_journal
from builddoctor.install.manifest import BackupEntry, BackupManifest
from builddoctor.install.recover import recover_interrupted
from builddoctor.install_marker import ReplacedMarker
from builddoctor.profiles import BuildResult


@dataclass
class InstallResult:
    prefix: str
    bin_dir: str
    files: list[str] = field(default_factory=list)
    backup: str | None = None  # replace: the backup folder rollback restores from
    recovered: list[str] = field(default_factory=list)  # interrupted replaces/rollbacks undone first, in words


def build_files(result: BuildResult) -> list[Path]:
    """The files of a build a user needs: its programs, and every library beside them."""
    bin_dir = Path(result.build_dir) / "bin"
    programs = [Path(b) for b in result.binaries]
    libs = sorted(p for p in bin_dir.iterdir() if is_lib(p.name)) if bin_dir.is_dir() else []
    return programs + libs


def install_prefix(result: BuildResult, prefix: Path | None = None) -> InstallResult:
    prefix = Path(prefix or paths.data_home())
    key = result.cache_key or hashlib.sha256(result.build_dir.encode()).hexdigest()[:20]
    target = prefix / "installs" / key
    link = prefix / "bin"
    files = build_files(result)
    if not (target / "bin").is_dir() or not all((target / "bin" / f.name).exists() for f in files):
        staging = prefix / "installs" / f".staging-{key}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        try:
            for f in files:
                state = state_of(f)
                if state.type not in ("file", "link"):
                    raise InstallError(f"{f} of the new build is missing or not a file; nothing was installed.")
                put(staging / "bin" / f.name, state, f)
            (staging / "build.json").write_text(result.to_json())
            shutil.rmtree(target, ignore_errors=True)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if link.exists() and not link.is_symlink():
        raise InstallError(f"{link} exists and is not builddoctor's link; move it away and run again.")
    tmp_link = prefix / f".bin-{os.getpid()}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(Path("installs") / key / "bin", tmp_link)
    os.replace(tmp_link, link)
    return InstallResult(prefix=str(prefix), bin_dir=str(link), files=[str(link / f.name) for f in files])


def plan_replace(result: BuildResult, dest_dir: Path) -> list[tuple[Path, Path, str]]:
    """(new file, destination, kind) for replacing the build in ``dest_dir``.

    Files of the new build whose name is already in ``dest_dir`` are replaced; libraries the
    new programs need that are not there are added. Programs the old folder lacked are not.
    """
    dest_dir = Path(dest_dir)
    plan = []
    files = build_files(result)
    replaced_program = False
    for f in files:
        dest = dest_dir / f.name
        if dest.exists() or dest.is_symlink():
            plan.append((f, dest, "replaced"))
            replaced_program = replaced_program or not is_lib(f.name)
    if replaced_program:
        for f in files:
            dest = dest_dir / f.name
            if is_lib(f.name) and not (dest.exists() or dest.is_symlink()):
                plan.append((f, dest, "added"))
    return plan


#: (new file, destination, kind, what the destination holds now, what the new file holds)
_Planned = tuple[Path, Path, str, FileState, FileState]


@dataclass
class _Backup:
    """The backup one replace makes: staged beside the others, then renamed into place."""

    root: Path
    backup: Path  # <root>/<stamp>[-n], free when chosen
    stamp: str
    dest_dir: Path
    old_marker: FileState  # the folder's marker before the replace

    @property
    def staging(self) -> Path:
        return self.root / f".{self.backup.name}.partial"

    @property
    def marker_src(self) -> Path:
        """The new marker, written here first and put in the folder as the last step."""
        return self.root / f".{self.backup.name}.marker.json"

    @property
    def marker(self) -> Path:
        return self.dest_dir / paths.REPLACED_MARKER

    def saved(self, old: FileState) -> Path | None:
        """Where the backup keeps the bytes of ``old`` (a file only)."""
        return self.backup / "files" / old.backup if old.backup else None


def replace(result: BuildResult, dest_dir: Path, *, backup_root: Path | None = None) -> InstallResult:
    """Replace the llama.cpp build in ``dest_dir`` with ``result``, keeping a backup."""
    dest_dir = Path(dest_dir).resolve()
    recovered = recover_interrupted(backup_root)
    plan = _survey(result, dest_dir)
    b = _choose_backup(Path(backup_root or backups_dir()), dest_dir)
    steps, jfd = _make_backup(b, plan, result)
    _apply(b, steps, jfd)
    return InstallResult(
        prefix=str(dest_dir),
        bin_dir=str(dest_dir),
        files=[str(s.dest) for s in steps],
        backup=str(b.backup),
        recovered=recovered,
    )


def _survey(result: BuildResult, dest_dir: Path) -> list[_Planned]:
    """What is there now and what will be put there: all known, and refused, before anything is written."""
    actions = plan_replace(result, dest_dir)
    if not any(kind == "replaced" and not is_lib(src.name) for src, _, kind in actions):
        raise InstallError(
            f"{dest_dir} holds none of the new build's programs "
            f"({', '.join(Path(b).name for b in result.binaries)}); nothing to replace there."
        )
    plan: list[_Planned] = []
    for src, dest, kind in actions:
        old = state_of(dest)
        new = state_of(src)
        if old.type == "other":
            raise InstallError(f"{dest} is a folder or a special file, not a program or library; nothing was changed.")
        if new.type not in ("file", "link"):
            raise InstallError(f"{src} of the new build is missing or not a file; nothing was changed.")
        plan.append((src, dest, kind, old, new))
    return plan


def _choose_backup(root: Path, dest_dir: Path) -> _Backup:
    """A free backup name (the time, numbered when taken) and the folder's marker as it is."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = root / stamp
    n = 1
    while backup.exists():
        n += 1
        backup = root / f"{stamp}-{n}"
    marker = dest_dir / paths.REPLACED_MARKER
    old_marker = state_of(marker)
    if old_marker.type == "other":
        raise InstallError(f"{marker} is a folder or a special file; nothing was changed.")
    return _Backup(root, backup, stamp, dest_dir, old_marker)


def _make_backup(b: _Backup, plan: list[_Planned], result: BuildResult) -> tuple[list[Step], int]:
    """Copy the old files, write the manifest, the new marker and the journal, then rename the staged
    folder into the backup: the steps to run and the journal's locked fd. Nothing changed on failure."""
    jfd = None
    try:
        (b.staging / "files").mkdir(parents=True)
        entries, steps = _save_old_files(b, plan)
        manifest = (
            BackupManifest(
                format=FORMAT, created=b.stamp, build=result.build_dir, dest_dir=str(b.dest_dir), files=entries
            )
            .to_json(indent=1)
            .encode()
        )
        (b.staging / MANIFEST).write_bytes(manifest)
        _write_marker(b, result, hashlib.sha256(manifest).hexdigest())
        steps.append(Step(b.marker, state_of(b.marker_src), b.marker_src, b.old_marker, b.saved(b.old_marker)))
        jfd = write_journal(b.staging / JOURNAL, "replace", b.dest_dir, steps)  # the backup appears with it
        os.rename(b.staging, b.backup)
    except BaseException as exc:
        if jfd is not None:
            os.close(jfd)
        shutil.rmtree(b.staging, ignore_errors=True)
        b.marker_src.unlink(missing_ok=True)
        if isinstance(exc, (OSError, InstallError)):
            raise InstallError(
                f"backing up the files in {b.dest_dir} to {b.root} failed ({reason(exc)}); nothing was changed.",
                exit_code=failure_exit(exc),
            ) from None
        raise
    return steps, jfd


def _save_old_files(b: _Backup, plan: list[_Planned]) -> tuple[list[BackupEntry], list[Step]]:
    """Copy each file about to be replaced (and the old marker) into the staged files/ folder; the
    manifest's entries, the marker's last, and the steps that put the new files in place."""
    entries, steps = [], []
    for i, (src, dest, _kind, old, new) in enumerate(plan):
        if old.type == "file":
            old.backup = f"{i:03d}-{dest.name}"
            copy_verified(dest, b.staging / "files" / old.backup, old.sha256, old.mode)
        entries.append(
            BackupEntry(path=str(dest), kind="added" if old.type == "absent" else "replaced", old=old, new=new)
        )
        steps.append(Step(dest, new, src, old, b.saved(old)))
    om = b.old_marker
    if om.type == "file":
        om.backup = f"{len(plan):03d}-{b.marker.name}"
        copy_verified(b.marker, b.staging / "files" / om.backup, om.sha256, om.mode)
    kind = "added" if om.type == "absent" else "replaced"
    entries.append(BackupEntry(path=str(b.marker), kind=kind, old=om, new=FileState("marker")))
    return entries, steps


def _write_marker(b: _Backup, result: BuildResult, manifest_sha256: str) -> None:
    """The marker the folder gets: the build its programs come from, and the backup that undoes it."""
    cache = Path(result.build_dir) / "CMakeCache.txt"
    b.marker_src.write_text(
        ReplacedMarker(
            build_dir=result.build_dir,
            cmake_cache=str(cache) if cache.is_file() else None,
            backup=b.backup.name,
            manifest_sha256=manifest_sha256,
        ).to_json(indent=1)
    )


def _apply(b: _Backup, steps: list[Step], jfd: int) -> None:
    """Run the steps under the journal; on failure they are undone, and the backup goes with them
    unless a file could not be put back (then the journal stays for the next replace or rollback)."""
    try:
        transact(steps)
    except Failed as failed:
        if failed.stuck:  # the journal stays: the next replace or rollback finishes putting them back
            os.close(jfd)
            raise InstallError(
                f"replacing the files in {b.dest_dir} failed at {failed.at} ({reason(failed.cause)}), and "
                f"{len(failed.stuck)} could not be put back: {', '.join(failed.stuck)}. Their old "
                f"versions are in {b.backup}/files/; `builddoctor rollback` puts them back.",
                exit_code=failure_exit(failed.cause),
            ) from None
        b.marker_src.unlink(missing_ok=True)
        shutil.rmtree(b.backup, ignore_errors=True)
        os.close(jfd)
        raise InstallError(
            f"replacing the files in {b.dest_dir} failed at {failed.at} ({reason(failed.cause)}); the old "
            "files were put back, nothing changed.",
            exit_code=failure_exit(failed.cause),
        ) from None
    end_journal(b.backup / JOURNAL, jfd)
    b.marker_src.unlink(missing_ok=True)
