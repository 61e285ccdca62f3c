"""The pinned source: real sdist from the registry, real extraction, real hashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builddoctor import errors, source

BUILDDOCTOR = [sys.executable, "-m", "builddoctor"]


@pytest.fixture(scope="session")
def sdist() -> Path:
    """The pinned sdist, downloaded once through pip (cached under the builddoctor cache)."""
    pin = source.load_pin()
    return source._download(pin, lambda m: None)


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        BUILDDOCTOR + list(args), capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_pin_is_one_small_data_file():
    pin = source.load_pin()
    assert pin.package == "llama-cpp-python" and pin.version == "0.3.36"
    assert pin.sha256 == "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
    assert pin.commit.startswith(pin.short_commit) and pin.short_commit == "0c1e570"


def test_fetch_then_fetch_again_is_a_noop(sdist: Path, tmp_path: Path):
    dest = tmp_path / "llama.cpp"
    first = source.fetch(dest, sdist=sdist)
    assert first.state == "verified"
    assert (dest / "models" / "ggml-vocab-llama-spm.gguf").is_file()
    assert not (dest / ".git").exists()
    assert source.tree_version(dest) == "0.5.0-dev"
    marker = (dest / "CMakeLists.txt").stat()
    t0 = time.monotonic()
    second = source.fetch(dest, sdist=sdist)
    assert second.state == "verified" and "nothing to do" in second.message
    assert (dest / "CMakeLists.txt").stat().st_ino == marker.st_ino  # not re-extracted
    assert time.monotonic() - t0 < 5
    # and through the CLI, which says so
    done = cli("source", "fetch", "--dest", str(dest), "--sdist", str(sdist))
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout


def test_corrupted_download_is_refused_and_tree_untouched(sdist: Path, tmp_path: Path):
    dest = tmp_path / "llama.cpp"
    source.fetch(dest, sdist=sdist)
    bad = tmp_path / sdist.name
    data = bytearray(sdist.read_bytes()[:2_000_000])
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    before = (dest / "CMakeLists.txt").stat().st_ino
    done = cli("source", "fetch", "--force", "--dest", str(dest), "--sdist", str(bad))
    assert done.returncode == errors.SOURCE, done.stderr
    assert "refused" in done.stderr and "sha256" in done.stderr
    assert "Traceback" not in done.stderr
    assert (dest / "CMakeLists.txt").stat().st_ino == before
    assert source.status(dest).state == "verified"


def test_status_tells_hand_edited_tree_from_verified(sdist: Path, tmp_path: Path):
    dest = tmp_path / "llama.cpp"
    source.fetch(dest, sdist=sdist)
    ok = cli("source", "status", "--source", str(dest), "--json")
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["state"] == "verified"
    with open(dest / "ggml" / "src" / "ggml.c", "a") as f:
        f.write("\n// local change\n")
    (dest / "extra.txt").write_text("new")
    (dest / "README.md").unlink()
    st = source.status(dest)
    assert st.state == "modified"
    assert st.changed == ["ggml/src/ggml.c"] and st.added == ["extra.txt"] and st.removed == ["README.md"]
    done = cli("source", "status", "--source", str(dest))
    assert done.returncode == errors.PROBLEMS
    assert "modified" in done.stdout and "ggml/src/ggml.c" in done.stdout
    # a plain fetch keeps the user's changes; --force restores the pinned tree
    refused = cli("source", "fetch", "--dest", str(dest), "--sdist", str(sdist))
    assert refused.returncode == errors.SOURCE and "local changes" in refused.stderr
    assert (dest / "extra.txt").exists()
    assert source.fetch(dest, sdist=sdist, force=True).state == "verified"
    assert not (dest / "extra.txt").exists()


def test_user_checkout_is_accepted_unverified(sdist: Path, tmp_path: Path):
    dest = tmp_path / "llama.cpp"
    source.fetch(dest, sdist=sdist)
    (dest / source.MANIFEST).unlink()
    st = source.status(dest)
    assert st.state == "unverified" and st.kind == "checkout" and st.version == "0.5.0-dev"
    assert source.resolve_source(dest) == dest.resolve()
    # and builddoctor will not overwrite it unasked
    with pytest.raises(errors.SourceError, match="did not fetch"):
        source.fetch(dest, sdist=sdist)


def test_not_a_llama_cpp_tree_is_refused(tmp_path: Path):
    (tmp_path / "CMakeLists.txt").write_text("project(other)")
    with pytest.raises(errors.InputError, match="not a llama.cpp source tree"):
        source.resolve_source(tmp_path)
    done = cli("source", "status", "--source", str(tmp_path))
    assert done.returncode == errors.USAGE and "not a llama.cpp source tree" in done.stderr


def test_killed_fetch_leaves_old_tree_or_none(sdist: Path, tmp_path: Path):
    dest = tmp_path / "llama.cpp"
    source.fetch(dest, sdist=sdist)
    # kill a forced re-fetch at several points during extraction
    for delay in (0.3, 1.0, 2.0):
        p = subprocess.Popen(
            BUILDDOCTOR + ["source", "fetch", "--force", "--dest", str(dest), "--sdist", str(sdist)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        # what is at dest is either absent or a complete, verified tree
        if dest.exists():
            assert source.status(dest).state == "verified"
        # the next fetch cleans up whatever was left beside it and ends verified
        assert source.fetch(dest, sdist=sdist).state == "verified"
        assert not list(tmp_path.glob(".llama.cpp.partial-*"))
        assert not list(tmp_path.glob(".llama.cpp.old-*"))


def test_killed_between_renames_restores_old_tree(sdist: Path, tmp_path: Path):
    dest = tmp_path / "llama.cpp"
    source.fetch(dest, sdist=sdist)
    old = tmp_path / ".llama.cpp.old-12345"
    os.replace(dest, old)  # the state right after the first rename
    st = source.fetch(dest, sdist=sdist)
    assert st.state == "verified" and "nothing to do" in st.message
    assert not old.exists()


def test_missing_sdist_file_is_a_usage_error(tmp_path: Path):
    done = cli("source", "fetch", "--force", "--dest", str(tmp_path / "x"), "--sdist", str(tmp_path / "nope.tar.gz"))
    assert done.returncode == errors.USAGE
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_ensure_source_returns_pinned_tree():
    root = source.ensure_source()
    assert source.looks_like_llama_cpp(root)
