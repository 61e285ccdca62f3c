"""inspect: llama.cpp builds on this machine -> BuildProfile.

Public API (the findings engine and ``check`` call these):

* ``inspect_paths(paths, *, run=True, timeout=5.0) -> (builds, messages)``: ``paths`` None
  means discover (PATH, checkouts' build folders, every site-packages and node_modules around,
  install prefixes); else each path is a file or a folder searched at any depth (bounded).
  Never raises for a bad file: skipped paths come back as messages, each one clear sentence;
  files that cannot be read are in BuildProfile.errors. When nothing was found where it looked
  (discovery, or folders holding no candidate), a message starting ``discover.NOTHING_FOUND``
  says where it looked.
* ``inspect_binary(path) -> BinaryFile``: one file, statically.
* ``read_cmake_cache(path) -> dict[str, str]``.

Heavy modules (pyelftools, iced-x86, LIEF) are imported only when a file is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor.inspect import assemble, compute, discover, places
from builddoctor.inspect.binary import analyze
from builddoctor.inspect.binary import inspect_binary as _ib
from builddoctor.inspect.cmakecache import read_cmake_cache as _rc
from builddoctor.inspect.grouping import group
from builddoctor.profiles import BinaryFile, BuildProfile
from builddoctor.smoke_model import ensure_probe_model

__all__ = ["inspect_paths", "inspect_binary", "read_cmake_cache"]


def inspect_binary(path: Path) -> BinaryFile:
    return _ib(Path(path))


def read_cmake_cache(path: Path) -> dict[str, str]:
    return _rc(Path(path))


def inspect_paths(
    paths: Sequence[Path | str] | None,
    *,
    run: bool = True,
    timeout: float = 5.0,
    compute: bool | None = None,
    compute_timeout: float | None = None,
    prefer_arch: str | None = None,
    may_run=None,
) -> tuple[list[BuildProfile], list[str]]:
    """Find (or take) builds and profile them. ``run``: run their programs (``--version``,
    ``--list-devices``) and, unless ``compute`` is False, the compute probe (a real inference
    on the probe model, ``compute_timeout`` seconds at most each). ``prefer_arch``: the slice of
    fat Mach-O files to read; ``may_run(build)``: the platform gate's say on running a build."""
    messages: list[str] = []
    facts_of = _FactsCache(prefer_arch)
    search = discover.Search.start()  # one time budget for the whole search
    cands, all_folders = _candidates(paths, search, facts_of, messages)
    found = _profile_groups(group(cands, facts_of), facts_of, timeout, discovering=paths is None, may_run=may_run)
    if run and found.to_run:
        _run_programs(found.to_run, timeout, messages, compute=compute is not False, compute_timeout=compute_timeout)
    if not found.builds and (paths is None or (all_folders and not cands)):
        messages.append(discover.nothing_found(search))
    messages += _skipped_lines(found.skipped)
    return found.builds, messages


class _FactsCache:
    """``analyze`` of each file once: discovery, grouping and profiling all ask for the same files."""

    def __init__(self, prefer_arch: str | None):
        self.prefer_arch = prefer_arch
        self.cache: dict[Path, Any] = {}

    def __call__(self, p: Path) -> Any:
        got = self.cache.get(p)
        if got is None:
            got = self.cache[p] = analyze(p, self.prefer_arch)
        return got


def _candidates(
    paths: Sequence[Path | str] | None, search: Any, facts_of: _FactsCache, messages: list[str]
) -> tuple[list[Any], bool]:
    """(candidate files, whether every path given is a folder that exists): the default places
    when ``paths`` is None, else each path (a file the user named that is no program is said plainly)."""
    if paths is None:
        return places.default_candidates(messages, search), False
    cands = []
    all_folders = True
    for raw in paths:
        p = Path(os.path.expanduser(str(raw)))
        all_folders = all_folders and p.is_dir()
        found = discover.expand(p, messages, search)
        if len(found) == 1 and found[0].origin == "given" and not p.is_dir():
            f = facts_of(found[0].path)
            if f.file.format is None and f.file.error:
                messages.append(f"{p}: {f.file.error}.")
                continue
        cands += found
    return cands, all_folders


@dataclass
class _Profiled:
    builds: list[BuildProfile] = field(default_factory=list)
    to_run: list[tuple[BuildProfile, list]] = field(default_factory=list)  # the builds the gate lets run
    skipped: dict[str, list[str]] = field(default_factory=dict)  # folder -> "path: why" of unusable files


def _profile_groups(groups: list, facts_of: _FactsCache, timeout: float, *, discovering: bool, may_run) -> _Profiled:
    """A profile per group with a usable file (in discovery, llama.cpp builds only); the unusable
    files of the others (in discovery, only damaged binaries) as skipped lines."""
    out = _Profiled()
    for g in groups:
        facts = [facts_of(f) for f in g.files]
        readable = [f for f in facts if f.file.format is not None]
        if not readable or all(f.file.error for f in readable):
            for f in facts:
                if f.file.format is not None or not discovering:
                    out.skipped.setdefault(str(Path(f.file.path).parent), []).append(f"{f.file.path}: {f.file.error}.")
            continue
        bp = assemble.make_profile(g, facts, run=False, timeout=timeout)
        if discovering and not bp.is_llama_cpp:
            continue
        out.builds.append(bp)
        if may_run is None or may_run(bp):
            out.to_run.append((bp, facts))
    return out


def _run_programs(
    to_run: list, timeout: float, messages: list[str], *, compute: bool, compute_timeout: float | None
) -> None:
    """``--version``/``--list-devices`` of every build side by side (each waits on a child), then
    the compute probes."""
    with ThreadPoolExecutor(max_workers=min(8, len(to_run))) as pool:
        list(pool.map(lambda item: assemble.apply_runtime(item[0], item[1], timeout=timeout), to_run))
    if compute:
        _compute_all(to_run, compute_timeout, messages)


def _skipped_lines(skipped: dict[str, list[str]]) -> list[str]:
    """A folder's unusable files, each on its line, or one line for more than three."""
    out: list[str] = []
    for folder, lines in skipped.items():
        if len(lines) <= 3:
            out += lines
        else:
            out.append(
                f"{folder}: {len(lines)} files there are not usable programs or libraries "
                f"(for example {lines[0]}); skipped."
            )
    return out


def _compute_all(to_run: list, timeout: float | None, messages: list[str]) -> None:
    """The compute probes, one build after another: each inference uses every core, and
    inferences side by side on a small machine would measure each other (OpenMP spins)."""
    try:
        model = ensure_probe_model()
    except Exception as exc:  # noqa: BLE001 - no probe model (read-only cache, full disk): say so, check the rest
        messages.append(f"the compute probe was skipped: its model could not be written ({exc}).")
        return
    for bp, facts in to_run:
        assemble.apply_compute(bp, facts, timeout=timeout or compute.DEFAULT_TIMEOUT, model=model)
