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
from pathlib import Path

from builddoctor.profiles import BinaryFile, BuildProfile

__all__ = ["inspect_paths", "inspect_binary", "read_cmake_cache"]


def inspect_binary(path: Path) -> BinaryFile:
    from builddoctor.inspect.binary import inspect_binary as _ib

    return _ib(Path(path))


def read_cmake_cache(path: Path) -> dict[str, str]:
    from builddoctor.inspect.cmakecache import read_cmake_cache as _rc

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
    from builddoctor.inspect import assemble, discover
    from builddoctor.inspect.binary import analyze

    messages: list[str] = []
    cache: dict[Path, object] = {}

    def facts_of(p: Path):
        got = cache.get(p)
        if got is None:
            got = cache[p] = analyze(p, prefer_arch)
        return got

    discovering = paths is None
    search = discover.Search.start()  # one time budget for the whole search
    all_folders = not discovering  # every path given is a folder that exists (else: bad input)
    if paths is None:
        cands = discover.default_candidates(messages, search)
    else:
        cands = []
        for raw in paths:
            p = Path(os.path.expanduser(str(raw)))
            all_folders = all_folders and p.is_dir()
            found = discover.expand(p, messages, search)
            # a file the user named that is not a program at all: say so plainly
            if len(found) == 1 and found[0].origin == "given" and not p.is_dir():
                f = facts_of(found[0].path)
                if f.file.format is None and f.file.error:
                    messages.append(f"{p}: {f.file.error}.")
                    continue
            cands += found
    groups = discover.group(cands, facts_of)
    builds: list[BuildProfile] = []
    to_run: list[tuple[BuildProfile, list]] = []
    skipped: dict[str, list[str]] = {}  # folder -> "path: why" of files that are not binaries / unreadable
    for g in groups:
        facts = [facts_of(f) for f in g.files]
        readable = [f for f in facts if f.file.format is not None]
        if not readable or all(f.file.error for f in readable):
            # nothing usable here: tell (in discovery only about damaged binaries), don't profile
            for f in facts:
                if f.file.format is not None or not discovering:
                    skipped.setdefault(str(Path(f.file.path).parent), []).append(f"{f.file.path}: {f.file.error}.")
            continue
        bp = assemble.make_profile(g, facts, run=False, timeout=timeout)
        if discovering and not bp.is_llama_cpp:
            continue
        builds.append(bp)
        if may_run is None or may_run(bp):
            to_run.append((bp, facts))
    if run and to_run:
        # each run waits on a child process: run the builds' programs side by side
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(to_run))) as pool:
            list(pool.map(lambda item: assemble.apply_runtime(item[0], item[1], timeout=timeout), to_run))
        if compute is not False:
            _compute_all(to_run, compute_timeout, messages)
    if not builds and (discovering or (all_folders and not cands)):
        messages.append(discover.nothing_found(search))
    for folder, lines in skipped.items():
        if len(lines) <= 3:
            messages += lines
        else:
            messages.append(
                f"{folder}: {len(lines)} files there are not usable programs or libraries "
                f"(for example {lines[0]}); skipped."
            )
    return builds, messages


def _compute_all(to_run: list, timeout: float | None, messages: list[str]) -> None:
    """The compute probes, one build after another: each inference uses every core, and
    inferences side by side on a small machine would measure each other (OpenMP spins)."""
    from builddoctor.inspect import assemble, compute
    from builddoctor.smoke_model import ensure_probe_model

    try:
        model = ensure_probe_model()
    except Exception as exc:  # noqa: BLE001 - no probe model (read-only cache, full disk): say so, check the rest
        messages.append(f"the compute probe was skipped: its model could not be written ({exc}).")
        return
    for bp, facts in to_run:
        assemble.apply_compute(bp, facts, timeout=timeout or compute.DEFAULT_TIMEOUT, model=model)
