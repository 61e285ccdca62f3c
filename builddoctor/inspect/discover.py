"""Find llama.cpp builds: on PATH, in checkouts' build folders, in pip packages, in install
prefixes, or under paths the user gives; and group their files into builds.

A build is shown once however many of its files were found: files are identified by their
resolved path, and an executable is grouped with the llama/ggml libraries it loads (from
NEEDED, resolved like ld.so) and the ``libggml-<backend>`` files beside it (loaded with
dlopen). Walking is bounded (entries listed per folder, candidates per folder, depth), and
bad paths (broken links, loops, unreadable folders) become messages, never exceptions.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

EXE_RX = re.compile(r"^llama-[A-Za-z0-9_-]+(\.exe)?$")
LIB_RX = re.compile(r"^(lib)?(llama|ggml|mtmd)([A-Za-z0-9_.+-]*)\.(so(\.[0-9]+)*|dylib|dll)$")
BACKEND_RX = re.compile(r"^(lib)?ggml-[A-Za-z0-9_.-]+\.(so(\.[0-9]+)*|dylib|dll)$")


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    from builddoctor.inspect.data import load

    return load("inspect_discover.toml")


def is_candidate_name(name: str) -> bool:
    return bool(EXE_RX.match(name) or LIB_RX.match(name)) or name in _data()["old_names"]


@dataclass
class Candidate:
    path: Path  # resolved
    origin: str  # path, build-folder, pip:<pkg>, install-prefix, given


@dataclass
class Group:
    root: Path
    origin: str
    files: list[Path] = field(default_factory=list)  # resolved, executables first
    cmake_cache: Optional[Path] = None


def _expand_user(p: str) -> str:
    return os.path.expanduser(p)


def _globs(patterns: list[str]) -> list[Path]:
    limit = int(_data()["limits"]["max_glob_matches"])
    out: list[Path] = []
    for pat in patterns:
        pat = _expand_user(pat)
        if any(ch in pat for ch in "*?["):
            out += [Path(p) for p in sorted(glob.glob(pat))[:limit]]
        else:
            out.append(Path(pat))
    return out


def _describe_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"{path}: a symlink loop (the link leads back to itself); skipped."
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return f"{path}: a broken symlink (its target {os.readlink(path)} does not exist); skipped."
        return f"{path}: no such file or folder; skipped."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{path}: permission denied, cannot read it; skipped."
    if exc.errno == errno.ENAMETOOLONG:
        return f"{path}: the name is too long; skipped."
    return f"{path}: cannot read it ({exc.strerror or exc}); skipped."


def resolve(path: Path, messages: Optional[list[str]]) -> Optional[Path]:
    """The real path of an existing file or folder, or None (with a message when asked)."""
    try:
        os.stat(path)
        return Path(os.path.realpath(path))
    except OSError as exc:
        if messages is not None:
            messages.append(_describe_error(path, exc))
        return None
    except ValueError:  # NUL in the name
        if messages is not None:
            messages.append(f"{path!r}: not a valid path; skipped.")
        return None


def list_dir(d: Path, messages: Optional[list[str]], *, names_only: bool = True) -> tuple[list[str], list[str], int]:
    """(candidate file names, sub-folder names, entries seen) of a folder, bounded."""
    lim = _data()["limits"]
    max_entries = int(lim["max_entries_per_dir"])
    max_cands = int(lim["max_candidates_per_dir"])
    files: list[str] = []
    dirs: list[str] = []
    seen = 0
    try:
        with os.scandir(d) as it:
            for entry in it:
                seen += 1
                if seen > max_entries:
                    if messages is not None:
                        messages.append(f"{d}: more than {max_entries} entries; looked at the first {max_entries} only.")
                    break
                name = entry.name
                try:
                    is_dir = entry.is_dir()  # follows symlinks; a loop or broken link is not a dir
                except OSError:
                    is_dir = False
                if is_dir:
                    dirs.append(name)
                elif is_candidate_name(name):
                    files.append(name)
    except OSError as exc:
        if messages is not None:
            messages.append(_describe_error(d, exc))
        return [], [], 0
    files.sort()
    if len(files) > max_cands:
        if messages is not None:
            messages.append(f"{d}: {len(files)} files look like llama.cpp files; inspected the first {max_cands} only.")
        files = files[:max_cands]
    return files, sorted(dirs), seen


_SUBDIRS = re.compile(r"^(bin|lib|lib64|Release|RelWithDebInfo|Debug|MinSizeRel|build[A-Za-z0-9_.-]*|llama_cpp|"
                      r"llama\.cpp)$")


def expand_dir(d: Path, messages: list[str], origin: str, depth: int = 0,
               seen_dirs: Optional[set[str]] = None) -> list[Candidate]:
    """Candidate files in a folder and its build-ish sub-folders (bin/, lib/, build*/...)."""
    seen_dirs = seen_dirs if seen_dirs is not None else set()
    real = os.path.realpath(d)
    if real in seen_dirs:
        return []
    seen_dirs.add(real)
    files, dirs, _n = list_dir(d, messages if depth == 0 else None)
    found: list[Candidate] = []
    here_origin = "build-folder" if (d / "CMakeCache.txt").is_file() else origin
    for name in files:
        p = resolve(d / name, messages if depth == 0 else None)
        if p is not None and p.is_file():
            found.append(Candidate(p, here_origin))
    if depth < int(_data()["limits"]["max_depth"]):
        for sub in dirs:
            if _SUBDIRS.match(sub):
                found += expand_dir(d / sub, messages, here_origin, depth + 1, seen_dirs)
    return found


def expand(path: Path, messages: list[str]) -> list[Candidate]:
    """Candidates for one path the user gave."""
    real = resolve(path, messages)
    if real is None:
        return []
    if real.is_dir():
        before = len(messages)
        found = expand_dir(real, messages, "given")
        if not found:
            _files, _dirs, n = list_dir(real, None)
            if len(messages) == before:
                messages.append(f"{path}: no llama.cpp executables or libraries found in this folder "
                                f"(looked at {n} entries and its bin/, lib/ and build*/ folders).")
        return found
    return [Candidate(real, "given")]


# --------------------------------------------------------------------------- default places


def site_dirs() -> list[Path]:
    dirs = [Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    if os.environ.get("VIRTUAL_ENV"):
        dirs += _globs([os.environ["VIRTUAL_ENV"] + "/lib/python3*/site-packages"])
    dirs += _globs(_data()["pip_sites"]["globs"])
    out, seen = [], set()
    for d in dirs:
        r = os.path.realpath(d)
        if r not in seen and os.path.isdir(r):
            seen.add(r)
            out.append(Path(r))
    return out


def default_candidates(messages: list[str]) -> list[Candidate]:
    data = _data()
    found: list[Candidate] = []
    quiet: list[str] = []  # problems in default places are not the user's concern
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d:
            continue
        for name in data["path_executables"]:
            p = Path(d) / name
            if os.path.lexists(p):
                r = resolve(p, messages)  # a broken llama-cli on PATH is worth saying
                if r is not None and r.is_file():
                    found.append(Candidate(r, "path"))
    from builddoctor.paths import data_home

    own = [str(data_home()), str(data_home()) + "/*"]  # where builddoctor installs its own builds
    for prefix in _globs(data["prefixes"]) + _globs(data["kegs"]) + _globs(own):
        for sub in ("bin", "lib", "lib64"):
            d = prefix / sub
            if d.is_dir():
                for name in list_dir(d, quiet)[0]:
                    r = resolve(d / name, quiet)
                    if r is not None and r.is_file():
                        found.append(Candidate(r, "install-prefix"))
    for co in _globs(data["checkouts"]):
        if not _is_checkout(co):
            continue
        try:
            subs = sorted(e.name for e in os.scandir(co) if e.name.startswith("build") and e.is_dir())
        except OSError:
            continue
        for sub in subs[:20]:
            if (co / sub / "CMakeCache.txt").is_file():
                found += expand_dir(co / sub, quiet, "build-folder")
    from builddoctor.bundled import bundled_dir

    bundled = bundled_dir()  # the llama.cpp that `pip install builddoctor` compiled
    if bundled is not None and bundled.is_dir():
        found += expand_dir(bundled, quiet, "bundled")
    for site in site_dirs():
        for pkg in data["pip"]:
            for rel in pkg["dirs"]:
                d = site / rel
                if d.is_dir():
                    for name in list_dir(d, quiet)[0]:
                        r = resolve(d / name, quiet)
                        if r is not None and r.is_file():
                            found.append(Candidate(r, f"pip:{pkg['package']}"))
    return found


def _is_checkout(d: Path) -> bool:
    return (d / "CMakeLists.txt").is_file() and ((d / "include" / "llama.h").is_file() or (d / "ggml").is_dir())


# --------------------------------------------------------------------------- grouping


def find_cmake_cache(folder: Path) -> Optional[Path]:
    """CMakeCache.txt of the build tree a bin folder belongs to (bin/, bin/Release/ ...)."""
    from builddoctor.errors import InputError
    from builddoctor.inspect.cmakecache import is_llama_cache, read_cmake_cache
    from builddoctor.paths import REPLACED_MARKER

    marker = folder / REPLACED_MARKER
    if marker.is_file():
        # `fix --replace` put another build's programs here: its cache describes them, the folder's does not
        from builddoctor.readinput import read_json

        try:
            recorded = read_json(marker, "replace marker").get("cmake_cache")
        except (InputError, AttributeError):
            recorded = None
        return Path(recorded) if recorded and Path(recorded).is_file() else None
    for d in (folder, folder.parent, folder.parent.parent):
        c = d / "CMakeCache.txt"
        if c.is_file():
            try:
                if is_llama_cache(read_cmake_cache(c)):
                    return c
            except InputError:
                return None
            return None
    return None


class _UF:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group(cands: list[Candidate], analyze: Callable[[Path], Any]) -> list[Group]:
    """Group candidate files into builds. ``analyze(path)`` gives FileFacts (cached by caller)."""
    origin_of: dict[Path, str] = {}
    order: list[Path] = []
    for c in cands:
        if c.path not in origin_of:
            origin_of[c.path] = c.origin
            order.append(c.path)
    uf = _UF()
    members: dict[str, set[Path]] = {}
    attached: dict[Path, str] = {}

    def add(p: Path, origin: str) -> None:
        folder = str(p.parent)
        uf.find(folder)
        members.setdefault(folder, set()).add(p)
        attached.setdefault(p, origin)

    primary = {str(p.parent) for p in order}  # folders the candidates came from
    i = 0
    while i < len(order):
        p = order[i]
        i += 1
        origin = origin_of[p]
        add(p, origin)
        facts = analyze(p)
        bf = facts.file
        if bf.error or bf.format is None:
            continue
        # the llama/ggml libraries it loads, wherever they are (a copied executable still
        # loads from its build tree through an absolute RUNPATH: those files are part of it)
        for name, lib in facts.resolved.items():
            if not (LIB_RX.match(name) or LIB_RX.match(os.path.basename(lib))):
                continue
            r = Path(os.path.realpath(lib))
            rf, pf = str(r.parent), str(p.parent)
            if rf != pf and rf in primary and r.parent.parent != p.parent.parent:
                continue  # another build's own folder: it is shown there, once
            uf.union(pf, rf)
            if r not in origin_of:
                origin_of[r] = origin
                order.append(r)
        # backends loaded at run time from the executable's folder (and libggml's)
        if bf.role == "executable" or os.path.basename(p).startswith(("libggml.", "ggml.")):
            files, _dirs, _n = list_dir(p.parent, None)
            for name in files:
                if BACKEND_RX.match(name):
                    r = resolve(p.parent / name, None)
                    if r is not None and r.is_file() and r not in origin_of:
                        origin_of[r] = origin
                        order.append(r)
    comps: dict[str, list[str]] = {}
    for folder in members:
        comps.setdefault(uf.find(folder), []).append(folder)
    rank = {p: n for n, p in enumerate(order)}
    groups: list[Group] = []
    for folders in comps.values():
        files = sorted({f for d in folders for f in members[d]}, key=lambda f: rank[f])
        mains = [d for d in folders if d in primary] or folders
        mains.sort(key=lambda d: min(rank[f] for f in members[d]))
        if len(mains) > 1 and len({str(Path(d).parent) for d in mains}) == 1:
            root = Path(mains[0]).parent  # prefix/bin + prefix/lib
        else:
            root = Path(mains[0])
        cache = None
        for d in mains:
            cache = find_cmake_cache(Path(d))
            if cache:
                break
        origins = [attached[f] for f in files]
        origin = next((o for o in origins if o != "given"), "given")
        if cache is not None:
            origin = "build-folder"
            if root == cache.parent or cache.parent in root.parents:
                root = cache.parent
        groups.append(Group(root=root, origin=origin, files=files, cmake_cache=cache))
    groups.sort(key=lambda g: str(g.root))
    return groups
