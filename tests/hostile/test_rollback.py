"""Forged, damaged and unlucky backups: `rollback` restores all or nothing and writes only where replace did.

Every case makes a real replace into a tmp folder, then damages its backup or the folder the way a
corrupt disk, a hand edit or a hostile manifest would, and runs the real `builddoctor rollback`.
A refusal must leave every file byte-identical (content, mode, link target) in the install folder,
the backup and the bystander folders; a rollback that goes ahead must restore the old files exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor import errors, install, paths
from builddoctor.cli import _register, cli
from builddoctor.inspect import discover
from tests.test_install import make_new_build, make_old_install

_register()


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (not following links): its type, mode and sha256 or link target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = f"link -> {os.readlink(p)}"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = f"dir {oct(stat.S_IMODE(st.st_mode))}"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = f"file {oct(stat.S_IMODE(st.st_mode))} {hashlib.sha256(p.read_bytes()).hexdigest()}"
            else:
                out[rel] = f"special {oct(st.st_mode)}"
    return out


def rollback(*args: str):
    return CliRunner().invoke(cli, ["rollback", *args], catch_exceptions=False)


class Setup:
    """A user's install replaced by a new build, its backup, and a bystander folder with a marker file."""

    def __init__(self, tmp_path: Path):
        self.dest = tmp_path / "usr" / "bin"
        make_old_install(self.dest)
        self.before = tree(self.dest)
        self.new = make_new_build(tmp_path / "build")
        self.backup = Path(install.replace(self.new, self.dest).backup)
        self.replaced = tree(self.dest)
        self.other = tmp_path / "other"
        self.other.mkdir()
        (self.other / "victim").write_bytes(b"a file of the user's, somewhere else")
        (self.other / "payload").write_bytes(b"#!/bin/sh\necho owned\n")
        (self.other / "libuser.so").write_bytes(b"\x7fELF a library of the user's, somewhere else")
        self.other_tree = tree(self.other)

    @property
    def manifest_path(self) -> Path:
        return self.backup / install.MANIFEST

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, data: dict | bytes | str, *, sign: bool = False) -> None:
        """Replace the manifest; ``sign``: also make the folder's marker name its sha256, as a forger
        who can write both would, so that only the manifest's own checks stand in the way."""
        raw = data if isinstance(data, bytes) else (data if isinstance(data, str) else json.dumps(data)).encode()
        self.manifest_path.write_bytes(raw)
        if sign:
            marker = self.dest / paths.REPLACED_MARKER
            m = json.loads(marker.read_text())
            m["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
            marker.write_text(json.dumps(m))
            self.replaced = tree(self.dest)

    def entry(self, data: dict, name: str) -> dict:
        return next(e for e in data["files"] if os.path.basename(e["path"]) == name)

    def downgrade(self) -> None:
        """The backup and marker as builddoctor wrote them before format 2, which the old rollback obeyed."""
        m = self.manifest()
        old = []
        for e in m["files"]:
            o = {"path": e["path"], "kind": e["kind"]}
            if e["old"]["type"] == "link":
                o["link"] = e["old"]["link"]
            elif e["old"]["type"] == "file":
                o.update(backup=e["old"]["backup"], sha256=e["old"]["sha256"], mode=e["old"]["mode"])
            old.append(o)
        self.write_manifest({"created": m["created"], "build": m["build"], "files": old})
        (self.dest / paths.REPLACED_MARKER).write_text(
            json.dumps({"build_dir": m["build"], "cmake_cache": None}, indent=1)
        )
        self.replaced = tree(self.dest)

    def added(self, path: str, sha256: str) -> dict:
        """An entry saying replace added ``path`` (so rollback would delete it), in this backup's format."""
        if "format" not in self.manifest():
            return {"path": path, "kind": "added"}
        return {"path": path, "kind": "added", "old": {"type": "absent"}, "new": {"type": "file", "sha256": sha256}}

    @staticmethod
    def old_of(e: dict) -> dict:
        """Where an entry keeps its backup, sha256, mode and link: its "old" (format 2) or itself (format 1)."""
        return e.get("old", e)

    def assert_refused_untouched(self, res, code: int, *words: str) -> None:
        assert res.exit_code == code, res.output
        assert "nothing was changed" in res.output, res.output
        for w in words:
            assert w in res.output, res.output
        assert tree(self.dest) == self.replaced, "a refused rollback changed the install folder"
        assert tree(self.other) == self.other_tree, "a refused rollback touched a bystander folder"
        assert install.list_backups() == [self.backup]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def s(tmp_path) -> Setup:
    return Setup(tmp_path)


VARIANTS = ["v1", "v2", "v2-signed"]


def prepare(s: Setup, variant: str) -> bool:
    """Make the backup a format-1 one for "v1"; return whether a forged manifest is to be signed."""
    if variant == "v1":
        s.downgrade()
    return variant == "v2-signed"


def refused_backup_unchanged(s: Setup, res, code: int, *words: str) -> None:
    backup_before = tree(s.backup)
    s.assert_refused_untouched(res, code, *words)
    assert tree(s.backup) == backup_before


# --------------------------------------------------------------------------- what held up must stay


def test_an_intact_backup_rolls_back_byte_for_byte(s):
    res = rollback()
    assert res.exit_code == 0, res.output
    assert tree(s.dest) == s.before
    assert (s.backup / install.DONE).is_file() and not (s.backup / ".undo").exists()
    assert "no backup" in rollback().output


def test_replace_records_what_it_installed(s):
    m = s.manifest()
    assert m["format"] == 2 and m["dest_dir"] == str(s.dest)
    cli_entry = s.entry(m, "llama-cli")
    assert cli_entry["new"]["sha256"] == hashlib.sha256(Path(s.new.binaries[0]).read_bytes()).hexdigest()
    assert s.entry(m, "libllama.so")["new"] == {
        "type": "link",
        "sha256": None,
        "mode": None,
        "link": "libllama.so.0",
        "backup": None,
    }
    marker = install.read_marker(s.dest)
    assert marker.backup == s.backup.name
    assert marker.manifest_sha256 == hashlib.sha256(s.manifest_path.read_bytes()).hexdigest()


def test_a_stray_folder_among_the_backups_is_not_taken_for_the_newest(s):
    """Only the names replace gives its backups count: a folder of the user's there is left alone."""
    stray = s.backup.parent / "zz-notes"
    stray.mkdir()
    (stray / "manifest.json").write_text("{}")
    res = rollback()
    assert res.exit_code == 0, res.output
    assert tree(s.dest) == s.before
    assert (stray / "manifest.json").read_text() == "{}"


# --------------------------------------------------------------------------- forged manifests


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_entry_outside_the_folder_touches_nothing(s, variant):
    sign = prepare(s, variant)
    m = s.manifest()
    victim = s.other / "victim"
    m["files"].append(s.added(str(victim), hashlib.sha256(victim.read_bytes()).hexdigest()))
    s.write_manifest(m, sign=sign)
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged", "not a file directly in", str(s.backup))


def test_a_manifest_for_another_folder_touches_nothing(s):
    """The manifest moved to a folder replace never wrote: no marker there names it."""
    m = s.manifest()
    victim = s.other / "libuser.so"  # a library name: replace may add those
    m["dest_dir"] = str(s.other)
    m["files"] = [
        {
            "path": str(victim),
            "kind": "added",
            "old": {"type": "absent"},
            "new": {"type": "file", "sha256": hashlib.sha256(victim.read_bytes()).hexdigest()},
        },
        {
            "path": str(s.other / paths.REPLACED_MARKER),
            "kind": "added",
            "old": {"type": "absent"},
            "new": {"type": "marker"},
        },
    ]
    s.write_manifest(m)
    refused_backup_unchanged(s, rollback(), 1, "marker", "missing")


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_relative_path_does_not_resolve_against_the_cwd(s, tmp_path, monkeypatch, variant):
    sign = prepare(s, variant)
    sentinel = tmp_path / "cwd"
    sentinel.mkdir()
    (sentinel / "llama-cli").write_bytes(b"sentinel")
    monkeypatch.chdir(sentinel)
    m = s.manifest()
    m["files"].append(s.added("llama-cli", hashlib.sha256(b"sentinel").hexdigest()))
    s.write_manifest(m, sign=sign)
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged")
    assert (sentinel / "llama-cli").read_bytes() == b"sentinel"


@pytest.mark.parametrize("name", ["../../../other/payload", "{other}/payload", "files/../../other/payload"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_backup_name_outside_the_backup_is_refused(s, name, variant):
    sign = prepare(s, variant)
    m = s.manifest()
    e = s.old_of(s.entry(m, "llama-cli"))
    e["backup"] = name.format(other=s.other)
    e["sha256"] = hashlib.sha256((s.other / "payload").read_bytes()).hexdigest()
    s.write_manifest(m, sign=sign)
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged")


@pytest.mark.parametrize(
    "path",
    [
        "{dest}/../../other/victim",
        "{dest}/./llama-cli",
        "{dest}//llama-cli",
        "{dest}/",
        "{dest}/..",
        "{dest}/" + "a" * 300 + ".so",
    ],
)
@pytest.mark.parametrize("variant", ["v1", "v2-signed"])
def test_a_path_that_is_not_plain_is_refused(s, path, variant):
    prepare(s, variant)
    m = s.manifest()
    s.entry(m, "llama-cli")["path"] = path.format(dest=s.dest)
    s.write_manifest(m, sign=variant != "v1")
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged")


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_a_symlink_to_etc_shadow_is_not_restored(s, variant):
    prepare(s, variant)
    m = s.manifest()
    e = s.entry(m, "llama-cli")
    if variant == "v1":
        for k in ("backup", "sha256", "mode"):
            del e[k]
        e["link"] = "/etc/shadow"
        s.write_manifest(m)
        refused_backup_unchanged(s, rollback(), 1, "older builddoctor", "--force")
    else:
        e["old"] = {"type": "link", "link": "/etc/shadow"}
        s.write_manifest(m)
        refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged", "not the one replace wrote")
    assert not (s.dest / "llama-cli").is_symlink()


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_forged_added_entry_does_not_delete_a_user_file(s, variant):
    """replace adds only libraries (and its marker): any other "added" file is the user's."""
    sign = prepare(s, variant)
    m = s.manifest()
    user = s.dest / "unrelated.txt"
    m["files"].append(s.added(str(user), hashlib.sha256(user.read_bytes()).hexdigest()))
    s.write_manifest(m, sign=sign)
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged", "unrelated.txt")
    assert user.read_text() == "the user's own file"
    assert user.read_text() == "the user's own file"


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_duplicate_entry_is_refused(s, variant):
    sign = prepare(s, variant)
    m = s.manifest()
    m["files"].append(dict(s.entry(m, "llama-cli")))
    s.write_manifest(m, sign=sign)
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged")


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "not-json",
        "binary",
        "empty",
        "huge",
        "deep",
        "a-list",
        "format-9",
        "wrong-types",
        "symlink",
        "folder",
        "fifo",
        "missing",
    ],
)
@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_a_damaged_or_missing_manifest_is_a_clear_refusal(s, tmp_path, how, variant):
    prepare(s, variant)
    raw = s.manifest_path.read_bytes()
    mp = s.manifest_path
    if how == "truncated":
        mp.write_bytes(raw[: len(raw) // 2])
    elif how == "not-json":
        mp.write_text("this is not a manifest")
    elif how == "binary":
        mp.write_bytes(b"\xff\xfe\x00" + os.urandom(64))
    elif how == "empty":
        mp.write_bytes(b"")
    elif how == "huge":  # valid JSON, far bigger than replace writes
        mp.write_bytes(raw[:-1] + b" " * (3 << 20) + raw[-1:])
    elif how == "deep":
        mp.write_text("[" * 100000 + "]" * 100000)
    elif how == "a-list":
        mp.write_text("[1, 2, 3]")
    elif how == "format-9":
        mp.write_text(json.dumps({**json.loads(raw), "format": 9}))
    elif how == "wrong-types":
        m = json.loads(raw)
        s.old_of(s.entry(m, "llama-cli"))["mode"] = "rwx"
        mp.write_text(json.dumps(m))
    elif how == "symlink":
        real = tmp_path / "elsewhere.json"
        real.write_bytes(raw)
        mp.unlink()
        os.symlink(real, mp)
    elif how == "folder":
        mp.unlink()
        mp.mkdir()
    elif how == "fifo":
        mp.unlink()
        os.mkfifo(mp)
    elif how == "missing":
        mp.unlink()
    refused_backup_unchanged(
        s, rollback(), errors.USAGE, f"the backup in {s.backup} is damaged", f"the files are in {s.backup}/files/"
    )


# --------------------------------------------------------------------------- damaged backup files


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_a_backup_file_with_another_hash_is_refused_before_anything_changes(s, variant):
    prepare(s, variant)
    saved = s.backup / "files" / s.old_of(s.entry(s.manifest(), "libllama.so.0"))["backup"]
    saved.write_bytes(saved.read_bytes()[:-1] + b"X")
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged", "not the file replace saved")


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_a_missing_backup_file_is_refused_before_anything_changes(s, variant):
    prepare(s, variant)
    """Before: llama-cli was restored, then the missing library stopped it half-way (exit 70)."""
    (s.backup / "files" / s.old_of(s.entry(s.manifest(), "libllama.so.0"))["backup"]).unlink()
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged", "is missing")


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_a_symlink_in_place_of_a_backup_file_is_refused(s, variant, tmp_path):
    prepare(s, variant)
    saved = s.backup / "files" / s.old_of(s.entry(s.manifest(), "llama-cli"))["backup"]
    outside = tmp_path / "same-bytes"
    outside.write_bytes(saved.read_bytes())  # the right bytes, but not in the backup
    saved.unlink()
    os.symlink(outside, saved)
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged", "is a symlink")
    assert not (s.dest / "llama-cli").is_symlink()


@pytest.mark.parametrize("what", ["fifo", "folder"])
def test_a_backup_file_that_is_not_a_file_is_refused_without_blocking(s, what):
    saved = s.backup / "files" / s.old_of(s.entry(s.manifest(), "llama-cli"))["backup"]
    saved.unlink()
    os.mkfifo(saved) if what == "fifo" else saved.mkdir()
    refused_backup_unchanged(s, rollback(), errors.USAGE, "damaged", "not a regular file")


# --------------------------------------------------------------------------- the folder changed since


def test_a_removed_marker_is_refused_then_force_restores_and_keeps_every_file(s):
    """Without the marker nothing ties the backup to the folder: --force restores, and loses nothing."""
    (s.dest / paths.REPLACED_MARKER).unlink()
    s.replaced = tree(s.dest)
    there = {os.path.basename(e["path"]) for e in s.manifest()["files"]} - {paths.REPLACED_MARKER}
    refused_backup_unchanged(s, rollback(), 1, "marker", "--force")
    res = rollback("--force")
    assert res.exit_code == 0, res.output
    assert tree(s.dest) == s.before
    kept = {p.name.split("-", 1)[1]: p for p in (s.backup / install.KEPT).iterdir()}
    assert set(kept) == there
    assert all(tree(s.backup / install.KEPT)[k.name] == s.replaced[n] for n, k in kept.items())


def test_a_file_changed_since_is_refused_then_force_restores_and_keeps_it(s):
    cli_ = s.dest / "llama-cli"
    cli_.write_bytes(b"the user's own patched llama-cli")
    s.replaced = tree(s.dest)
    refused_backup_unchanged(s, rollback(), 1, "changed since", "llama-cli", "--force")
    res = rollback("--force")
    assert res.exit_code == 0, res.output
    assert tree(s.dest) == s.before
    kept = list((s.backup / install.KEPT).iterdir())
    assert [k.read_bytes() for k in kept] == [b"the user's own patched llama-cli"]


def test_a_symlink_in_place_of_a_target_is_refused_and_its_target_never_written(s):
    cli_ = s.dest / "llama-cli"
    cli_.unlink()
    os.symlink(s.other / "victim", cli_)
    s.replaced = tree(s.dest)
    refused_backup_unchanged(s, rollback(), 1, "changed since")
    assert rollback("--force").exit_code == 0
    assert tree(s.dest) == s.before and tree(s.other) == s.other_tree
    assert [os.readlink(k) for k in (s.backup / install.KEPT).iterdir()] == [str(s.other / "victim")]


def test_a_folder_in_place_of_a_target_is_refused_even_with_force(s):
    cli_ = s.dest / "llama-cli"
    cli_.unlink()
    cli_.mkdir()
    (cli_ / "inside").write_text("x")
    s.replaced = tree(s.dest)
    for args in ((), ("--force",)):
        refused_backup_unchanged(s, rollback(*args), 1, "folder")


# --------------------------------------------------------------------------- half-way failures


def test_a_failure_half_way_puts_back_what_was_restored(s):
    """A file-size limit makes writing the big library fail after llama-cli was already restored."""
    s2_dest = s.dest.parent / "bin2"
    make_old_install(s2_dest)
    big = s2_dest / "libllama.so.0"
    big.write_bytes(os.urandom(512 * 1024))
    before = tree(s2_dest)
    install.rollback()  # the first setup's backup is not the subject here
    backup = Path(install.replace(make_new_build(s.dest.parent.parent / "build2", b"two"), s2_dest).backup)
    replaced = tree(s2_dest)
    backup_before = tree(backup)
    names = [os.path.basename(e["path"]) for e in json.loads((backup / install.MANIFEST).read_text())["files"]]
    assert names.index("llama-cli") < names.index("libllama.so.0"), "llama-cli is restored first"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    try:
        res = rollback()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert res.exit_code == 1, res.output
    assert "failed at libllama.so.0" in res.output and "put back" in res.output and "llama-cli" in res.output, (
        res.output
    )
    assert tree(s2_dest) == replaced
    assert tree(backup) == backup_before
    res = rollback()
    assert res.exit_code == 0, res.output
    assert tree(s2_dest) == before


# --------------------------------------------------------------------------- older backups, markers


def test_an_older_backup_is_refused_clearly_then_restored_with_force(s):
    s.downgrade()
    refused_backup_unchanged(s, rollback(), 1, "older builddoctor", "--force")
    res = rollback("--force")
    assert res.exit_code == 0, res.output
    assert tree(s.dest) == s.before
    kept = sorted(p.name.split("-", 1)[1] for p in (s.backup / install.KEPT).iterdir())
    assert kept == sorted(
        [paths.REPLACED_MARKER, "libggml-cpu.so", "libllama.so", "libllama.so.0", "libllama.so.0.0.1", "llama-cli"]
    )


@pytest.mark.parametrize(
    "content",
    [
        '{"cmake_cache": 5}',
        '{"cmake_cache": {"a": 1}}',
        '{"cmake_cache": [1]}',
        '{"cmake_cache": true}',
        '{"cmake_cache": 1e400}',
    ],
)
def test_a_malformed_marker_is_no_crash(tmp_path, content):
    """`check` reads the marker to find the replacing build's CMakeCache.txt: a wrong type was exit 70."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / paths.REPLACED_MARKER).write_text(content)
    assert discover.find_cmake_cache(folder) is None
