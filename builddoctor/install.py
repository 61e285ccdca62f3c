"""Put a finished build where a user runs it, and take it back.

- ``install_prefix``: copy the build's programs and libraries to
  ``<data_home>/installs/<key>/bin`` and point the stable ``<data_home>/bin`` at it (a
  symlink swapped atomically), so ``~/.local/share/builddoctor/bin/llama-cli`` always names
  the current build.
- ``replace``: write the new files over a found build's files; the old ones are first
  copied to ``<data_home>/backups/<time>/`` with a manifest (sha256, mode, link targets),
  each new file lands by an atomic rename, and a failure half-way restores what was
  already replaced. ``rollback`` restores the newest backup byte for byte.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import paths
from builddoctor.errors import UserError
from builddoctor.profiles import BuildResult
from builddoctor.source import sha256_file

MANIFEST = "manifest.json"
DONE = "rolled-back"


class InstallError(UserError):
    exit_code = 1


@dataclass
class InstallResult:
    prefix: str
    bin_dir: str
    files: list[str] = field(default_factory=list)
    backup: str | None = None  # replace: the backup folder rollback restores from


def _lib_globs() -> list[str]:
    from builddoctor.build import data

    return list(data()["files"]["library_globs"])


def _is_lib(name: str) -> bool:
    return any(fnmatch.fnmatch(name, g) for g in _lib_globs())


def build_files(result: BuildResult) -> list[Path]:
    """The files of a build a user needs: its programs, and every library beside them."""
    bin_dir = Path(result.build_dir) / "bin"
    programs = [Path(b) for b in result.binaries]
    libs = sorted(p for p in bin_dir.iterdir() if _is_lib(p.name)) if bin_dir.is_dir() else []
    return programs + libs


def _copy(src: Path, dest: Path) -> None:
    """Copy one file (or symlink) to ``dest`` through a temp name and an atomic rename."""
    tmp = dest.with_name(f".{dest.name}.bd-tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        if src.is_symlink():
            os.symlink(os.readlink(src), tmp)
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- own prefix


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
                _copy(f, staging / "bin" / f.name)
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


# --------------------------------------------------------------------------- replace / rollback


def backups_dir() -> Path:
    return paths.data_home() / "backups"


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
            replaced_program = replaced_program or not _is_lib(f.name)
    if replaced_program:
        for f in files:
            dest = dest_dir / f.name
            if _is_lib(f.name) and not (dest.exists() or dest.is_symlink()):
                plan.append((f, dest, "added"))
    return plan


def _write_marker(result: BuildResult, path: Path) -> None:
    """Say which build the replaced programs come from (read by the inspector, removed by rollback)."""
    cache = Path(result.build_dir) / "CMakeCache.txt"
    path.write_text(json.dumps({"build_dir": result.build_dir,
                                "cmake_cache": str(cache) if cache.is_file() else None}, indent=1))


def replace(result: BuildResult, dest_dir: Path, *, backup_root: Path | None = None) -> InstallResult:
    """Replace the llama.cpp build in ``dest_dir`` with ``result``, keeping a backup."""
    dest_dir = Path(dest_dir)
    actions = plan_replace(result, dest_dir)
    if not any(kind == "replaced" and not _is_lib(src.name) for src, _, kind in actions):
        raise InstallError(f"{dest_dir} holds none of the new build's programs "
                           f"({', '.join(Path(b).name for b in result.binaries)}); nothing to replace there.")
    root = Path(backup_root or backups_dir())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = root / stamp
    n = 1
    while backup.exists():
        n += 1
        backup = root / f"{stamp}-{n}"
    staging = root / f".{backup.name}.partial"
    (staging / "files").mkdir(parents=True)
    marker_src = root / f".{backup.name}.marker.json"
    _write_marker(result, marker_src)
    marker = dest_dir / paths.REPLACED_MARKER
    actions.append((marker_src, marker, "replaced" if marker.exists() else "added"))
    entries = []
    try:
        for i, (_src, dest, kind) in enumerate(actions):
            entry = {"path": str(dest.absolute()), "kind": kind}
            if kind == "replaced":
                saved = staging / "files" / f"{i:03d}-{dest.name}"
                if dest.is_symlink():
                    entry["link"] = os.readlink(dest)
                else:
                    shutil.copy2(dest, saved)
                    entry["backup"] = saved.name
                    entry["sha256"] = sha256_file(dest)
                    entry["mode"] = stat.S_IMODE(dest.stat().st_mode)
                    if sha256_file(saved) != entry["sha256"]:
                        raise InstallError(f"the backup copy of {dest} does not match it; nothing was changed.")
            entries.append(entry)
        (staging / MANIFEST).write_text(json.dumps({"created": stamp, "build": result.build_dir,
                                                    "files": entries}, indent=1))
        os.rename(staging, backup)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        marker_src.unlink(missing_ok=True)
        raise
    done: list[dict] = []
    try:
        for (src, dest, _kind), entry in zip(actions, entries):
            _copy(src, dest)
            done.append(entry)
        marker_src.unlink()
    except BaseException as exc:
        _restore(backup, done)
        shutil.rmtree(backup, ignore_errors=True)
        marker_src.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InstallError(f"replacing the files in {dest_dir} failed ({exc}); the old files were put "
                               "back, nothing changed.", exit_code=7 if exc.errno == 28 else 1) from None
        raise
    return InstallResult(prefix=str(dest_dir), bin_dir=str(dest_dir), files=[str(d) for _, d, _ in actions],
                         backup=str(backup))


def _restore(backup: Path, entries: list[dict]) -> list[str]:
    restored = []
    for entry in entries:
        dest = Path(entry["path"])
        if entry["kind"] == "added":
            if dest.is_symlink() or dest.exists():
                dest.unlink()
        elif "link" in entry:
            tmp = dest.with_name(f".{dest.name}.bd-tmp-{os.getpid()}")
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            os.symlink(entry["link"], tmp)
            os.replace(tmp, dest)
        else:
            _copy(backup / "files" / entry["backup"], dest)
            os.chmod(dest, entry["mode"])
            if sha256_file(dest) != entry["sha256"]:
                raise InstallError(f"restoring {dest} from {backup} gave a different file; the backup is kept.")
        restored.append(str(dest))
    return restored


def list_backups(root: Path | None = None) -> list[Path]:
    root = Path(root or backups_dir())
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and (p / MANIFEST).is_file() and not (p / DONE).exists()), key=lambda p: p.name)


def rollback(backup: Path | None = None, *, backup_root: Path | None = None) -> list[str]:
    """Restore the newest (or the given) backup, byte for byte; return the restored paths."""
    if backup is None:
        found = list_backups(backup_root)
        if not found:
            raise InstallError("There is no backup to roll back to: `builddoctor fix --replace` makes one "
                               "before it replaces files.")
        backup = found[-1]
    manifest = json.loads((Path(backup) / MANIFEST).read_text())
    restored = _restore(Path(backup), manifest["files"])
    (Path(backup) / DONE).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return restored
