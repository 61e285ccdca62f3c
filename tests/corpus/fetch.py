"""Fetch the real-file corpus (tests/corpus/cases.toml) into a git-ignored folder.

    .venv/bin/python -m tests.corpus.fetch [NAME...] [--dir DIR] [--timeout S]

Each case's archive is downloaded with the registry's own client (``npm pack`` or ``pip download``), its
sha256 checked against cases.toml, and unpacked into ``<dir>/<name>/root/``. Idempotent: a case whose stamp
(``<dir>/<name>/.fetched``) holds the expected sha256 is not fetched again; pip's and npm's own caches make a
re-download after a fresh clone cheap. Every download and every whole fetch is time-limited. The discovery
shapes (a venv with wheels installed, an npm project with node_modules) are assembled from the fetched cases,
offline. Nothing runs at import.

The folder is ``$BUILDDOCTOR_CORPUS_DIR`` or ``.cache/corpus`` in the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CASES_TOML = Path(__file__).resolve().parent / "cases.toml"
TRUTH_DIR = Path(__file__).resolve().parent / "truth"
STAMP = ".fetched"


class FetchError(RuntimeError):
    pass


@dataclass
class Case:
    name: str
    registry: str
    package: str
    version: str
    file: str
    sha256: str
    check: str = ""
    what: str = ""
    inner_zip: str = ""
    inner_dest: str = ""


@dataclass
class Shape:
    name: str
    kind: str
    cases: list[str] = field(default_factory=list)


def corpus_dir() -> Path:
    env = os.environ.get("BUILDDOCTOR_CORPUS_DIR")
    return Path(env) if env else ROOT / ".cache" / "corpus"


def load() -> tuple[list[Case], list[Shape]]:
    data = tomllib.loads(CASES_TOML.read_text())
    cases = [Case(**c) for c in data.get("case", [])]
    shapes = [Shape(**s) for s in data.get("shape", [])]
    names = [c.name for c in cases] + [s.name for s in shapes]
    if len(set(names)) != len(names):
        raise FetchError(f"{CASES_TOML}: duplicate names")
    for s in shapes:
        unknown = set(s.cases) - {c.name for c in cases}
        if unknown:
            raise FetchError(f"{CASES_TOML}: shape {s.name} names unknown cases {sorted(unknown)}")
    return cases, shapes


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def case_dir(case: Case | str, base: Path | None = None) -> Path:
    return (base or corpus_dir()) / (case if isinstance(case, str) else case.name)


def case_root(case: Case, base: Path | None = None) -> Path:
    return case_dir(case, base) / "root"


def check_path(case: Case, base: Path | None = None) -> Path:
    r = case_root(case, base)
    return r / case.check if case.check else r


def _run(argv: list[str], timeout: float, cwd: Path) -> None:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    try:
        res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"{' '.join(argv)}: no answer in {timeout:g} s") from exc
    except FileNotFoundError as exc:
        raise FetchError(f"{argv[0]} is not installed") from exc
    if res.returncode != 0:
        raise FetchError(f"{' '.join(argv)} failed ({res.returncode}): {(res.stderr or res.stdout)[-1500:]}")


def _wheel_platform(filename: str) -> str | None:
    plat = filename[:-4].split("-")[-1]
    return None if plat == "any" else plat.split(".")[0]


def download(case: Case, dest: Path, timeout: float) -> Path:
    """The case's archive in dest (downloaded when absent or wrong), sha256-verified."""
    target = dest / case.file
    if target.exists() and sha256(target) == case.sha256:
        return target
    with tempfile.TemporaryDirectory(prefix=f"corpus-{case.name}-", dir=dest) as tmp:
        t = Path(tmp)
        if case.registry == "npm":
            _run(
                ["npm", "pack", "--silent", "--pack-destination", str(t), f"{case.package}@{case.version}"], timeout, t
            )
        elif case.registry == "pypi":
            argv = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "-d",
                str(t),
            ]
            plat = _wheel_platform(case.file)
            if plat:
                argv += ["--platform", plat]
            _run(argv + [f"{case.package}=={case.version}"], timeout, t)
        else:
            raise FetchError(f"{case.name}: unknown registry {case.registry!r}")
        got = t / case.file
        if not got.exists():
            raise FetchError(
                f"{case.name}: {case.registry} gave {sorted(p.name for p in t.iterdir())}, not {case.file}"
            )
        digest = sha256(got)
        if digest != case.sha256:
            raise FetchError(f"{case.name}: sha256 of {case.file} is {digest}, cases.toml says {case.sha256}")
        os.replace(got, target)
    return target


def _safe_extract_zip(zf: zipfile.ZipFile, dest: Path) -> None:
    for info in zf.infolist():
        out = (dest / info.filename).resolve()
        if not out.is_relative_to(dest.resolve()):
            raise FetchError(f"unsafe path in archive: {info.filename}")
    zf.extractall(dest)


def unpack(case: Case, archive: Path, root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    if archive.name.endswith(".tgz"):
        with tarfile.open(archive) as tf:
            tf.extractall(root, filter="data")
    else:
        with zipfile.ZipFile(archive) as zf:
            _safe_extract_zip(zf, root)
    if case.inner_zip:
        inner = root / case.inner_zip
        with zipfile.ZipFile(inner) as zf:
            _safe_extract_zip(zf, root / (case.inner_dest or inner.stem))


def fetch_case(case: Case, base: Path | None = None, timeout: float = 900) -> Path:
    """Fetch and unpack one case (idempotent); returns the folder to check."""
    d = case_dir(case, base)
    stamp = d / STAMP
    if stamp.exists() and stamp.read_text().strip() == case.sha256 and case_root(case, base).is_dir():
        return check_path(case, base)
    d.mkdir(parents=True, exist_ok=True)
    archive = download(case, d, timeout)
    unpack(case, archive, case_root(case, base))
    stamp.write_text(case.sha256 + "\n")
    return check_path(case, base)


def _shape_key(shape: Shape, cases: dict[str, Case]) -> str:
    return json.dumps([shape.kind] + [cases[n].sha256 for n in shape.cases])


def build_shape(shape: Shape, cases: dict[str, Case], base: Path | None = None, timeout: float = 300) -> Path:
    """Assemble a discovery shape from fetched cases (offline); returns its folder."""
    d = case_dir(shape.name, base)
    stamp = d / STAMP
    key = _shape_key(shape, cases)
    if stamp.exists() and stamp.read_text().strip() == key:
        return d
    if d.exists():
        shutil.rmtree(d)
    for n in shape.cases:
        fetch_case(cases[n], base)
    if shape.kind == "venv":
        _run([sys.executable, "-m", "venv", str(d)], timeout, ROOT)
        wheels = [str(case_dir(cases[n], base) / cases[n].file) for n in shape.cases]
        _run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", *wheels], timeout, d)
    elif shape.kind == "npm-project":
        d.mkdir(parents=True)
        deps = {cases[n].package: cases[n].version for n in shape.cases}
        (d / "package.json").write_text(
            json.dumps({"name": "corpus-npm-project", "private": True, "dependencies": deps}, indent=2) + "\n"
        )
        for n in shape.cases:
            c = cases[n]
            dest = d / "node_modules" / c.package
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(case_root(c, base) / "package", dest, symlinks=True)
    else:
        raise FetchError(f"shape {shape.name}: unknown kind {shape.kind!r}")
    stamp.write_text(key + "\n")
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="cases or shapes (default: all)")
    ap.add_argument("--dir", type=Path, default=None, help="corpus folder (default: .cache/corpus)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per download")
    ap.add_argument("--budget", type=float, default=1800, help="seconds for the whole fetch")
    opts = ap.parse_args(argv)
    cases, shapes = load()
    by_name = {c.name: c for c in cases}
    wanted = set(opts.names) if opts.names else None
    t0 = time.monotonic()
    failed = 0
    for item in [*cases, *shapes]:
        if wanted is not None and item.name not in wanted:
            continue
        left = opts.budget - (time.monotonic() - t0)
        if left <= 0:
            print(f"{item.name}: skipped, the fetch budget of {opts.budget:g} s is spent", file=sys.stderr)
            failed += 1
            continue
        try:
            if isinstance(item, Case):
                p = fetch_case(item, opts.dir, min(opts.timeout, left))
            else:
                p = build_shape(item, by_name, opts.dir, min(opts.timeout, left))
            print(f"{item.name}: {p}")
        except FetchError as exc:
            print(f"{item.name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
