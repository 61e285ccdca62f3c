"""``build()``: BuildPlan -> BuildResult as a short sequence of named steps.

The steps share one ``_Run`` (the plan, the folders, the key so far); a step that cannot go on
raises ``_Stop`` with the status and error the result gets, and every stop becomes a result in
one place (``_stopped``); past the lock, a failed build's log is kept and its temp folder removed.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import proc
from builddoctor.build.cache import _omit_variants, build_lock, clean_stale, drop_objects, entry_result, keep_log
from builddoctor.build.cmake_run import configure_and_compile
from builddoctor.build.commands import check_policy, choose_jobs
from builddoctor.build.key import cache_key
from builddoctor.build.prerequisites import unmet_message
from builddoctor.build.settings import (
    LOG_NAME,
    MARKER,
    ProgressEvent,
    ProgressFn,
    data,
    default_cache_root,
    default_lock_path,
    environment,
    targets_of,
)
from builddoctor.errors import InputError
from builddoctor.profiles import BuildPlan, BuildResult
from builddoctor.resources import free_space

ENOSPC = 28


class _Stop(Exception):
    """The build cannot go on: ``status`` and ``error`` are what its result says."""

    def __init__(self, status: str, error: str, *, announce: bool = False):
        super().__init__(error)
        self.status, self.error = status, error
        self.announce = announce  # send a "failed" progress event (a configure or compile that failed)


@dataclass
class _Run:
    """One build's state between its steps."""

    plan: BuildPlan
    source_dir: Path
    cache_root: Path
    env: dict[str, str]
    lock_file: Path
    progress: ProgressFn | None = None
    t0: float = field(default_factory=time.monotonic)
    key: str = ""

    @property
    def entry(self) -> Path:
        return self.cache_root / self.key

    @property
    def tmp(self) -> Path:
        return self.cache_root / f".tmp-{self.key}-{os.getpid()}"

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def result(self, status: str, **kw) -> BuildResult:
        kw.setdefault("duration_s", round(self.elapsed(), 2))
        return BuildResult(status=status, plan=self.plan, source_dir=str(self.source_dir), **kw)

    def emit(self, ev: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(ev)


def build(
    plan: BuildPlan,
    source_dir: Path,
    *,
    jobs: int | None = None,
    progress: ProgressFn | None = None,
    cache_root: Path | None = None,
    timeout: float | None = None,
    min_free_bytes: int | None = None,
    env: dict[str, str] | None = None,
    lock_path: Path | None = None,
    allowed_paths=(),
) -> BuildResult:
    """Build ``plan`` from ``source_dir``; return at once with status "cached" if built before.

    Never raises for a failed build: the status says what happened (ok, cached, failed,
    interrupted, missing-toolchain, no-space), ``error`` the relevant lines, ``log_path``
    the full log. Raises ``PlanRefused`` (before anything runs) for a plan outside the policy:
    ``allowed_paths`` are the absolute compiler/toolkit paths the user confirmed.
    """
    run = _start(plan, source_dir, cache_root, env, lock_path, progress, allowed_paths)
    try:
        _check_prerequisites(run)
        run.key = cache_key(plan, run.source_dir, run.env)
        hit = entry_result(run.entry)
        if hit is not None:
            return _as_cached(run, hit)
        _check_room(run, min_free_bytes)
        return _build_locked(run, jobs or choose_jobs(plan), timeout)
    except _Stop as stop:
        return _stopped(run, stop)


def _start(plan, source_dir, cache_root, env, lock_path, progress, allowed_paths) -> _Run:
    """The run's folders and environment; refuses a plan outside the policy and a folder that is no source tree."""
    t0 = time.monotonic()
    lock_file = Path(lock_path) if lock_path else default_lock_path()
    source_dir = Path(source_dir).resolve()
    cache_root = Path(cache_root or default_cache_root()).absolute()
    benv = environment(plan, source_dir, cache_root, env)
    check_policy(plan, source_dir, benv, allowed_paths)
    if not (source_dir / "CMakeLists.txt").is_file():
        raise InputError(f"{source_dir} is not a llama.cpp source tree (no CMakeLists.txt there).")
    return _Run(plan, source_dir, cache_root, benv, lock_file, progress, t0)


def _check_prerequisites(run: _Run) -> None:
    why = unmet_message(run.plan, run.env)
    if why is not None:
        raise _Stop("missing-toolchain", why)


def _check_room(run: _Run, min_free_bytes: int | None) -> None:
    """The cache folder exists and its disk has room for a build."""
    try:
        run.cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno == ENOSPC:
            raise _Stop("no-space", f"No space left to create {run.cache_root}.") from None
        raise
    need = min_free_bytes if min_free_bytes is not None else data()["jobs"]["min_free_disk_mib"] * 1024 * 1024
    free = free_space(run.cache_root)
    if free is not None and free < need:
        raise _Stop(
            "no-space",
            f"Only {free / 2**20:.0f} MiB free in {run.cache_root}; a build needs about "
            f"{need / 2**20:.0f} MiB. Free some space (or set BUILDDOCTOR_CACHE to a "
            "larger disk) and run again.",
        )


def _as_cached(run: _Run, hit: BuildResult) -> BuildResult:
    hit.status = "cached"
    hit.duration_s = round(run.elapsed(), 2)
    return hit


def _build_locked(run: _Run, jobs: int, timeout: float | None) -> BuildResult:
    """Under the machine-wide lock: build in a temp folder, then move it into the cache."""

    def waiting() -> None:
        run.emit(ProgressEvent("waiting", message=f"another llama.cpp build holds {run.lock_file}; waiting for it"))

    try:
        with proc.signals_raise(), build_lock(run.lock_file, on_wait=waiting):
            hit = entry_result(run.entry)  # built by someone else while we waited
            if hit is not None:
                return _as_cached(run, hit)
            _compile_in_tmp(run, jobs, timeout)
            return _finish(run)
    except _Stop as stop:
        return _stopped(run, stop, _discard(run))
    except KeyboardInterrupt:  # SIGINT, SIGTERM, SIGHUP: proc.Interrupted
        interrupted = "The build was interrupted; nothing was kept in the cache and nothing was installed."
        return _stopped(run, _Stop("interrupted", interrupted), _discard(run))
    except OSError as exc:
        kept = _discard(run)
        if exc.errno == ENOSPC:
            no_space = f"No space left on device while building in {run.cache_root}."
            return _stopped(run, _Stop("no-space", no_space), kept)
        raise
    finally:
        if run.tmp.exists():
            shutil.rmtree(run.tmp, ignore_errors=True)


def _compile_in_tmp(run: _Run, jobs: int, timeout: float | None) -> None:
    """Configure and compile into a fresh temp folder; stops on a failed step."""
    clean_stale(run.cache_root)
    if run.entry.exists():  # an incomplete entry (files deleted by hand): replace it
        shutil.rmtree(run.entry, ignore_errors=True)
    run.tmp.mkdir(parents=True)
    status, error = configure_and_compile(
        run.plan, run.source_dir, run.tmp, run.env, jobs, timeout, run.tmp / LOG_NAME, run.emit, targets_of(run.plan)
    )
    if status == "failed" and disk_full(run.tmp):
        # cmake does not always say so: a full disk can leave a truncated build.ninja
        # (then ninja reports a "lexing error"), or a compiler dies half-way
        status = "no-space"
        error = (
            f"The disk holding {run.cache_root} is full (free: {free_space(run.tmp) or 0} bytes); "
            f"the build stopped with:\n{error}"
        )
    if status != "ok":
        raise _Stop(status, error or "", announce=True)


def _finish(run: _Run) -> BuildResult:
    """Trim the finished build, write its marker and rename it into the cache (the one atomic step)."""
    drop_objects(run.tmp)
    _omit_variants(run.tmp / "bin", run.plan.omit_cpu_variants)
    final = run.result(
        "ok",
        build_dir=str(run.entry),
        cache_key=run.key,
        log_path=str(run.entry / LOG_NAME),
        binaries=[str(run.entry / "bin" / t) for t in targets_of(run.plan)],
    )
    (run.tmp / MARKER).write_text(final.to_json())
    os.rename(run.tmp, run.entry)
    run.emit(ProgressEvent("done", elapsed_s=run.elapsed()))
    return final


def _discard(run: _Run) -> Path | None:
    """Keep a failed build's log (in ``<cache>/failed``) and remove its temp folder."""
    kept = keep_log(run.tmp / LOG_NAME, run.cache_root / "failed", run.key)
    shutil.rmtree(run.tmp, ignore_errors=True)
    return kept


def _stopped(run: _Run, stop: _Stop, kept: Path | None = None) -> BuildResult:
    """The one way out of a build that did not finish; ``kept``: its log, kept by ``_discard``."""
    if stop.announce:
        run.emit(ProgressEvent("failed", elapsed_s=run.elapsed(), message=stop.status))
    return run.result(
        stop.status, build_dir="", cache_key=run.key, log_path=str(kept) if kept else None, error=stop.error
    )


def disk_full(path: Path, slack: int = 4 << 20) -> bool:
    free = free_space(path)
    return free is not None and free < slack
