"""source.pip_download, the one download path, with pip itself on a local wheel (--no-index: no network)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from builddoctor import errors, source

NAME = "bdtest_pkg-1.0-py3-none-any.whl"


@pytest.fixture
def wheel_dir(tmp_path, monkeypatch) -> Path:
    """A folder with one small, valid wheel; the builddoctor cache under tmp_path."""
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "index"
    folder.mkdir()
    info = "bdtest_pkg-1.0.dist-info"
    with zipfile.ZipFile(folder / NAME, "w") as zf:
        zf.writestr("bdtest_pkg/__init__.py", "")
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: bdtest-pkg\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return folder


def _get(folder: Path, sha256: str, said: list[str], requirement: str = "bdtest-pkg==1.0") -> Path:
    return source.pip_download(
        requirement,
        filename=NAME,
        sha256=sha256,
        size_mb=1,
        binary=True,
        say=said.append,
        extra_args=["--no-index", "--find-links", str(folder)],
        timeout=120,
    )


def test_a_verified_download_is_cached_and_served_again_without_pip(wheel_dir):
    digest = hashlib.sha256((wheel_dir / NAME).read_bytes()).hexdigest()
    said: list[str] = []
    got = _get(wheel_dir, digest, said)
    assert got.read_bytes() == (wheel_dir / NAME).read_bytes() and got.parent.name == "downloads"
    shutil.rmtree(wheel_dir)  # pip could not find it now: the second answer is the cache's
    assert _get(wheel_dir, digest, said) == got
    assert said[-1] == f"using the verified download in {got}"


def test_a_file_that_is_not_the_pin_is_refused_and_not_cached(wheel_dir):
    with pytest.raises(errors.SourceError, match="its sha256 is"):
        _get(wheel_dir, "0" * 64, [])
    downloads = Path(source.paths.cache_dir()) / "downloads"
    assert [p.name for p in downloads.iterdir()] == []  # not the file, nor pip's temp folder


def test_pip_not_finding_it_is_a_network_error_that_names_the_requirement(wheel_dir):
    with pytest.raises(errors.SourceError) as err:
        _get(wheel_dir, "0" * 64, [], requirement="bdtest-pkg==2.0")
    assert err.value.exit_code == errors.NETWORK and "pip could not download bdtest-pkg==2.0" in str(err.value)
