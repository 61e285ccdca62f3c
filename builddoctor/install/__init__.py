"""Put a finished build where a user runs it, and take it back.

- ``install_prefix``: copy the build's programs and libraries to
  ``<data_home>/installs/<key>/bin`` and point the stable ``<data_home>/bin`` at it (a
  symlink swapped atomically), so ``~/.local/share/builddoctor/bin/llama-cli`` always names
  the current build.
- ``replace``: write the new files over a found build's files; the old ones are first
  copied to ``<data_home>/backups/<time>/`` with a manifest (sha256, mode, link targets),
  each new file lands by an atomic rename, and a failure half-way restores what was
  already replaced. ``rollback`` restores the newest backup byte for byte.

Both change files through one journal (``journal.transact``), kept on disk as ``journal.json`` in
the backup folder from before the first file changes until the end: a replace or rollback killed
half-way (SIGKILL, power loss) is found by the next replace or rollback and undone, file by
file, to the state before it (``recover_interrupted``).

The parts: ``files`` (one path's state, the atomic put, the errors), ``manifest`` (a backup's
record, checked), ``journal`` and ``recover`` (the journal and its undoing), ``replace`` and
``rollback``; the marker a replace leaves is read by ``builddoctor.install_marker``.
"""

from builddoctor import paths
from builddoctor.install.files import (
    DONE,
    JOURNAL,
    KEPT,
    MANIFEST,
    BackupDamaged,
    FilesChanged,
    FileState,
    InstallError,
    backups_dir,
)
from builddoctor.install.journal import PAUSE_HOOK
from builddoctor.install.manifest import BackupEntry, BackupManifest, list_backups
from builddoctor.install.recover import recover_interrupted
from builddoctor.install.replace import InstallResult, build_files, install_prefix, plan_replace, replace
from builddoctor.install.rollback import RollbackResult, rollback
from builddoctor.install_marker import ReplacedMarker, read_marker

__all__ = [
    "DONE",
    "JOURNAL",
    "KEPT",
    "MANIFEST",
    "PAUSE_HOOK",
    "BackupDamaged",
    "BackupEntry",
    "BackupManifest",
    "FileState",
    "FilesChanged",
    "InstallError",
    "InstallResult",
    "ReplacedMarker",
    "RollbackResult",
    "backups_dir",
    "build_files",
    "install_prefix",
    "list_backups",
    "paths",  # fix.py names the data folder through it (install.paths.data_home())
    "plan_replace",
    "read_marker",
    "recover_interrupted",
    "replace",
    "rollback",
]
