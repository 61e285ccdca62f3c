"""Group found files into builds, in named steps: follow what each file loads (NEEDED resolved
like ld.so, the ``libggml-<backend>`` files beside an executable), join a package's bin/ and lib/,
link NEEDED names no loader here could resolve to a found file nearby, then make one Group per
connected set of folders (its root, its CMakeCache.txt, its origin).

A grouping unit is a folder, or in a folder several wheels installed into (site-packages) the
files one wheel's RECORD lists there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor.inspect.discover import (
    BACKEND_RX,
    LIB_RX,
    Candidate,
    Group,
    _data,
    canonical_name,
    find_cmake_cache,
    list_dir,
    record_owner,
    resolve,
)


def _unit(p: Path) -> str:
    """The grouping unit of a file: its folder, or one wheel's files in it."""
    owner = record_owner(p)
    return f"{p.parent}\0{owner}" if owner else str(p.parent)


def _folder_of(unit: str) -> str:
    return unit.split("\0", 1)[0]


class _UF:
    """Union-find over units; a set's representative is its smallest unit."""

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


@dataclass
class Grouping:
    """The state between the steps: every file met (in order, with the origin it came by), the
    units and their files, and the NEEDED names left unresolved."""

    origin_of: dict[Path, str] = field(default_factory=dict)
    order: list[Path] = field(default_factory=list)
    uf: _UF = field(default_factory=_UF)
    members: dict[str, set[Path]] = field(default_factory=dict)  # unit -> files
    attached: dict[Path, str] = field(default_factory=dict)  # file -> origin when it joined a unit
    primary: set[str] = field(default_factory=set)  # units the candidates came from
    unresolved: list[tuple[Path, str]] = field(default_factory=list)  # (file, NEEDED basename)

    @classmethod
    def start(cls, cands: list[Candidate]) -> Grouping:
        g = cls()
        for c in cands:
            g.meet(c.path, c.origin)
        g.primary = {_unit(p) for p in g.order}
        return g

    def meet(self, p: Path, origin: str) -> None:
        """A file to look at (once), reached by ``origin``."""
        if p not in self.origin_of:
            self.origin_of[p] = origin
            self.order.append(p)

    def add(self, p: Path, origin: str) -> None:
        unit = _unit(p)
        self.uf.find(unit)
        self.members.setdefault(unit, set()).add(p)
        self.attached.setdefault(p, origin)


def group(cands: list[Candidate], analyze: Callable[[Path], Any]) -> list[Group]:
    """Group candidate files into builds. ``analyze(path)`` gives FileFacts (cached by caller)."""
    g = Grouping.start(cands)
    follow_files(g, analyze)
    join_layouts(g)
    join_unresolved(g)
    return make_groups(g)


def follow_files(g: Grouping, analyze: Callable[[Path], Any]) -> None:
    """Each file met, and what it brings in: the libraries it loads, the backends beside it."""
    i = 0
    while i < len(g.order):
        p = g.order[i]
        i += 1
        origin = g.origin_of[p]
        g.add(p, origin)
        facts = analyze(p)
        bf = facts.file
        if bf.error or bf.format is None:
            continue
        for name in bf.needed:
            if name not in facts.resolved:
                g.unresolved.append((p, os.path.basename(name.replace("\\", "/"))))
        _follow_loaded(g, p, facts.resolved, origin)
        # backends loaded at run time from the executable's folder (and libggml's)
        if bf.role == "executable" or canonical_name(p.name).startswith(("libggml.", "ggml.")):
            _meet_backends_beside(g, p, origin)


def _follow_loaded(g: Grouping, p: Path, resolved: dict[str, str], origin: str) -> None:
    """The llama/ggml libraries ``p`` loads, wherever they are (a copied executable still loads
    from its build tree through an absolute RUNPATH: those files are part of it)."""
    for name, lib in resolved.items():
        if not (LIB_RX.match(canonical_name(name)) or LIB_RX.match(canonical_name(os.path.basename(lib)))):
            continue
        r = Path(os.path.realpath(lib))
        rf, pf = _unit(r), _unit(p)
        if rf != pf and rf in g.primary and r.parent.parent != p.parent.parent and p.parent not in r.parents:
            continue  # another build's own folder: it is shown there, once (a folder below, as
            # auditwheel's <dist>.libs/ reached through $ORIGIN/<dist>.libs, is the same package)
        g.uf.union(pf, rf)
        g.meet(r, origin)


def _meet_backends_beside(g: Grouping, p: Path, origin: str) -> None:
    files, _dirs, _n = list_dir(p.parent, None)
    for name in files:
        if BACKEND_RX.match(canonical_name(name)):
            backend = resolve(p.parent / name, None)
            if backend is not None and backend.is_file():
                g.meet(backend, origin)


def join_layouts(g: Grouping) -> None:
    """A package's or prefix's bin/ and lib/ are one build on every OS (Mach-O and PE files are
    not resolved here, so NEEDED does not link them as it does on Linux)."""
    for unit in list(g.members):
        f = Path(_folder_of(unit))
        for pair in _data()["layouts"]["joined"]:
            if f.name in pair:
                for other in pair:
                    if other != f.name and str(f.parent / other) in g.members:
                        g.uf.union(unit, str(f.parent / other))


def join_unresolved(g: Grouping) -> None:
    """NEEDED names that were not resolved (Mach-O @rpath/..., PE imports, another CPU's ELF: no
    loader here to ask) link to a found file of that name in the same package: a sibling folder
    or one just above or below."""
    by_name: dict[str, list[Path]] = {}
    for f in g.origin_of:
        by_name.setdefault(f.name, []).append(f)
    for p, name in g.unresolved:
        for f in by_name.get(name, []):
            near = {p.parent, p.parent.parent}
            if f.parent in near or f.parent.parent in near:
                g.uf.union(_unit(p), _unit(f))


def make_groups(g: Grouping) -> list[Group]:
    """One Group per connected set of units, sorted by root."""
    comps: dict[str, list[str]] = {}
    for folder in g.members:
        comps.setdefault(g.uf.find(folder), []).append(folder)
    rank = {p: n for n, p in enumerate(g.order)}
    groups = [_make_group(g, folders, rank) for folders in comps.values()]
    groups.sort(key=lambda gr: str(gr.root))
    return groups


def _make_group(g: Grouping, folders: list[str], rank: dict[Path, int]) -> Group:
    group_files = sorted({f for d in folders for f in g.members[d]}, key=lambda f: rank[f])
    mains = [d for d in folders if d in g.primary] or folders
    mains.sort(key=lambda d: min(rank[f] for f in g.members[d]))
    dirs = list(dict.fromkeys(_folder_of(d) for d in mains))
    root = group_root(dirs)
    cache = None
    for d in dirs:
        cache = find_cmake_cache(Path(d))
        if cache:
            break
    origins = [g.attached[f] for f in group_files]
    origin = next((o for o in origins if o != "given"), "given")
    if cache is not None:
        origin = "build-folder"
        if root == cache.parent or cache.parent in root.parents:
            root = cache.parent
    return Group(root=root, origin=origin, files=group_files, cmake_cache=cache)


def group_root(dirs: list[str]) -> Path:
    """The folder a build is shown by: the parent of sibling folders (prefix/bin + prefix/lib),
    else the first folder (one folder, or a wheel's loose files and its <dist>.libs/ below)."""
    if len(dirs) > 1 and len({str(Path(d).parent) for d in dirs}) == 1:
        return Path(dirs[0]).parent
    return Path(dirs[0])
