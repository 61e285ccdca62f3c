"""Find llama.cpp builds: on PATH, in checkouts' build folders, in Python and npm packages
(every site-packages and node_modules around), in install prefixes, or under paths the user
gives; and group their files into builds.

Files are found by name (llama-*, libllama*, libggml*, after stripping packagers' hash
suffixes) and, where names say nothing (extension modules, npm addons), by content: a library
that exports or imports ggml/llama symbols (inspect/symbols.py). Folders are searched
recursively, bounded in depth, entries, content reads and time, never entering kernel or
network file systems.

A build is shown once however many of its files were found: files are identified by their
resolved path, and an executable is grouped with the llama/ggml libraries it loads (from
NEEDED, resolved like ld.so) and the ``libggml-<backend>`` files beside it (loaded with
dlopen). Walking is bounded (entries listed per folder, candidates per folder, depth), and
bad paths (broken links, loops, unreadable folders) become messages, never exceptions.

This module finds files; inspect/places.py says where to look by default and inspect/grouping.py
groups what was found into builds.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from builddoctor.errors import InputError
from builddoctor.inspect.cmakecache import is_llama_cache, read_cmake_cache
from builddoctor.inspect.data import load
from builddoctor.inspect.symbols import mentions_prefixes, mentions_strings
from builddoctor.install_marker import read_marker
from builddoctor.paths import REPLACED_MARKER

# llama-cli, llama-server.exe; llama(.exe), the one program of 2026's releases; ggml-rpc-server
EXE_RX = re.compile(r"^(llama(-[A-Za-z0-9_-]+)?|ggml-rpc-server)(\.exe)?$")
LIB_RX = re.compile(r"^(lib)?(llama|ggml|mtmd)([A-Za-z0-9_.+-]*)\.(so(\.[0-9]+)*|dylib|dll)$")
BACKEND_RX = re.compile(r"^(lib)?ggml-[A-Za-z0-9_.-]+\.(so(\.[0-9]+)*|dylib|dll)$")


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return load("inspect_discover.toml")


@lru_cache(maxsize=1)
def _hash_rx() -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in _data()["names"]["hash_suffixes"]))


@lru_cache(maxsize=4096)
def canonical_name(name: str) -> str:
    """A file name without the hash suffix a packager added (auditwheel ``libggml-cpu-1a2b3c4d.so``,
    delvewheel ``ggml-<32 hex>.dll``): the name llama.cpp gave it, which says backend and variant."""
    return _hash_rx().sub("", name, count=1)


def is_candidate_name(name: str) -> bool:
    name = canonical_name(name)
    return bool(EXE_RX.match(name) or LIB_RX.match(name)) or name in _data()["old_names"]


_SO_VERSION = re.compile(r"\.so(\.[0-9]+)*$")


def is_content_candidate(name: str) -> bool:
    """A name that says nothing but ends like a library or extension module: read its symbols."""
    return name.endswith(tuple(_data()["names"]["content_suffixes"])) or bool(_SO_VERSION.search(name))


@dataclass
class Candidate:
    path: Path  # resolved
    origin: str  # path, build-folder, pip:<pkg>, install-prefix, given


@dataclass
class Group:
    root: Path
    origin: str
    files: list[Path] = field(default_factory=list)  # resolved, executables first
    cmake_cache: Path | None = None


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


def resolve(path: Path, messages: list[str] | None) -> Path | None:
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


def list_dir(
    d: Path, messages: list[str] | None, *, maybe: list[str] | None = None
) -> tuple[list[str], list[str], int]:
    """(candidate file names, sub-folder names, entries seen) of a folder, bounded. ``maybe``
    collects the names to read by content (libraries whose names say nothing)."""
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
                        messages.append(
                            f"{d}: more than {max_entries} entries; looked at the first {max_entries} only."
                        )
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
                elif maybe is not None and is_content_candidate(name):
                    maybe.append(name)
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


NOTHING_FOUND = "no llama.cpp build found"  # the start of the sentence saying where discovery looked


@dataclass
class Search:
    """One search's bounds and record: where it looked and how far it got."""

    deadline: float = 0.0
    entries: int = 0
    folders: int = 0
    content_reads: int = 0
    visited: set[str] = field(default_factory=set)  # real paths of the folders listed
    looked_in: list[str] = field(default_factory=list)  # the places, as said to the user
    not_entered: list[str] = field(default_factory=list)  # kernel/network file systems met
    stopped: str = ""  # why the search of the current root ended early, if it did
    deepest_skipped: bool = False  # folders below max_depth were left
    found: int = 0  # candidate files taken
    _entries0: int = 0
    _reads0: int = 0
    _found0: int = 0

    @classmethod
    def start(cls) -> Search:
        return cls(deadline=time.monotonic() + float(_data()["search"]["max_seconds"]))

    def begin_root(self) -> None:
        """A fresh budget for one folder the user gave: a huge first one does not starve the next."""
        self.deadline = time.monotonic() + float(_data()["search"]["max_seconds"])
        self._entries0, self._reads0, self._found0 = self.entries, self.content_reads, self.found
        self.stopped = ""

    def over(self) -> bool:
        lim = _data()["search"]
        if not self.stopped:
            if time.monotonic() > self.deadline:
                self.stopped = f"the search stopped after {lim['max_seconds']:g} s"
            elif self.entries - self._entries0 > int(lim["max_entries"]):
                self.stopped = f"the search stopped after {lim['max_entries']} entries"
            elif self.found - self._found0 >= int(lim["max_found"]):
                self.stopped = f"the search stopped after finding {lim['max_found']} llama.cpp files"
        return bool(self.stopped)

    def take(self, found: list[Candidate], p: Path, origin: str) -> None:
        """Counted, not refused: a folder's files are taken whole (bounded per folder by [limits]);
        the count stops the search at the next folder."""
        found.append(Candidate(p, origin))
        self.found += 1


@lru_cache(maxsize=1)
def _skipped_mounts() -> tuple[tuple[str, str], ...]:
    """(mount point, type) of the mounts not to enter, from /proc/self/mounts (empty elsewhere)."""
    kinds = set(_data()["search"]["skip_fstypes"])
    out = [(p, "kernel file system") for p in _data()["search"]["never_enter"]]
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in kinds:
                    mp = parts[1].replace("\\040", " ")
                    if mp != "/":
                        out.append((mp, parts[2]))
    except OSError:
        pass
    return tuple(out)


def not_to_enter(real: str) -> str | None:
    """Why a folder (real path) is not searched: a kernel or network file system; else None."""
    for mp, kind in _skipped_mounts():
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            return f"{mp} ({kind})"
    return None


def package_origin(path: Path, wheel_root: Path | None = None) -> str | None:
    """pip:<package> / npm:<package> for a file inside site-packages or node_modules (the last
    such folder in its path: pnpm's .pnpm/<...>/node_modules/<name> is that name), or under
    ``wheel_root`` (a folder holding *.dist-info: an unpacked wheel)."""
    parts = path.parts
    roots = {r["folder"]: r["kind"] for r in _data()["package_roots"]}
    kind: str | None
    rest: tuple[str, ...]
    for i in range(len(parts) - 2, -2, -1):
        if i < 0:
            if wheel_root is None or wheel_root not in path.parents:
                return None
            kind, rest = "pip", path.relative_to(wheel_root).parts
        else:
            kind = roots.get(parts[i])
            if kind is None:
                continue
            rest = parts[i + 1 :]
        if kind == "npm" and rest[0].startswith("@") and len(rest) > 2:
            name = f"{rest[0]}/{rest[1]}"
        elif len(rest) == 1:
            # a file directly in site-packages (or a wheel's root): the wheel whose RECORD lists it,
            # else the module's own name
            name = record_owner(path) or rest[0].split(".", 1)[0]
        else:
            name = rest[0]
        for suf in _data()["packages"]["folder_suffixes"]:
            if name.endswith(suf) and len(name) > len(suf):
                name = name[: -len(suf)]
        return f"{kind}:{name}"
    return None


@lru_cache(maxsize=256)
def _record_owners(folder: str) -> dict[str, str]:
    """File name -> distribution for the files directly in a site-packages or unpacked wheel root:
    each ``<dist>-<version>.dist-info/RECORD`` lists what its wheel put there. Two wheels' loose
    libraries in one folder are two builds. Bounded (dist-infos read, bytes per RECORD)."""
    conf = _data()["packages"]
    owners: dict[str, str] = {}
    try:
        with os.scandir(folder) as it:
            infos = sorted(e.name for e in it if e.name.endswith(".dist-info"))
    except OSError:
        return owners
    for info in infos[: int(conf["max_records"])]:
        try:
            with open(os.path.join(folder, info, "RECORD"), "rb") as fh:
                raw = fh.read(int(conf["record_max_bytes"]))
        except OSError:
            continue
        dist = info[: -len(".dist-info")].split("-", 1)[0]
        for line in raw.decode("utf-8", "replace").splitlines():
            entry = line.split(",", 1)[0].strip('"')
            if entry and "/" not in entry and "\\" not in entry:
                owners.setdefault(entry, dist)
    return owners


def record_owner(path: Path) -> str | None:
    """The distribution whose RECORD lists this file of a site-packages / wheel root, or None."""
    return _record_owners(str(path.parent)).get(path.name)


def _is_dist_root(dirs: list[str]) -> bool:
    return any(d.endswith(tuple(_data()["packages"]["dist_markers"])) for d in dirs)


def walk(root: Path, search: Search, origin: str, messages: list[str] | None) -> list[Candidate]:
    """Candidate files under a folder, breadth first: by name, or by content for libraries whose
    names say nothing. Bounded (see [search] and [limits]); symlinked folders are followed once
    (by real path), kernel and network file systems are not entered. ``messages``: problems
    with the folder itself (deeper ones are quiet)."""
    lim = _data()["search"]
    names_cfg = _data()["names"]
    strings, scan = names_cfg.get("content_strings", []), int(names_cfg.get("string_scan_bytes", 0))
    max_depth = int(lim["max_depth"])
    skip = set(lim["skip_dirs"])
    prefixes = _data()["names"]["symbol_prefixes"]
    found: list[Candidate] = []
    queue: deque[tuple[Path, int, str, Path | None]] = deque([(root, 0, origin, None)])
    while queue:
        d, depth, inherited, wheel_root = queue.popleft()
        if search.over():
            break
        real = os.path.realpath(d)
        if real in search.visited:
            continue
        why = not_to_enter(real)
        if why is not None:
            if why not in search.not_entered:
                search.not_entered.append(why)
            continue
        search.visited.add(real)
        maybe: list[str] = []
        files, dirs, n = list_dir(d, messages if depth == 0 else None, maybe=maybe)
        search.entries += n
        search.folders += 1
        here = "build-folder" if (d / "CMakeCache.txt").is_file() else inherited
        if _is_dist_root(dirs):
            wheel_root = Path(real)
        for name in files:
            p = resolve(d / name, messages if depth == 0 else None)
            if p is not None and p.is_file():
                search.take(found, p, _origin_for(p, here, wheel_root))
        for name in maybe:
            if search.over():
                break
            if search.content_reads - search._reads0 >= int(lim["max_content_reads"]):
                search.stopped = f"the search stopped after reading {lim['max_content_reads']} libraries"
                break
            p = resolve(d / name, None)
            if p is None or not p.is_file():
                continue
            search.content_reads += 1
            if mentions_prefixes(p, prefixes) or (strings and mentions_strings(p, strings, scan)):
                search.take(found, p, _origin_for(p, here, wheel_root))
        subs = [s for s in dirs if s not in skip]
        if depth < max_depth:
            queue.extend((d / s, depth + 1, here, wheel_root) for s in subs)
        elif subs:
            search.deepest_skipped = True
    return found


def _origin_for(p: Path, origin: str, wheel_root: Path | None = None) -> str:
    if origin in ("given", "site"):
        return package_origin(p, wheel_root) or ("given" if origin == "given" else "install-prefix")
    return origin


def expand(path: Path, messages: list[str], search: Search | None = None) -> list[Candidate]:
    """Candidates for one path the user gave: the file, or what a folder holds at any depth."""
    search = search if search is not None else Search.start()
    real = resolve(path, messages)
    if real is None:
        return []
    if real.is_dir():
        before = len(messages)
        why = not_to_enter(str(real))
        if why is not None:
            messages.append(f"{path}: a kernel or network file system ({why}), not searched; skipped.")
            return []
        search.looked_in.append(str(path))
        search.begin_root()
        f0, e0, c0 = search.folders, search.entries, search.content_reads
        found = walk(real, search, "given", messages)
        if search.stopped:
            messages.append(f"{path}: {search.stopped}; give a folder nearer the build to search all of it.")
        if not found and len(messages) == before:
            folders, entries, reads = search.folders - f0, search.entries - e0, search.content_reads - c0
            messages.append(
                f"{path}: no llama.cpp executables or libraries found in this folder (looked at "
                f"{entries} entries in {_n(folders, 'folder')}, down to "
                f"{_data()['search']['max_depth']} levels, and read the symbols of "
                f"{_n(reads, 'library', 'libraries')})."
            )
        return found
    return [Candidate(real, "given")]


def _n(k: int, word: str, plural: str = "") -> str:
    return f"{k} {word if k == 1 else plural or word + 's'}"


def nothing_found(search: Search) -> str:
    """The sentence for a search that found no build: where it looked (the CLI exits NOT_FOUND)."""
    places = search.looked_in
    shown = ", ".join(places[:12]) + (f" and {len(places) - 12} more" if len(places) > 12 else "")
    text = (
        f"{NOTHING_FOUND}; looked in {shown or 'no place that exists here'} ({_n(search.folders, 'folder')}, "
        f"{search.entries} entries, {_n(search.content_reads, 'library', 'libraries')} read for ggml/llama "
        "symbols)"
    )
    if search.not_entered:
        text += f"; not entered: {', '.join(search.not_entered[:5])}"
    if search.stopped:
        text += f"; {search.stopped}"
    if search.deepest_skipped:
        text += f"; folders deeper than {_data()['search']['max_depth']} levels were not searched"
    return text + "."


# --------------------------------------------------------------------------- the CMake cache of a folder


def find_cmake_cache(folder: Path) -> Path | None:
    """CMakeCache.txt of the build tree a bin folder belongs to (bin/, bin/Release/ ...)."""
    if os.path.lexists(folder / REPLACED_MARKER):
        # `fix --replace` put another build's programs here: its cache describes them, the folder's does not
        marker = read_marker(folder)
        recorded = marker.cmake_cache if marker else None
        return Path(recorded) if recorded and os.path.isabs(recorded) and Path(recorded).is_file() else None
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
