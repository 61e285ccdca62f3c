"""What one path holds, and the one way install changes it (an atomic rename of a verified copy).

Also the layout of a backup folder and the errors every part of install raises, so that replace,
rollback and the journal's recovery name files, folders and failures the same way.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builddoctor import paths
from builddoctor.errors import INTERRUPTED, NO_SPACE, USAGE, UserError
from builddoctor.install_marker import Unusable, open_regular
from builddoctor.profiles import Serializable
from builddoctor.tomlload import data_file

# A backup is <backups>/<time>/ with files/ (copies of the replaced files) and manifest.json (a
# BackupManifest). The marker replace leaves in the folder names the backup and the sha256 of its
# manifest, so rollback restores only what replace recorded: a manifest changed after the replace,
# or one that never belonged to that folder, is refused before anything is touched.
MANIFEST = "manifest.json"
DONE = "rolled-back"
FORMAT = 2  # 1: builddoctor before the manifest recorded what replace installed (no "format" key)
MAX_MANIFEST = 1 << 20  # replace writes a few KiB; anything near this is not its manifest
KEPT = "displaced"  # rollback --force keeps here what it took away that replace had not put there
UNDO = ".undo"
JOURNAL = "journal.json"  # in the backup folder while a replace or rollback changes files
SHA = re.compile(r"[0-9a-f]{64}")
_STAMP = re.compile(r"[0-9]{8}-[0-9]{6}(-[0-9]{1,6})?")  # the names replace gives its backups


class InstallError(UserError):
    exit_code = 1


class BackupDamaged(InstallError):
    """The backup cannot be trusted (damaged, forged, altered): refused before anything changes."""

    exit_code = USAGE


class FilesChanged(InstallError):
    """The files replace installed were changed since; rollback refuses unless --force."""


@dataclass
class FileState(Serializable):
    """What one path holds or held.

    ``type``: "file" (sha256, mode; in a backup, ``backup`` is its plain name in files/), "link"
    (its target), "absent", or "marker" (the marker naming this backup: its content holds the
    manifest's hash, so the manifest cannot hold the marker's).
    """

    type: str
    sha256: str | None = None
    mode: int | None = None
    link: str | None = None
    backup: str | None = None


def backups_dir() -> Path:
    return paths.data_home() / "backups"


def stamped_folders(root: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """The backups in ``root`` (by the names replace gives them) that ``keep`` accepts, oldest first."""
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if _STAMP.fullmatch(p.name) and keep(p)),
        key=lambda p: [int(n) for n in p.name.split("-")],
    )


def _lib_globs() -> list[str]:
    return list(data_file("build.toml")["files"]["library_globs"])


def is_lib(name: str) -> bool:
    return any(fnmatch.fnmatch(name, g) for g in _lib_globs())


def plain_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\x00" not in name
        and len(os.fsencode(name)) <= 255
    )


def _sha_fd(fd: int) -> str:
    h = hashlib.sha256()
    while block := os.read(fd, 1 << 20):
        h.update(block)
    return h.hexdigest()


def state_of(path: Path) -> FileState:
    """What is at ``path`` now, without following a symlink there; "other" for folders, FIFOs, devices."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return FileState("absent")
    except OSError as exc:
        raise InstallError(f"{path}: cannot look at it ({exc.strerror or exc}); nothing was changed.") from None
    if stat.S_ISLNK(st.st_mode):
        return FileState("link", link=os.readlink(path))
    if not stat.S_ISREG(st.st_mode):
        return FileState("other")
    try:
        fd = open_regular(path)
    except Unusable:
        return FileState("other")
    try:
        return FileState("file", sha256=_sha_fd(fd), mode=stat.S_IMODE(os.fstat(fd).st_mode))
    finally:
        os.close(fd)


def same(a: FileState, b: FileState) -> bool:
    """The same content (a file's mode aside: a chmod is no reason to refuse)."""
    return a.type == b.type and a.sha256 == b.sha256 and a.link == b.link


def _tmp_beside(dest: Path) -> Path:
    return dest.with_name(f".{dest.name[:200]}.bd-{secrets.token_hex(6)}")


#: the names ``_tmp_beside`` gives: what an interrupted ``put`` may leave
TEMP = re.compile(r"\..*\.bd-[0-9a-f]{12}")


def copy_verified(src: Path, tmp: Path, sha256: str | None, mode: int | None) -> str:
    """Copy the regular file ``src`` to the new file ``tmp``; the copy's sha256 must be ``sha256``."""
    try:
        fd_in = open_regular(src)
    except Unusable as exc:
        raise InstallError(f"{src}: {exc}.") from None
    try:
        st = os.fstat(fd_in)
        fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            h = hashlib.sha256()
            while block := os.read(fd_in, 1 << 20):
                h.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(fd_out, view) :]
            os.fchmod(fd_out, stat.S_IMODE(st.st_mode) if mode is None else mode)
            os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    got = h.hexdigest()
    if sha256 is not None and got != sha256:
        raise InstallError(f"{src} changed while it was copied (sha256 {got[:12]}, expected {sha256[:12]}).")
    return got


def put(dest: Path, state: FileState, src: Path | None) -> None:
    """Make ``dest`` hold ``state`` in one atomic rename (the bytes of a file come from ``src``, checked)."""
    if state.type == "absent":
        if os.path.lexists(dest):
            os.unlink(dest)
        return
    tmp = _tmp_beside(dest)
    try:
        if state.type == "link":
            assert state.link is not None  # a link's state always carries its target
            os.symlink(state.link, tmp)
        else:
            assert src is not None
            copy_verified(src, tmp, state.sha256, state.mode)
        os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def failure_exit(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return NO_SPACE
    return getattr(exc, "exit_code", 1)


def reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__
