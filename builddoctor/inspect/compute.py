"""The compute probe: a real inference on a tiny model, so that a verdict rests on computing.

``--version`` and ``--list-devices`` compute nothing; a build can answer both and die on its
first matrix multiplication (llama.cpp's AMX kernels on some Xeons do). The probe runs the
build's llama-bench (else llama-simple, llama-completion, the old main: data/compute_probe.toml)
on the probe model for a few prompt and generated tokens, through ``proc.run``: argument list,
time limit, clean environment, a fresh empty working folder. A library-only build is loaded with
dlopen in a clean child Python instead. What happened is a ComputeResult, never an exception.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeGuard

from builddoctor import paths, proc
from builddoctor.profiles import ComputeResult
from builddoctor.readinput import JsonInputError, loads
from builddoctor.tomlload import load_toml

OUTPUT_KEEP = 4096
DEFAULT_TIMEOUT = 30.0

_PERF_TPS = re.compile(
    r"^\s*(?:llama_perf_context_print|llama_print_timings):\s+(prompt )?eval time\s*=.*?"
    r"([\d.]+) tokens per second",
    re.M,
)
_DLOPEN = (
    "import ctypes, sys\n"
    "try:\n"
    "    ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_LOCAL)\n"
    "except OSError as exc:\n"
    "    print(exc, file=sys.stderr)\n"
    "    sys.exit(3)\n"
)


@functools.lru_cache(maxsize=1)
def table() -> dict:
    return load_toml(paths.DATA_DIR / "compute_probe.toml")


def program_for(names: Sequence[str]) -> tuple[str, dict] | None:
    """(file name, program entry) of the first program in the table's order among ``names``."""
    have = set(names)
    for prog in table()["program"]:
        for n in prog["names"]:
            if n in have:
                return n, prog
    return None


def device_not_here(backends: Sequence[str] = (), names: Sequence[str] = ()) -> dict | None:
    """The table's ``not_here`` entry (with ``why`` filled in) for a GPU backend of the build whose driver
    library this machine lacks, by backend name or by file name; None when all can run."""
    for row in table().get("not_here", []):
        ours = row["backend"] in backends or any(n.startswith(f) for n in names for f in row.get("files", []))
        if not ours or sys.platform == "darwin":
            continue
        dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d] + row["dirs"]
        if any(os.path.exists(os.path.join(d, lib)) for d in dirs for lib in row["driver_libs"]):
            continue
        return {**row, "why": row["why"].format(driver=" or ".join(row["driver_libs"]))}
    return None


def not_run(row: dict) -> ComputeResult:
    """The compute probe's result when it was not run: a GPU build on a machine without that GPU."""
    return ComputeResult(kind="not-run", argv=[], ok=False, backend=row["backend"], problem=row["why"])


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _tail(text: str) -> str:
    return text if len(text) <= OUTPUT_KEEP else "[...]\n" + text[-OUTPUT_KEEP:]


def run_inference(
    exe: str | Path, prog: dict, model: Path, *, threads: int | None = None, timeout: float = DEFAULT_TIMEOUT
) -> ComputeResult:
    """Run ``exe`` (one of the table's programs) on ``model``; read what it computed."""
    threads = threads or default_threads()
    args = [a.format(model=str(model), threads=threads) for a in prog["args"]]
    argv = [str(exe), *args]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="builddoctor-compute-") as cwd:
        c = proc.run(argv, timeout=timeout, env=proc.program_env(home=cwd), cwd=cwd)
    res = ComputeResult(
        kind="inference",
        argv=list(c.argv),
        returncode=c.returncode,
        signal=c.signal,
        timed_out=c.timed_out,
        timeout_s=float(timeout),
        error=c.error,
        threads=threads,
        seconds=round(time.monotonic() - t0, 3),
        output=_tail(c.output),
    )
    if c.timed_out or c.signal or c.error:
        return res
    if c.returncode != 0:
        res.problem = f"exited with status {c.returncode}"
        return res
    if prog["output"] == "llama-bench-json":
        _read_bench(res, c.stdout)
    else:
        _read_text(res, c.output)
    res.ok = not res.problem
    return res


def _finite(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def parse_bench_json(text: str) -> list[dict]:
    """llama-bench -o json prints one JSON array (possibly after log lines). Read here, below both
    its readers: the compute probe and the benchmark (bench.py)."""
    start = text.find("[")
    if start < 0:
        raise ValueError("no JSON array in llama-bench output")
    try:
        data = loads(text[start : text.rfind("]") + 1])
    except JsonInputError as exc:
        raise ValueError(f"llama-bench JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError("llama-bench JSON is not a list")
    return data


def _read_bench(res: ComputeResult, stdout: str) -> None:
    try:
        rows = parse_bench_json(stdout)
    except ValueError as exc:
        res.problem = f"printed no benchmark result ({exc})"
        return
    if not rows or not all(isinstance(r, dict) for r in rows):
        res.problem = "printed an empty benchmark result"
        return
    for r in rows:
        ts = r.get("avg_ts")
        if not _finite(ts):
            res.problem = f"printed a meaningless speed ({ts!r} tokens/s)"
            return
        if r.get("n_prompt") and not r.get("n_gen"):
            res.pp_tps = float(ts)
        elif r.get("n_gen"):
            res.tg_tps = float(ts)
    first = rows[0]
    res.backend = str(first.get("backends") or first.get("backend") or "")
    res.device = str(first.get("gpu_info") or first.get("cpu_info") or "")
    if isinstance(first.get("n_threads"), int):
        res.threads = first["n_threads"]


def _read_text(res: ComputeResult, output: str) -> None:
    for m in _PERF_TPS.finditer(output):
        if m.group(1):
            res.pp_tps = float(m.group(2))
        else:
            res.tg_tps = float(m.group(2))


def run_dlopen(library: str | Path, *, timeout: float | None = None) -> ComputeResult:
    """Load ``library`` with dlopen(RTLD_NOW) in a clean, isolated child Python."""
    timeout = float(timeout or table()["dlopen"]["timeout"])
    argv = [sys.executable, "-I", "-S", "-c", _DLOPEN, str(library)]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="builddoctor-dlopen-") as cwd:
        c = proc.run(argv, timeout=timeout, env=proc.program_env(home=cwd), cwd=cwd)
    res = ComputeResult(
        kind="dlopen",
        argv=[str(library)],
        returncode=c.returncode,
        signal=c.signal,
        timed_out=c.timed_out,
        timeout_s=timeout,
        error=c.error,
        seconds=round(time.monotonic() - t0, 3),
        output=_tail(c.output),
    )
    if c.returncode == 3:
        res.error = c.stderr.strip().splitlines()[-1] if c.stderr.strip() else "dlopen failed"
    elif c.returncode not in (0, None):
        res.problem = f"the loading process exited with status {c.returncode}"
    res.ok = c.returncode == 0 and not c.timed_out
    return res


def pick_library(files: Sequence[tuple[str, bool]]) -> str | None:
    """The library of a library-only build to load: (path, is llama.cpp code) pairs, best first
    by the table's name preference."""
    prefer = table()["dlopen"]["prefer"]
    host_only = tuple(table()["dlopen"].get("host_only", ()))
    cands = [p for p, is_llama in files if is_llama and not p.endswith(host_only)]
    if not cands:
        return None

    def rank(p: str) -> tuple[int, str]:
        name = Path(p).name
        for i, stem in enumerate(prefer):
            if name.startswith(stem + ".") or name.startswith(stem + "-") or name == stem:
                return i, name
        return len(prefer), name

    return min(cands, key=rank)
