"""Put a finished build where a user runs it, and take it back.

- ``install_prefix``: copy the build's programs and libraries to
  ``<data_home>/installs/<key>/bin`` and point the stable ``<data_home>/bin`` at it (a
  symlink swapped atomically), so ``~/.local/share/builddoctor/bin/llama-cli`` always names
  the current build.
- ``replace``: write the new files over a found build's files; the old ones are first
  copied to ``<data_home>/backups/<time>/`` with a manifest (sha256, mode, link targets),
  each new file lands by an atomic rename, and a failure half-way restores what was
  already replaced. ``rollback`` restores the newest backup byte for byte.

Both change files through one journal (``_transact``), kept on disk as ``journal.json`` in the
backup folder from before the first file changes until the end: a replace or rollback killed
half-way (SIGKILL, power loss) is found by the next replace or rollback and undone, file by
file, to the state before it (``recover_interrupted``).
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import paths
from builddoctor.errors import INTERRUPTED, NO_SPACE, USAGE, UserError
from builddoctor.profiles import SCHEMA_VERSION, BuildResult, SchemaError, Serializable

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
    recovered: list[str] = field(default_factory=list)  # interrupted replaces/rollbacks undone first, in words


def _lib_globs() -> list[str]:
    from builddoctor.tomlload import data_file

    return list(data_file("build.toml")["files"]["library_globs"])


def _is_lib(name: str) -> bool:
    return any(fnmatch.fnmatch(name, g) for g in _lib_globs())


def build_files(result: BuildResult) -> list[Path]:
    """The files of a build a user needs: its programs, and every library beside them."""
    bin_dir = Path(result.build_dir) / "bin"
    programs = [Path(b) for b in result.binaries]
    libs = sorted(p for p in bin_dir.iterdir() if _is_lib(p.name)) if bin_dir.is_dir() else []
    return programs + libs


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
                state = _state_of(f)
                if state.type not in ("file", "link"):
                    raise InstallError(f"{f} of the new build is missing or not a file; nothing was installed.")
                _put(staging / "bin" / f.name, state, f)
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
#
# A backup is <backups>/<time>/ with files/ (copies of the replaced files) and manifest.json (a
# BackupManifest). The marker replace leaves in the folder names the backup and the sha256 of its
# manifest, so rollback restores only what replace recorded: a manifest changed after the replace,
# or one that never belonged to that folder, is refused before anything is touched.

FORMAT = 2  # 1: builddoctor before the manifest recorded what replace installed (no "format" key)
MAX_MANIFEST = 1 << 20  # replace writes a few KiB; anything near this is not its manifest
MAX_MARKER = 64 << 10
KEPT = "displaced"  # rollback --force keeps here what it took away that replace had not put there
_UNDO = ".undo"
JOURNAL = "journal.json"  # in the backup folder while a replace or rollback changes files
#: tests only (honoured only under pytest): "FILE:N" appends each step's number to FILE and waits a
#: minute after step N, so that a test can kill a real replace or rollback half-way
PAUSE_HOOK = "BUILDDOCTOR_TEST_PAUSE_BETWEEN_FILES"
_SHA = re.compile(r"[0-9a-f]{64}")
_STAMP = re.compile(r"[0-9]{8}-[0-9]{6}(-[0-9]{1,6})?")  # the names replace gives its backups


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


@dataclass
class BackupEntry(Serializable):
    path: str  # absolute, directly inside the manifest's dest_dir
    kind: str  # "replaced" (old is a file or a link) or "added" (old is absent)
    old: FileState
    new: FileState | None = None  # what replace put there; None only in format-1 manifests


@dataclass
class BackupManifest(Serializable):
    format: int
    created: str
    build: str
    dest_dir: str
    files: list[BackupEntry] = field(default_factory=list)


@dataclass
class ReplacedMarker(Serializable):
    """`.builddoctor-replaced.json`: which build the programs in a folder now come from."""

    build_dir: str | None = None
    cmake_cache: str | None = None
    backup: str | None = None  # the backup's folder name
    manifest_sha256: str | None = None


@dataclass
class RollbackResult(Serializable):
    backup: str
    dest_dir: str
    restored: list[str] = field(default_factory=list)  # every path put back as it was before the replace
    kept: list[str] = field(default_factory=list)  # --force: what was there instead, now in <backup>/displaced/
    recovered: list[str] = field(default_factory=list)  # interrupted replaces/rollbacks undone first, in words
    schema_version: int = SCHEMA_VERSION


@dataclass
class JournalStep(Serializable):
    dest: str  # absolute, directly inside the journal's dest_dir
    want: FileState  # what the step puts there
    undo: FileState  # what was there before it
    undo_src: str | None = None  # where the bytes of ``undo`` are kept (a file in the backup folder)


@dataclass
class Journal(Serializable):
    """``journal.json``: the steps of a replace or rollback under way, and how to undo each."""

    format: int
    command: str  # "replace" or "rollback"
    dest_dir: str
    steps: list[JournalStep] = field(default_factory=list)


class _Unusable(Exception):
    """A file that is not what it should be; the argument says how, in words."""


def _open_regular(path: Path) -> int:
    """An fd of a regular file, never through a symlink, never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Unusable("it is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Unusable("it is a symlink") from None
        raise _Unusable(f"it cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Unusable("it is not a regular file")
    return fd


def _read_small(path: Path, cap: int) -> bytes:
    fd = _open_regular(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)
    except OSError as exc:
        raise _Unusable(f"it cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise _Unusable(f"it is over {cap // 1024} KiB, far more than builddoctor writes")
    return data


def _sha_fd(fd: int) -> str:
    h = hashlib.sha256()
    while block := os.read(fd, 1 << 20):
        h.update(block)
    return h.hexdigest()


def _state_of(path: Path) -> FileState:
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
        fd = _open_regular(path)
    except _Unusable:
        return FileState("other")
    try:
        return FileState("file", sha256=_sha_fd(fd), mode=stat.S_IMODE(os.fstat(fd).st_mode))
    finally:
        os.close(fd)


def _same(a: FileState, b: FileState) -> bool:
    """The same content (a file's mode aside: a chmod is no reason to refuse)."""
    return a.type == b.type and a.sha256 == b.sha256 and a.link == b.link


def _tmp_beside(dest: Path) -> Path:
    return dest.with_name(f".{dest.name[:200]}.bd-{secrets.token_hex(6)}")


def _copy_verified(src: Path, tmp: Path, sha256: str | None, mode: int | None) -> str:
    """Copy the regular file ``src`` to the new file ``tmp``; the copy's sha256 must be ``sha256``."""
    try:
        fd_in = _open_regular(src)
    except _Unusable as exc:
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


def _put(dest: Path, state: FileState, src: Path | None) -> None:
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
            _copy_verified(src, tmp, state.sha256, state.mode)
        os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@dataclass
class _Step:
    dest: Path
    want: FileState
    want_src: Path | None
    undo: FileState  # what dest holds before the step, and where its bytes are kept meanwhile
    undo_src: Path | None


class _Failed(Exception):
    def __init__(self, cause: BaseException, at: str, put_back: list[str], stuck: list[str]):
        super().__init__(str(cause))
        self.cause, self.at, self.put_back, self.stuck = cause, at, put_back, stuck


def _transact(steps: list[_Step], commit=None) -> None:
    """The one journal of replace and rollback: apply every step, then ``commit``; on any failure
    (Ctrl-C included) undo the steps done, newest first, and raise ``_Failed`` naming the files."""
    done: list[_Step] = []
    pending: _Step | None = None
    try:
        for s in steps:
            pending = s
            _put(s.dest, s.want, s.want_src)
            done.append(s)
            pending = None
            _test_pause(len(done))
        if commit is not None:
            commit()
    except BaseException as exc:  # noqa: BLE001 - every failure is undone, then reported
        put_back, stuck = [], []
        if pending is not None:  # its rename is atomic, so it most likely never happened; undo it anyway
            try:
                _put(pending.dest, pending.undo, pending.undo_src)
            except BaseException:  # noqa: BLE001
                stuck.append(str(pending.dest))
        for s in reversed(done):
            try:
                _put(s.dest, s.undo, s.undo_src)
                put_back.append(str(s.dest))
            except BaseException:  # noqa: BLE001 - keep putting back the others
                stuck.append(str(s.dest))
        at = os.path.basename(pending.dest) if pending is not None else "the end"
        raise _Failed(exc, at, put_back, stuck) from exc


def _test_pause(n: int) -> None:
    """The test hook PAUSE_HOOK; nothing outside pytest (PYTEST_CURRENT_TEST is pytest's own)."""
    hook = os.environ.get(PAUSE_HOOK)
    if not hook or "PYTEST_CURRENT_TEST" not in os.environ:
        return
    where, _, at = hook.rpartition(":")
    with open(where, "a") as fh:
        fh.write(f"{n}\n")
    if str(n) == at:
        time.sleep(60)


def _write_journal(path: Path, command: str, dest_dir: Path, steps: list[_Step]) -> int:
    """Write the journal of ``steps`` at ``path`` (durably, before any of them runs); the returned fd
    holds a lock on it for as long as the command runs (the kernel drops it when the process dies)."""
    j = Journal(
        format=FORMAT,
        command=command,
        dest_dir=str(dest_dir),
        steps=[JournalStep(str(s.dest), s.want, s.undo, str(s.undo_src) if s.undo_src else None) for s in steps],
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = memoryview(j.to_json(indent=1).encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd


def _end_journal(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)
    os.close(fd)


def _load_journal(backup: Path, path: Path) -> Journal:
    """The journal at ``path``, checked like a manifest: only what replace and rollback write."""
    raw = _read_small(path, MAX_MANIFEST)
    try:
        j = Journal.from_dict(json.loads(raw.decode("utf-8")))
    except (ValueError, RecursionError, SchemaError) as exc:
        raise _Unusable(f"journal.json cannot be read ({' '.join(str(exc).split())[:200]})") from None
    d = j.dest_dir
    if (
        j.command not in ("replace", "rollback")
        or not isinstance(d, str)
        or not d
        or "\x00" in d
        or not os.path.isabs(d)
        or os.path.normpath(d) != d
    ):
        raise _Unusable("journal.json is not one builddoctor writes")
    homes = {str(backup / "files"), str(backup / _UNDO), str(backup / KEPT)}
    for i, st in enumerate(j.steps):
        name = os.path.basename(st.dest)
        ok = (
            "\x00" not in st.dest
            and os.path.normpath(st.dest) == st.dest
            and os.path.dirname(st.dest) == d
            and _plain_name(name)
        )
        for state in (st.want, st.undo):
            ok = ok and (
                state.type == "absent"
                or (state.type == "link" and bool(state.link) and "\x00" not in (state.link or ""))
                or (state.type == "file" and bool(_SHA.fullmatch(state.sha256 or "")))
            )
        if ok and st.undo.type == "file":
            src = st.undo_src or ""
            ok = (
                "\x00" not in src
                and os.path.normpath(src) == src
                and os.path.dirname(src) in homes
                and _plain_name(os.path.basename(src))
                and isinstance(st.undo.mode, int)
                and 0 <= st.undo.mode <= 0o7777
            )
        if not ok:
            raise _Unusable(f"journal.json step {i} ({st.dest[:200]!r}) is not one builddoctor writes")
    return j


_TEMP = re.compile(r"\..*\.bd-[0-9a-f]{12}")


def recover_interrupted(root: Path | None = None, backup: Path | None = None) -> list[str]:
    """Undo every replace or rollback that was killed half-way (its journal is still on disk), newest
    step first, to the files as they were before it; what was done, in words. An interrupted rollback's
    backup can be rolled back again; an interrupted replace's backup goes (it was never completed)."""
    return [said for _cmd, _dest, _undone, said in _recover_all(root, backup)]


def _recover_all(root: Path | None, backup: Path | None) -> list[tuple[str, str, list[str], str]]:
    """(command, folder, paths put back, words) of each interrupted command undone."""
    root = Path(root or backups_dir())
    found = []
    if root.is_dir():
        found = sorted(
            (p for p in root.iterdir() if _STAMP.fullmatch(p.name) and os.path.lexists(p / JOURNAL)),
            key=lambda p: [int(n) for n in p.name.split("-")],
        )
    if backup is not None and os.path.lexists(Path(backup) / JOURNAL) and Path(backup) not in found:
        found.append(Path(backup))
    return [_recover(b) for b in found]


def _recover(backup: Path) -> tuple[str, str, list[str], str]:
    path = backup / JOURNAL
    try:
        fd = _open_regular(path)
    except _Unusable as exc:
        raise BackupDamaged(
            f"the journal of an interrupted replace or rollback in {backup} is unusable: {exc}; nothing was changed."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InstallError(
                f"another builddoctor is replacing or rolling back files now (its journal "
                f"{path} is locked); run again when it is done. Nothing was changed."
            ) from None
        try:
            j = _load_journal(backup, path)
        except _Unusable as exc:
            raise BackupDamaged(
                f"the journal of an interrupted replace or rollback in {backup} is damaged: {exc}; "
                f"nothing was changed; the old files are in {backup}/files/."
            ) from None
        todo, odd = [], []
        for st in j.steps:
            cur = _state_of(Path(st.dest))
            if _same(cur, st.undo):
                continue
            if not _same(cur, st.want):
                odd.append(os.path.basename(st.dest))
            elif st.undo.type == "file" and _state_of(Path(str(st.undo_src))).sha256 != st.undo.sha256:
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
                f"before it are in {backup}/files/ and {backup}/{_UNDO}/."
            )
        undone: list[str] = []
        for st in reversed(todo):
            try:
                _put(Path(st.dest), st.undo, Path(st.undo_src) if st.undo_src else None)
            except (OSError, InstallError) as exc:
                raise InstallError(
                    f"undoing the interrupted {j.command} of {j.dest_dir} failed at "
                    f"{os.path.basename(st.dest)} ({_why(exc)}); "
                    f"{len(undone)} file(s) were put back, the journal in {backup} is kept: run "
                    "again to finish.",
                    exit_code=_failure_exit(exc),
                ) from None
            undone.append(st.dest)
        for name in {os.path.basename(st.dest) for st in j.steps}:  # temporary files an interrupted _put left
            for tmp in Path(j.dest_dir).glob(f".{glob.escape(name[:200])}.bd-*"):
                if _TEMP.fullmatch(tmp.name) and tmp.is_file() and not tmp.is_symlink():
                    tmp.unlink(missing_ok=True)
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
        shutil.rmtree(backup / _UNDO, ignore_errors=True)
        for st in j.steps:
            if st.undo_src and os.path.dirname(st.undo_src) == str(backup / KEPT):
                Path(st.undo_src).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return (
            j.command,
            j.dest_dir,
            undone,
            f"an interrupted rollback of the files in {j.dest_dir} was undone: "
            f"{len(undone)} file(s) put back as they were before it (the backup in {backup} is kept)",
        )
    finally:
        os.close(fd)


def _failure_exit(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return NO_SPACE
    return getattr(exc, "exit_code", 1)


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


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


def read_marker(folder: Path) -> ReplacedMarker | None:
    """The marker `fix --replace` left in ``folder``, or None when there is none or it is unusable."""
    try:
        data = json.loads(_read_small(Path(folder) / paths.REPLACED_MARKER, MAX_MARKER).decode("utf-8"))
    except (_Unusable, OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    fields = {
        k: v
        for k, v in data.items()
        if k in ReplacedMarker.__dataclass_fields__ and isinstance(v, str) and "\x00" not in v
    }
    return ReplacedMarker(**fields)


def replace(result: BuildResult, dest_dir: Path, *, backup_root: Path | None = None) -> InstallResult:
    """Replace the llama.cpp build in ``dest_dir`` with ``result``, keeping a backup."""
    dest_dir = Path(dest_dir).resolve()
    recovered = recover_interrupted(backup_root)
    actions = plan_replace(result, dest_dir)
    if not any(kind == "replaced" and not _is_lib(src.name) for src, _, kind in actions):
        raise InstallError(
            f"{dest_dir} holds none of the new build's programs "
            f"({', '.join(Path(b).name for b in result.binaries)}); nothing to replace there."
        )
    # what is there now and what will be put there: all known before anything is written
    plan: list[tuple[Path, Path, str, FileState, FileState]] = []
    for src, dest, kind in actions:
        old = _state_of(dest)
        new = _state_of(src)
        if old.type == "other":
            raise InstallError(f"{dest} is a folder or a special file, not a program or library; nothing was changed.")
        if new.type not in ("file", "link"):
            raise InstallError(f"{src} of the new build is missing or not a file; nothing was changed.")
        plan.append((src, dest, kind, old, new))
    root = Path(backup_root or backups_dir())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = root / stamp
    n = 1
    while backup.exists():
        n += 1
        backup = root / f"{stamp}-{n}"
    staging = root / f".{backup.name}.partial"
    marker_src = root / f".{backup.name}.marker.json"
    marker = dest_dir / paths.REPLACED_MARKER
    old_marker = _state_of(marker)
    if old_marker.type == "other":
        raise InstallError(f"{marker} is a folder or a special file; nothing was changed.")
    steps: list[_Step] = []
    jfd = None
    try:
        (staging / "files").mkdir(parents=True)
        entries = []
        for i, (src, dest, _kind, old, new) in enumerate(plan):
            if old.type == "file":
                old.backup = f"{i:03d}-{dest.name}"
                _copy_verified(dest, staging / "files" / old.backup, old.sha256, old.mode)
            entries.append(
                BackupEntry(path=str(dest), kind="added" if old.type == "absent" else "replaced", old=old, new=new)
            )
            steps.append(_Step(dest, new, src, old, backup / "files" / old.backup if old.backup else None))
        i = len(plan)
        if old_marker.type == "file":
            old_marker.backup = f"{i:03d}-{marker.name}"
            _copy_verified(marker, staging / "files" / old_marker.backup, old_marker.sha256, old_marker.mode)
        entries.append(
            BackupEntry(
                path=str(marker),
                kind="added" if old_marker.type == "absent" else "replaced",
                old=old_marker,
                new=FileState("marker"),
            )
        )
        manifest = (
            BackupManifest(format=FORMAT, created=stamp, build=result.build_dir, dest_dir=str(dest_dir), files=entries)
            .to_json(indent=1)
            .encode()
        )
        (staging / MANIFEST).write_bytes(manifest)
        cache = Path(result.build_dir) / "CMakeCache.txt"
        marker_src.write_text(
            ReplacedMarker(
                build_dir=result.build_dir,
                cmake_cache=str(cache) if cache.is_file() else None,
                backup=backup.name,
                manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            ).to_json(indent=1)
        )
        steps.append(
            _Step(
                marker,
                _state_of(marker_src),
                marker_src,
                old_marker,
                backup / "files" / old_marker.backup if old_marker.backup else None,
            )
        )
        jfd = _write_journal(staging / JOURNAL, "replace", dest_dir, steps)  # the backup appears with it
        os.rename(staging, backup)
    except BaseException as exc:
        if jfd is not None:
            os.close(jfd)
        shutil.rmtree(staging, ignore_errors=True)
        marker_src.unlink(missing_ok=True)
        if isinstance(exc, (OSError, InstallError)):
            raise InstallError(
                f"backing up the files in {dest_dir} to {root} failed ({_why(exc)}); nothing was changed.",
                exit_code=_failure_exit(exc),
            ) from None
        raise
    try:
        _transact(steps)
    except _Failed as failed:
        if failed.stuck:  # the journal stays: the next replace or rollback finishes putting them back
            os.close(jfd)
            raise InstallError(
                f"replacing the files in {dest_dir} failed at {failed.at} ({_why(failed.cause)}), and "
                f"{len(failed.stuck)} could not be put back: {', '.join(failed.stuck)}. Their old "
                f"versions are in {backup}/files/; `builddoctor rollback` puts them back.",
                exit_code=_failure_exit(failed.cause),
            ) from None
        marker_src.unlink(missing_ok=True)
        shutil.rmtree(backup, ignore_errors=True)
        os.close(jfd)
        raise InstallError(
            f"replacing the files in {dest_dir} failed at {failed.at} ({_why(failed.cause)}); the old "
            "files were put back, nothing changed.",
            exit_code=_failure_exit(failed.cause),
        ) from None
    _end_journal(backup / JOURNAL, jfd)
    marker_src.unlink(missing_ok=True)
    return InstallResult(
        prefix=str(dest_dir),
        bin_dir=str(dest_dir),
        files=[str(s.dest) for s in steps],
        backup=str(backup),
        recovered=recovered,
    )


def list_backups(root: Path | None = None) -> list[Path]:
    """Backups not yet rolled back, oldest first; one without a usable manifest is listed too, so
    that rollback refuses it by name instead of silently taking an older one."""
    root = Path(root or backups_dir())
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if _STAMP.fullmatch(p.name) and p.is_dir() and not os.path.lexists(p / DONE)),
        key=lambda p: [int(n) for n in p.name.split("-")],
    )


def _plain_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\x00" not in name
        and len(os.fsencode(name)) <= 255
    )


def _load_manifest(backup: Path) -> tuple[BackupManifest, str]:
    """The backup's manifest and its sha256, checked entry by entry; ``_Unusable`` says what is wrong."""
    if not os.path.lexists(backup / MANIFEST):
        raise _Unusable("it has no manifest.json")
    try:
        raw = _read_small(backup / MANIFEST, MAX_MANIFEST)
    except _Unusable as exc:
        raise _Unusable(f"manifest.json: {exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Unusable("manifest.json is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise _Unusable(f"manifest.json is not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise _Unusable("manifest.json is not a JSON object")
    try:
        if "format" not in data:
            manifest = _from_format_1(data)
        elif data["format"] != FORMAT:
            raise _Unusable(
                f"manifest.json has format {str(data['format'])[:20]}, which this builddoctor does not "
                f"know (it reads {FORMAT} and the older unnumbered one)"
            )
        else:
            manifest = BackupManifest.from_dict(data)
    except SchemaError as exc:
        raise _Unusable(f"manifest.json: {' '.join(str(exc).split())[:300]}") from None
    _check_entries(manifest)
    return manifest, hashlib.sha256(raw).hexdigest()


def _from_format_1(data: dict) -> BackupManifest:
    """A manifest of builddoctor before format 2: what was replaced, not what was put there."""
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise _Unusable("manifest.json lists no files")
    entries = []
    for i, e in enumerate(files):
        if not isinstance(e, dict) or set(e) - {"path", "kind", "link", "backup", "sha256", "mode"}:
            raise _Unusable(f"manifest.json: entry {i} is not an entry replace writes")
        kind = e.get("kind")
        if kind == "added":
            old = FileState("absent")
        elif "link" in e:
            old = FileState("link", link=e["link"])
        else:
            old = FileState("file", sha256=e.get("sha256"), mode=e.get("mode"), backup=e.get("backup"))
        entries.append(BackupEntry.from_dict({"path": e.get("path"), "kind": kind, "old": old.to_dict()}))
    paths_ = [e.path for e in entries if isinstance(e.path, str)]
    dest_dir = os.path.dirname(paths_[0]) if paths_ else ""
    return BackupManifest(
        format=1,
        created=str(data.get("created", ""))[:40],
        build=str(data.get("build", ""))[:4096],
        dest_dir=dest_dir,
        files=entries,
    )


def _check_entries(m: BackupManifest) -> None:
    """Only what replace writes: absolute plain paths in one folder, each once, with the states its kind has."""
    d = m.dest_dir
    if not d or "\x00" in d or not os.path.isabs(d) or os.path.normpath(d) != d or len(os.fsencode(d)) > 4000:
        raise _Unusable(f"manifest.json names {d!r} as the folder replaced, not a plain absolute path")
    if not m.files:
        raise _Unusable("manifest.json lists no files")
    seen: set[str] = set()
    markers = 0
    for i, e in enumerate(m.files):
        where = f"manifest.json entry {i} ({e.path[:200]!r})"
        name = os.path.basename(e.path)
        if (
            "\x00" in e.path
            or not os.path.isabs(e.path)
            or os.path.normpath(e.path) != e.path
            or os.path.dirname(e.path) != d
            or not _plain_name(name)
        ):
            raise _Unusable(f"{where} is not a file directly in {d}")
        if e.path in seen:
            raise _Unusable(f"{where} is listed twice")
        seen.add(e.path)
        old, new = e.old, e.new
        if e.kind == "added":  # replace adds only libraries the new programs need, and its marker
            ok = (
                old.type == "absent"
                and old.backup is None
                and old.sha256 is None
                and old.link is None
                and (_is_lib(name) or name == paths.REPLACED_MARKER)
            )
        elif e.kind == "replaced":
            ok = (
                old.type == "link"
                and isinstance(old.link, str)
                and bool(old.link)
                and "\x00" not in old.link
                and old.backup is None
            ) or (
                old.type == "file"
                and old.backup == f"{i:03d}-{name}"
                and isinstance(old.sha256, str)
                and bool(_SHA.fullmatch(old.sha256))
                and isinstance(old.mode, int)
                and 0 <= old.mode <= 0o7777
                and old.link is None
            )
        else:
            ok = False
        if ok and m.format >= 2:
            if name == paths.REPLACED_MARKER:
                ok = new is not None and new.type == "marker"
                markers += 1
            else:
                ok = new is not None and (
                    (new.type == "file" and bool(_SHA.fullmatch(new.sha256 or "")))
                    or (new.type == "link" and bool(new.link and "\x00" not in new.link))
                )
        if not ok:
            raise _Unusable(
                f"{where} does not hold what replace records for a{'n' if e.kind == 'added' else ''} "
                f"{str(e.kind)[:20]!r} file"
            )
    if m.format >= 2 and markers != 1:
        raise _Unusable(f"manifest.json does not list the marker replace leaves in {d}")


def rollback(backup: Path | None = None, *, backup_root: Path | None = None, force: bool = False) -> RollbackResult:
    """Restore the newest (or the given) backup, all or nothing, byte for byte.

    Every backup file's hash and every current file are checked against what replace recorded
    before anything changes; files changed since the replace are refused unless ``force``, and
    then kept in <backup>/displaced/. A replace or rollback killed half-way is undone first
    (``recover_interrupted``); an interrupted replace undone is itself the rollback.
    """
    undone = _recover_all(backup_root, Path(backup).absolute() if backup is not None else None)
    recovered = [said for *_rest, said in undone]
    replaces = [u for u in undone if u[0] == "replace"]
    if replaces and (backup is None or not os.path.lexists(backup)):
        # the last replace (or the one asked for) was never completed and is undone now: that was the rollback
        _cmd, dest, put_back, _said = replaces[-1]
        return RollbackResult(
            backup="(the interrupted replace's, removed)", dest_dir=dest, restored=put_back, recovered=recovered
        )
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

    def damaged(why: str) -> BackupDamaged:
        return BackupDamaged(
            f"the backup in {backup} is damaged: {why}; nothing was changed; the files are in {backup}/files/."
        )

    if os.path.islink(backup):
        raise damaged("it is a symlink, not the folder replace made")
    try:
        manifest, manifest_sha = _load_manifest(backup)
    except _Unusable as exc:
        raise damaged(str(exc)) from None
    files_dir = backup / "files"
    if any(e.old.backup for e in manifest.files) and (os.path.islink(files_dir) or not files_dir.is_dir()):
        raise damaged("its files/ folder is missing or a symlink")
    for e in manifest.files:
        if e.old.backup:
            got = _state_of(files_dir / e.old.backup)
            if got.type != "file":
                why = {"absent": "is missing", "link": "is a symlink"}.get(got.type, "is not a regular file")
                raise damaged(f"the copy of {e.path} (files/{e.old.backup}) {why}")
            if got.sha256 != e.old.sha256:
                raise damaged(
                    f"the copy of {e.path} (files/{e.old.backup}) is not the file replace saved "
                    f"(sha256 {(got.sha256 or '')[:12]}, recorded {(e.old.sha256 or '')[:12]})"
                )
    dest_dir = Path(manifest.dest_dir)
    if not dest_dir.is_dir():
        raise FilesChanged(
            f"{dest_dir}, where the backup in {backup} was made, is not a folder any more; nothing was changed."
        )
    current = [_state_of(Path(e.path)) for e in manifest.files]
    odd = [e.path for e, cur in zip(manifest.files, current, strict=True) if cur.type == "other"]
    if odd:
        raise FilesChanged(
            f"{', '.join(odd)} {'is' if len(odd) == 1 else 'are'} now a folder or a special file; "
            "rollback puts back only files and links. Move it away and run again; nothing was changed."
        )
    # the marker replace left names this backup and its manifest's sha256: only then do the entries
    # belong to that folder, and only then is a file that matches what replace installed safe to take away
    mark = read_marker(dest_dir)
    if (
        manifest.format >= 2
        and mark is not None
        and mark.backup == backup.name
        and mark.manifest_sha256 != manifest_sha
    ):
        raise damaged(f"manifest.json is not the one replace wrote (the marker in {dest_dir} records another sha256)")
    unconfirmed = ""
    if manifest.format < 2:
        unconfirmed = (
            f"The backup in {backup} was made by an older builddoctor that did not record what it "
            f"installed, so rollback cannot tell whether the files in {dest_dir} changed since"
        )
    elif mark is None or mark.backup != backup.name:
        why = (
            f"names another backup ({mark.backup[:60]})"
            if mark is not None and mark.backup
            else "is missing or unreadable"
        )
        unconfirmed = (
            f"The marker replace left in {dest_dir} ({paths.REPLACED_MARKER}) {why}, so nothing shows "
            f"that the backup in {backup} belongs to the files there now"
        )
    changed: list[tuple[BackupEntry, str]] = []
    for e, cur in zip(manifest.files, current, strict=True):
        if unconfirmed:
            if cur.type != "absent":
                changed.append((e, "unconfirmed"))
        elif e.new is None or e.new.type == "marker":
            continue
        elif cur.type == "absent":
            if e.kind == "replaced":
                changed.append((e, "was removed"))
        elif not _same(cur, e.new):
            changed.append((e, "differs from what replace put there"))
    if unconfirmed and not force:
        raise FilesChanged(
            f"{unconfirmed}; nothing was changed. `builddoctor rollback --force` restores it anyway "
            f"and keeps every file it takes away in {backup}/{KEPT}/."
        )
    if changed and not force:
        listed = "; ".join(f"{os.path.basename(e.path)} {why}" for e, why in changed[:20])
        raise FilesChanged(
            f"{len(changed)} file(s) in {dest_dir} changed since the replace ({listed}); nothing was "
            f"changed. `builddoctor rollback --force` restores the backup anyway and keeps those "
            f"files in {backup}/{KEPT}/."
        )
    keep = {e.path for e, _ in changed}
    undo_dir, kept_dir = backup / _UNDO, backup / KEPT
    steps: list[_Step] = []
    kept: list[str] = []
    kept_files: list[Path] = []
    try:
        shutil.rmtree(undo_dir, ignore_errors=True)
        undo_dir.mkdir()
        for i, (e, cur) in enumerate(zip(manifest.files, current, strict=True)):
            want_src = files_dir / e.old.backup if e.old.backup else None
            undo_src = None
            if e.path in keep and cur.type != "absent":
                kept_dir.mkdir(exist_ok=True)
                undo_src = kept_dir / f"{i:03d}-{os.path.basename(e.path)}"
                kept.append(f"{e.path} -> {undo_src}")
                kept_files.append(undo_src)
            elif cur.type == "file":
                undo_src = undo_dir / f"{i:03d}-{os.path.basename(e.path)}"
            if cur.type == "file":
                _copy_verified(Path(e.path), undo_src, cur.sha256, cur.mode)  # type: ignore[arg-type]
            elif cur.type == "link" and undo_src is not None:
                os.symlink(cur.link, undo_src)  # type: ignore[arg-type]
            steps.append(_Step(Path(e.path), e.old, want_src, cur, undo_src))
    except BaseException as exc:
        shutil.rmtree(undo_dir, ignore_errors=True)
        for k in kept_files:
            k.unlink(missing_ok=True)
        if isinstance(exc, (OSError, InstallError)):
            raise InstallError(
                f"keeping a copy of the files in {dest_dir} before the rollback failed "
                f"({_why(exc)}); nothing was changed.",
                exit_code=_failure_exit(exc),
            ) from None
        raise

    try:
        jfd = _write_journal(backup / JOURNAL, "rollback", dest_dir, steps)
    except OSError as exc:
        shutil.rmtree(undo_dir, ignore_errors=True)
        for k in kept_files:
            k.unlink(missing_ok=True)
        raise InstallError(
            f"writing the rollback's journal in {backup} failed ({_why(exc)}); nothing was changed.",
            exit_code=_failure_exit(exc),
        ) from None

    def commit() -> None:
        (backup / DONE).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
        (backup / JOURNAL).unlink()

    try:
        _transact(steps, commit)
    except _Failed as failed:
        (backup / DONE).unlink(missing_ok=True)
        if failed.stuck:  # the journal stays: the next rollback finishes putting them back
            os.close(jfd)
        else:
            _end_journal(backup / JOURNAL, jfd)
        if not failed.stuck:
            shutil.rmtree(undo_dir, ignore_errors=True)
            for k in kept_files:
                k.unlink(missing_ok=True)
            back = f" ({', '.join(os.path.basename(p) for p in failed.put_back)})" if failed.put_back else ""
            raise InstallError(
                f"rolling back {dest_dir} failed at {failed.at} ({_why(failed.cause)}); the "
                f"{len(failed.put_back)} file(s) already restored were put back as they were{back}; "
                f"nothing changed, the backup in {backup} is kept.",
                exit_code=_failure_exit(failed.cause),
            ) from None
        raise InstallError(
            f"rolling back {dest_dir} failed at {failed.at} ({_why(failed.cause)}), and "
            f"{len(failed.stuck)} file(s) could not be put back: {', '.join(failed.stuck)}; "
            f"their copies are in {undo_dir}/ and {kept_dir}/, the backup in {backup} is kept.",
            exit_code=_failure_exit(failed.cause),
        ) from None
    os.close(jfd)
    shutil.rmtree(undo_dir, ignore_errors=True)
    return RollbackResult(
        backup=str(backup),
        dest_dir=str(dest_dir),
        restored=[e.path for e in manifest.files],
        kept=kept,
        recovered=recovered,
    )
