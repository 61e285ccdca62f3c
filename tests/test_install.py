"""builddoctor.install: own prefix, --replace with a backup, rollback byte for byte."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from builddoctor import install
from builddoctor.profiles import BuildPlan, BuildResult


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    """name -> sha256 or '-> link target', for every entry of a folder."""
    out = {}
    for p in sorted(folder.iterdir()):
        out[p.name] = f"-> {os.readlink(p)}" if p.is_symlink() else _sha(p)
    return out


def make_new_build(root: Path, tag: bytes = b"new") -> BuildResult:
    """A finished build's layout: programs and versioned shared libraries in <build>/bin."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("llama-cli", "llama-bench"):
        (bin_dir / name).write_bytes(b"\x7fELF program " + tag + name.encode() + os.urandom(64))
        (bin_dir / name).chmod(0o755)
    (bin_dir / "libllama.so.0.0.1").write_bytes(b"\x7fELF lib " + tag + os.urandom(256))
    os.symlink("libllama.so.0.0.1", bin_dir / "libllama.so.0")
    os.symlink("libllama.so.0", bin_dir / "libllama.so")
    (bin_dir / "libggml-cpu.so").write_bytes(b"\x7fELF cpu " + tag + os.urandom(256))
    (bin_dir / "build.log").write_text("not a file to install")
    return BuildResult(
        status="ok",
        plan=BuildPlan(goal="native", backend="cpu"),
        source_dir="/src",
        build_dir=str(root),
        cache_key="k" + tag.decode(),
        binaries=[str(bin_dir / "llama-cli"), str(bin_dir / "llama-bench")],
    )


def make_old_install(folder: Path) -> None:
    """A user's install: programs, a library as a plain file and one as a link; no llama-bench."""
    folder.mkdir(parents=True)
    (folder / "llama-cli").write_bytes(b"\x7fELF old cli" + os.urandom(128))
    (folder / "llama-cli").chmod(0o750)
    (folder / "libllama.so.0").write_bytes(b"\x7fELF old lib" + os.urandom(128))
    os.symlink("libllama.so.0", folder / "libllama.so")
    (folder / "unrelated.txt").write_text("the user's own file")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_install_into_own_prefix_with_a_stable_link(tmp_path, home):
    first = make_new_build(tmp_path / "b1", b"one")
    got = install.install_prefix(first)
    link = home / "bin"
    assert got.bin_dir == str(link) and link.is_symlink()
    assert (link / "llama-cli").read_bytes() == Path(first.binaries[0]).read_bytes()
    assert os.readlink(link / "libllama.so") == "libllama.so.0"
    assert not (link / "build.log").exists()
    second = make_new_build(tmp_path / "b2", b"two")
    install.install_prefix(second)
    assert (link / "llama-cli").read_bytes() == Path(second.binaries[0]).read_bytes()
    assert not list(home.glob(".bin-*")) and not list((home / "installs").glob(".staging-*"))


def test_replace_then_rollback_is_byte_identical(tmp_path, home):
    old = tmp_path / "usr" / "bin"
    make_old_install(old)
    before = _tree(old)
    new = make_new_build(tmp_path / "build")
    got = install.replace(new, old)
    assert got.backup and Path(got.backup).is_dir()
    assert (old / "llama-cli").read_bytes() == Path(new.binaries[0]).read_bytes()
    assert not (old / "llama-bench").exists(), "programs the old folder did not have are not added"
    assert (old / "libggml-cpu.so").is_file(), "libraries the new programs need are added"
    assert (old / "unrelated.txt").read_text() == "the user's own file"
    restored = install.rollback().restored
    assert str(old / "llama-cli") in restored
    assert _tree(old) == before
    assert oct((old / "llama-cli").stat().st_mode & 0o777) == oct(0o750)
    with pytest.raises(install.InstallError, match="no backup"):
        install.rollback()


def test_replace_refuses_a_folder_without_the_programs(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "libllama.so").write_bytes(b"x")
    with pytest.raises(install.InstallError, match="nothing to replace"):
        install.replace(make_new_build(tmp_path / "build"), other)
    assert (other / "libllama.so").read_bytes() == b"x"


def test_a_failed_copy_puts_the_old_files_back(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, timeout=10
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        old = disk / "bin"
        make_old_install(old)
        before = _tree(old)
        new = make_new_build(tmp_path / "build")
        big = Path(new.build_dir) / "bin" / "libggml-cpu.so"  # copied after llama-cli: fails half-way
        big.write_bytes(os.urandom(200 * 1024))
        with pytest.raises(install.InstallError, match="old files were put back") as err:
            install.replace(new, old)
        assert err.value.exit_code == 7
        assert _tree(old) == before
        assert not install.list_backups()
    finally:
        subprocess.run(["umount", "-l", str(disk)], timeout=10)
