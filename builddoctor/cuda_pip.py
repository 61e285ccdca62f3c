"""The CUDA pieces a system toolkit lacks (cuBLAS), from NVIDIA's PyPI wheels, for `build --cuda-from-pip`.

A toolkit without cuBLAS cannot build ggml-cuda (``CUDA::cublas``). The pinned wheels
(data/cuda_pip.toml: version and sha256) are downloaded with pip, checked, unpacked in
builddoctor's cache, every file checked against the wheel's RECORD, and merged with the system
toolkit into one symlink tree: FindCUDAToolkit wants one root whose include/ and lib/ hold
cudart and cuBLAS alike, and the wheels keep theirs under nvidia/cu13/. Nothing outside the
cache is written; the network is used only in ``ensure`` and only through pip.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builddoctor import errors, paths, versions
from builddoctor.probe.toolchain import cublas_fact, find_cublas, toolkit_root
from builddoctor.profiles import ToolInfo
from builddoctor.source import pip_download, sha256_file
from builddoctor.tomlload import load_toml

DATA_FILE = paths.DATA_DIR / "cuda_pip.toml"
DOWNLOAD_TIMEOUT = 1800.0
MARKER = ".builddoctor-cuda.json"


@dataclass
class Wheel:
    package: str
    version: str
    file: str
    sha256: str
    size_mb: int = 0
    provides: list[str] = field(default_factory=list)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass
class WheelSet:
    cuda: str
    prefix: str
    wheels: list[Wheel]


@dataclass
class PipToolkit:
    """A merged toolkit in the cache: ``root`` for CUDAToolkit_ROOT, ``nvcc`` for CMAKE_CUDA_COMPILER."""

    root: str
    nvcc: str
    system_root: str
    cuda: str
    wheels: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def load_sets(path: Path | None = None) -> list[WheelSet]:
    data = load_toml(path or DATA_FILE)
    return [
        WheelSet(cuda=s["cuda"], prefix=s["prefix"], wheels=[Wheel(**w) for w in s.get("wheel", [])])
        for s in data.get("set", [])
    ]


def _vt(text: str | None) -> tuple[int, ...]:
    return versions.version_tuple(text) or ()


def choose(nvcc_version: str | None, sets: list[WheelSet] | None = None) -> WheelSet | None:
    """The newest set of nvcc's major version that is not newer than nvcc (cuBLAS needs a cudart at
    least as new as the one it shipped with)."""
    v = _vt(nvcc_version or "")
    if not v:
        return None
    fits = [s for s in (load_sets() if sets is None else sets) if _vt(s.cuda)[:1] == v[:1] and _vt(s.cuda) <= v[:2]]
    return max(fits, key=lambda s: _vt(s.cuda), default=None)


def install_hint(nvcc_version: str | None) -> str:
    """What to run when cuBLAS is missing: the pinned wheels through builddoctor, or pip by hand."""
    s = choose(nvcc_version)
    if s is None:
        return ""
    reqs = " ".join(w.requirement for w in s.wheels)
    return (
        f"`builddoctor build --cuda-from-pip` (downloads {reqs} from PyPI into builddoctor's cache, "
        f"checks them, and points CMake there with -DCUDAToolkit_ROOT), or by hand: `pip install {reqs}` and "
        f"merge its {s.prefix}/include and {s.prefix}/lib with the toolkit's, then -DCUDAToolkit_ROOT=<that folder>"
    )


def cache_root() -> Path:
    return paths.cache_dir() / "cuda"


def ensure(
    nvcc_path: str,
    nvcc_version: str | None,
    *,
    say: Callable[[str], None] = lambda s: None,
    wheel_dir: Path | None = None,
) -> PipToolkit:
    """The merged toolkit for this nvcc, made if needed. ``wheel_dir``: take the wheels from there
    (still sha256-checked) instead of downloading."""
    s = choose(nvcc_version)
    if s is None:
        raise errors.UserError(
            f"builddoctor has no pinned PyPI CUDA wheels for nvcc {nvcc_version or '?'} "
            f"({DATA_FILE.name} lists CUDA {', '.join(x.cuda for x in load_sets())})."
        )
    system = toolkit_root(nvcc_path)
    merged = _merged_dir(s, system)
    info = _made(merged)
    if info is not None:
        say(f"using the CUDA toolkit merged with cuBLAS in {merged}")
        return info
    unpacked = [_unpacked(w, s.prefix, say, wheel_dir) for w in s.wheels]
    say(f"merging {system} with {', '.join(w.requirement for w in s.wheels)} into {merged}")
    _merge(system, unpacked, merged)
    if find_cublas(merged) is None:
        raise errors.UserError(f"the merged toolkit {merged} has no cuBLAS after unpacking: a bug in {DATA_FILE.name}?")
    info = PipToolkit(
        root=str(merged),
        nvcc=str(merged / "bin" / "nvcc"),
        system_root=str(system),
        cuda=s.cuda,
        wheels=[w.requirement for w in s.wheels],
    )
    (merged / MARKER).write_text(json.dumps(info.to_dict(), indent=1))
    return info


def existing(nvcc_path: str, nvcc_version: str | None) -> PipToolkit | None:
    """The merged toolkit for this nvcc if an earlier --cuda-from-pip made it (nothing is fetched)."""
    s = choose(nvcc_version)
    return _made(_merged_dir(s, toolkit_root(nvcc_path))) if s is not None else None


def _merged_dir(s: WheelSet, system: Path) -> Path:
    tag = hashlib.sha256(str(system).encode()).hexdigest()[:8]
    name = "cuda" + s.cuda + "-" + "-".join(w.package.removeprefix("nvidia-") + w.version for w in s.wheels)
    return cache_root() / f"{name}-{tag}"


def _made(merged: Path) -> PipToolkit | None:
    try:
        info = PipToolkit(**json.loads((merged / MARKER).read_text()))
    except (ValueError, TypeError, OSError):
        return None
    return info if find_cublas(merged) and Path(info.nvcc).exists() else None


def use_for(machine, say: Callable[[str], None] = lambda s: None, *, offline: bool = False) -> PipToolkit | None:
    """Make the merged toolkit for ``machine``'s nvcc and record its cuBLAS in the profile, so that the
    plan resolved next points CMake there (CUDAToolkit_ROOT); `build --cuda-from-pip` and
    `BUILDDOCTOR_CUDA_FROM_PIP=1 pip install .` both come here. ``offline``: only a toolkit made before
    (a dry run fetches nothing); None when there is none."""
    nvcc = machine.tool("nvcc")
    if not nvcc.found or not nvcc.path:
        raise errors.UserError(
            "--cuda-from-pip adds cuBLAS to an installed CUDA toolkit, and no nvcc was found. "
            "Install the CUDA toolkit first (`builddoctor recipe --backend cuda` names the command).",
            exit_code=errors.TOOLCHAIN,
        )
    tk = existing(nvcc.path, nvcc.version) if offline else None
    if tk is None:
        if offline:
            return None
        tk = ensure(nvcc.path, nvcc.version, say=say)
    machine.toolchains["cublas"] = cublas_fact(ToolInfo(name="nvcc", found=True, path=tk.nvcc, version=nvcc.version))
    return tk


@contextmanager
def _made_beside(dest: Path) -> Iterator[Path]:
    """A fresh folder beside ``dest`` to fill; swapped in for ``dest`` when the block ends without an
    error, removed when it raises: a half-made tree is never used."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    partial.chmod(0o755)
    try:
        yield partial
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(partial, dest)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


def _unpacked(w: Wheel, prefix: str, say, wheel_dir: Path | None) -> Path:
    """The wheel's ``prefix`` folder, unpacked and RECORD-checked once (a marker says so)."""
    dest = cache_root() / "wheels" / Path(w.file).stem
    if (dest / MARKER).is_file():
        return dest / prefix
    archive = _wheel_file(w, say, wheel_dir)
    say(f"unpacking {w.file}")
    with _made_beside(dest) as partial:
        try:
            z = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise errors.SourceError(f"refused {archive}: not a readable wheel ({exc})") from None
        with z:
            record = _record(z)
            for info in z.infolist():
                if info.is_dir():
                    continue
                rel = info.filename
                if rel.startswith("/") or ".." in Path(rel).parts:
                    raise errors.SourceError(f"refused {archive}: it holds a file outside its folder ({rel!r})")
                expected = record.get(rel)
                target = partial / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with z.open(info) as src, open(target, "wb") as out:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
                if expected is not None and expected != h.digest():
                    raise errors.SourceError(f"refused {archive}: {rel} does not match the wheel's RECORD")
                if expected is None and not rel.endswith("/RECORD"):
                    raise errors.SourceError(f"refused {archive}: {rel} is not in the wheel's RECORD")
                if rel.startswith(prefix + "/lib/"):
                    target.chmod(0o755)
        missing = [p for p in w.provides if not (partial / prefix / p).is_file()]
        if missing:
            raise errors.SourceError(f"refused {archive}: it lacks {', '.join(missing)}")
        (partial / MARKER).write_text(json.dumps({"wheel": w.file, "sha256": w.sha256}))
    return dest / prefix


def _record(z: zipfile.ZipFile) -> dict[str, bytes]:
    """path -> sha256 digest from the wheel's *.dist-info/RECORD."""
    names = [n for n in z.namelist() if n.endswith(".dist-info/RECORD")]
    if len(names) != 1:
        raise errors.SourceError(f"refused {z.filename}: it has no single RECORD")
    out: dict[str, bytes] = {}
    for row in csv.reader(io.StringIO(z.read(names[0]).decode("utf-8", "replace"))):
        if len(row) >= 2 and row[1].startswith("sha256="):
            b64 = row[1][len("sha256=") :]
            out[row[0]] = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    return out


def _wheel_file(w: Wheel, say, wheel_dir: Path | None) -> Path:
    """The wheel, sha256-checked: from ``wheel_dir`` (refused when it is not the pinned one), or from
    the download cache or pip (source.pip_download)."""
    if wheel_dir is not None and (wheel_dir / w.file).is_file():
        cand = wheel_dir / w.file
        if sha256_file(cand) != w.sha256:
            raise errors.SourceError(f"refused {cand}: its sha256 is not the pinned {w.sha256}")
        say(f"using the verified wheel {cand}")
        return cand
    return pip_download(
        w.requirement,
        filename=w.file,
        sha256=w.sha256,
        size_mb=w.size_mb,
        binary=True,
        say=say,
        timeout=DOWNLOAD_TIMEOUT,
    )


def _merge(system: Path, extras: list[Path], merged: Path) -> None:
    """One toolkit root of symlinks: the system toolkit's folders, with include/ and lib/ holding
    every file of the system's and of each extra's (an extra's libX.so.N also as libX.so, which
    find_library needs). Built beside and swapped in, so a half-made tree is never used."""
    with _made_beside(merged) as partial:
        for entry in sorted(system.iterdir()):
            if entry.name not in ("include", "lib", "lib64", "targets"):
                os.symlink(entry, partial / entry.name)
        for sub in ("include", "lib"):
            (partial / sub).mkdir()
            for src in [system / sub] + [e / sub for e in extras]:
                if not src.is_dir():
                    continue
                for f in sorted(src.iterdir()):
                    link = partial / sub / f.name
                    if not link.exists() and not link.is_symlink():
                        os.symlink(f, link)
                    if sub == "lib" and ".so." in f.name and src in [e / sub for e in extras]:
                        plain = partial / sub / f.name.split(".so.", 1)[0]
                        plain = plain.with_name(plain.name + ".so")
                        if not plain.exists() and not plain.is_symlink():
                            os.symlink(f.name, plain)
        os.symlink("lib", partial / "lib64")
        target = partial / "targets" / "x86_64-linux"
        target.mkdir(parents=True)
        os.symlink("../../include", target / "include")
        os.symlink("../../lib", target / "lib")
