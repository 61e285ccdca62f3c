"""A backup's manifest.json: what replace saved and what it put there, read back as foreign input.

Rollback trusts a manifest only as far as ``load_manifest`` checks it: exactly what replace writes
(absolute plain paths in one folder, each once, with the states its kind has), nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import paths
from builddoctor.install.files import (
    DONE,
    FORMAT,
    MANIFEST,
    MAX_MANIFEST,
    SHA,
    FileState,
    backups_dir,
    is_lib,
    plain_name,
    stamped_folders,
)
from builddoctor.install_marker import Unusable, read_small
from builddoctor.profiles import SchemaError, Serializable


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


def list_backups(root: Path | None = None) -> list[Path]:
    """Backups not yet rolled back, oldest first; one without a usable manifest is listed too, so
    that rollback refuses it by name instead of silently taking an older one."""
    return stamped_folders(Path(root or backups_dir()), lambda p: p.is_dir() and not os.path.lexists(p / DONE))


def load_manifest(backup: Path) -> tuple[BackupManifest, str]:
    """The backup's manifest and its sha256, checked entry by entry; ``Unusable`` says what is wrong."""
    if not os.path.lexists(backup / MANIFEST):
        raise Unusable("it has no manifest.json")
    try:
        raw = read_small(backup / MANIFEST, MAX_MANIFEST)
    except Unusable as exc:
        raise Unusable(f"manifest.json: {exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unusable("manifest.json is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise Unusable(f"manifest.json is not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise Unusable("manifest.json is not a JSON object")
    try:
        if "format" not in data:
            manifest = _from_format_1(data)
        elif data["format"] != FORMAT:
            raise Unusable(
                f"manifest.json has format {str(data['format'])[:20]}, which this builddoctor does not "
                f"know (it reads {FORMAT} and the older unnumbered one)"
            )
        else:
            manifest = BackupManifest.from_dict(data)
    except SchemaError as exc:
        raise Unusable(f"manifest.json: {' '.join(str(exc).split())[:300]}") from None
    check_entries(manifest)
    return manifest, hashlib.sha256(raw).hexdigest()


def _from_format_1(data: dict) -> BackupManifest:
    """A manifest of builddoctor before format 2: what was replaced, not what was put there."""
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise Unusable("manifest.json lists no files")
    entries = []
    for i, e in enumerate(files):
        if not isinstance(e, dict) or set(e) - {"path", "kind", "link", "backup", "sha256", "mode"}:
            raise Unusable(f"manifest.json: entry {i} is not an entry replace writes")
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


def check_entries(m: BackupManifest) -> None:
    """Only what replace writes: absolute plain paths in one folder, each once, with the states its kind has."""
    d = m.dest_dir
    if not d or "\x00" in d or not os.path.isabs(d) or os.path.normpath(d) != d or len(os.fsencode(d)) > 4000:
        raise Unusable(f"manifest.json names {d!r} as the folder replaced, not a plain absolute path")
    if not m.files:
        raise Unusable("manifest.json lists no files")
    seen: set[str] = set()
    markers = 0
    for i, e in enumerate(m.files):
        where = f"manifest.json entry {i} ({e.path[:200]!r})"
        name = os.path.basename(e.path)
        if not _directly_in(e.path, d, name):
            raise Unusable(f"{where} is not a file directly in {d}")
        if e.path in seen:
            raise Unusable(f"{where} is listed twice")
        seen.add(e.path)
        ok = _old_as_recorded(e, i, name)
        if ok and m.format >= 2:
            ok = _new_as_recorded(e.new, name)
            markers += name == paths.REPLACED_MARKER
        if not ok:
            raise Unusable(
                f"{where} does not hold what replace records for a{'n' if e.kind == 'added' else ''} "
                f"{str(e.kind)[:20]!r} file"
            )
    if m.format >= 2 and markers != 1:
        raise Unusable(f"manifest.json does not list the marker replace leaves in {d}")


def _directly_in(path: str, d: str, name: str) -> bool:
    """``path`` is an absolute, normalized path to the plain name ``name`` directly in the folder ``d``."""
    return (
        "\x00" not in path
        and os.path.isabs(path)
        and os.path.normpath(path) == path
        and os.path.dirname(path) == d
        and plain_name(name)
    )


def _old_as_recorded(e: BackupEntry, i: int, name: str) -> bool:
    """The entry's old state is one replace records for its kind (the ``i``-th entry, file ``name``)."""
    old = e.old
    if e.kind == "added":  # replace adds only libraries the new programs need, and its marker
        return (
            old.type == "absent"
            and old.backup is None
            and old.sha256 is None
            and old.link is None
            and (is_lib(name) or name == paths.REPLACED_MARKER)
        )
    if e.kind == "replaced":
        return (
            old.type == "link"
            and isinstance(old.link, str)
            and bool(old.link)
            and "\x00" not in old.link
            and old.backup is None
        ) or (
            old.type == "file"
            and old.backup == f"{i:03d}-{name}"
            and isinstance(old.sha256, str)
            and bool(SHA.fullmatch(old.sha256))
            and isinstance(old.mode, int)
            and 0 <= old.mode <= 0o7777
            and old.link is None
        )
    return False


def _new_as_recorded(new: FileState | None, name: str) -> bool:
    """What a format-2 entry says replace put there: the marker for the marker, else a file or a link."""
    if name == paths.REPLACED_MARKER:
        return new is not None and new.type == "marker"
    return new is not None and (
        (new.type == "file" and bool(SHA.fullmatch(new.sha256 or "")))
        or (new.type == "link" and bool(new.link and "\x00" not in new.link))
    )
