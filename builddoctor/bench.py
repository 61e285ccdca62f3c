"""Smoke-speed benchmarks: llama-bench on a random-weight model, and the bandwidth roofline.

- ``run_bench``: one llama-bench run (``-o json``) -> BenchResult with tokens/s and spread.
- ``memory_bandwidth``: read bandwidth at one working-set size (``bandwidth``'s C kernel;
  numpy threads when there is no compiler). ``bandwidth`` finds the cache knee.
- ``roofline_fraction``: generation speed as a fraction of what memory bandwidth allows
  (every generated token reads every weight once, the token embedding's one row only:
  tokens/s x bytes per token / bandwidth).
- ``compare``: old vs new build, interleaved runs (A B A B ...), the ratio with its spread.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from builddoctor import bandwidth, proc, smoke_model
from builddoctor.inspect import inspect_paths
from builddoctor.inspect.compute import parse_bench_json
from builddoctor.probe import machine_profile
from builddoctor.profiles import BenchResult, Serializable, Stat

BENCH_TIMEOUT = 900.0  # one llama-bench run; a Debug build on a big model is slow
GPU_BACKEND_LIBS = ("cuda", "hip", "vulkan", "metal", "sycl", "opencl", "musa", "cann")
DEFAULT_PP = 128
DEFAULT_TG = 64
DEFAULT_REPS = 3


# --------------------------------------------------------------------------- finding llama-bench


def find_llama_bench(path: Path) -> Path | None:
    """llama-bench itself, or the llama-bench beside a build's program or in its folder."""
    path = Path(path)
    names = ("llama-bench", "llama-bench.exe")
    if path.is_file() and path.name in names:
        return path
    folder = path if path.is_dir() else path.parent
    for cand in (folder / n for n in names):
        if cand.is_file():
            return cand
    for cand in (folder / "bin" / n for n in names):
        if cand.is_file():
            return cand
    return None


def has_gpu_backend(bench_binary: Path) -> bool:
    """Whether the build carries a GPU backend (its libraries, or the inspector's reading)."""
    folder = Path(bench_binary).resolve().parent
    for f in folder.iterdir():
        low = f.name.lower()
        if low.startswith(("libggml-", "ggml-")) and any(f"ggml-{b}" in low for b in GPU_BACKEND_LIBS):
            return True

    try:
        builds, _ = inspect_paths([Path(bench_binary)], run=False)
    except Exception:  # noqa: BLE001 - the inspector failing must not stop a benchmark
        return False
    return any(b.lower() not in ("cpu", "blas", "rpc") for p in builds for b in p.backends)


def physical_cores(machine=None) -> int:
    if machine is not None and getattr(machine.cpu, "cores", None):
        return int(machine.cpu.cores)
    try:
        cores = machine_profile().cpu.cores
        if cores:
            return int(cores)
    except Exception:  # noqa: BLE001 - fall back to the OS count
        pass
    return os.cpu_count() or 1


# --------------------------------------------------------------------------- one run


def bench_command(
    binary: Path,
    model: Path,
    *,
    threads: int,
    ngl: int = 0,
    pp: int = DEFAULT_PP,
    tg: int = DEFAULT_TG,
    reps: int = DEFAULT_REPS,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """``extra``: more llama-bench options (tune's run-time settings: -fa on, -ub 256...)."""
    argv = [
        str(binary),
        "-m",
        str(model),
        "-p",
        str(pp),
        "-n",
        str(tg),
        "-r",
        str(reps),
        "-t",
        str(threads),
        "-o",
        "json",
    ]
    if ngl:
        argv += ["-ngl", str(ngl)]
    return argv + [str(a) for a in extra]


@dataclass(frozen=True)
class BenchRow:
    """The fields builddoctor uses from one llama-bench JSON row, type-checked: one build printing
    strings where numbers belong is that build's error, not the end of a whole comparison."""

    n_prompt: int
    n_gen: int
    avg_ts: float
    stddev_ts: float
    n_samples: int
    model_size: int | None
    backends: str
    gpu_info: str


#: no count, size (bytes) or speed (tokens/s) llama-bench prints is larger
_MAX_FIELD = 1e15


def _number(row: dict, key: str, i: int, kind: type, default):
    value = row.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
        want = "an integer" if kind is int else "a number"
        raise ValueError(f"row {i}: {key} is {type(value).__name__} {str(value)[:40]!r}, not {want}")
    if not math.isfinite(value) or not 0 <= value <= _MAX_FIELD:
        raise ValueError(f"row {i}: {key} is {value!r}, not a number from 0 to {_MAX_FIELD:g}")
    return kind(value)


def bench_rows(data: list) -> list[BenchRow]:
    """Typed rows of a parsed llama-bench JSON array (ValueError names the first bad field)."""
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is {type(row).__name__}, not an object")
        samples = row.get("samples_ts") or []
        if not isinstance(samples, list):
            raise ValueError(f"row {i}: samples_ts is {type(samples).__name__}, not a list")
        text = {k: row.get(k) or "" for k in ("backends", "gpu_info")}
        for k, v in text.items():
            if not isinstance(v, str):
                raise ValueError(f"row {i}: {k} is {type(v).__name__}, not text")
        rows.append(
            BenchRow(
                n_prompt=_number(row, "n_prompt", i, int, 0),
                n_gen=_number(row, "n_gen", i, int, 0),
                avg_ts=_number(row, "avg_ts", i, float, 0.0),
                stddev_ts=_number(row, "stddev_ts", i, float, 0.0),
                n_samples=len(samples),
                model_size=_number(row, "model_size", i, int, None),
                **text,
            )
        )
    return rows


def run_bench(
    binary: Path,
    model: Path,
    *,
    threads: int | None = None,
    ngl: int | None = None,
    pp: int = DEFAULT_PP,
    tg: int = DEFAULT_TG,
    reps: int = DEFAULT_REPS,
    timeout: float = BENCH_TIMEOUT,
    bandwidth_gbs: float | None = None,
    extra: tuple[str, ...] = (),
) -> BenchResult:
    """One llama-bench run. A crash, a hang or unreadable output ends in ``BenchResult.error``."""
    binary = Path(binary)
    threads = threads or physical_cores()
    if ngl is None:
        ngl = 99 if has_gpu_backend(binary) else 0
    res = BenchResult(
        binary=str(binary),
        model=str(model),
        threads=threads,
        n_gpu_layers=ngl,
        pp_tokens=pp,
        tg_tokens=tg,
        bandwidth_gbs=bandwidth_gbs,
    )
    try:
        res.model_bytes = Path(model).stat().st_size
    except OSError:
        pass
    res.bytes_per_token = _bytes_per_token(Path(model))
    # absolute paths: it runs in a throw-away folder
    argv = bench_command(
        binary.absolute(), Path(model).absolute(), threads=threads, ngl=ngl, pp=pp, tg=tg, reps=reps, extra=extra
    )
    with tempfile.TemporaryDirectory(prefix="builddoctor-bench-") as cwd:  # its folder and HOME: throw-away
        done = proc.run(argv, timeout=timeout, extra_env={**proc.from_user(proc.DEVICE_ENV), "HOME": cwd}, cwd=cwd)
    if not done.ok:
        res.error = _describe_failure(done, timeout)
        return res
    try:
        rows = bench_rows(parse_bench_json(done.stdout))
    except ValueError as exc:
        res.error = f"{binary} printed no readable result ({exc}); last output: {_tail(done.output)}"
        return res
    for row in rows:
        stat = Stat(mean=row.avg_ts, stddev=row.stddev_ts, n=row.n_samples or reps)
        if row.model_size:
            res.model_bytes = row.model_size
        res.backends = row.backends or res.backends
        res.gpu_info = row.gpu_info or res.gpu_info
        if row.n_prompt > 0 and row.n_gen == 0:
            res.pp = stat
        elif row.n_gen > 0 and row.n_prompt == 0:
            res.tg = stat
    if res.pp is None and res.tg is None:
        res.error = f"{binary} reported no prompt or generation test"
    _set_roofline(res)
    return res


def _bytes_per_token(model: Path) -> int:
    """What one generated token reads from the model file; 0 (use the model size) when unreadable."""
    try:
        return smoke_model.bytes_per_token(model)
    except Exception:  # noqa: BLE001 - not a GGUF file gguf can read: the model size stands in
        return 0


def _set_roofline(res: BenchResult) -> None:
    """The fraction of the bandwidth limit, for runs on the CPU only (the host's memory bounds no GPU)."""
    on_cpu = res.n_gpu_layers == 0 or res.backends in ("", "CPU")
    per_token = res.bytes_per_token or res.model_bytes
    if res.bandwidth_gbs and res.tg and per_token and on_cpu:
        res.roofline_fraction = roofline_fraction(res.tg.mean, per_token, res.bandwidth_gbs)


def _describe_failure(done: proc.Completed, timeout: float) -> str:
    name = Path(done.argv[0]).name
    if done.error:
        return f"could not run {done.argv[0]}: {done.error}"
    if done.timed_out:
        return f"{name} did not finish within {timeout:.0f} s and was stopped (a hang, or a far too slow build)"
    if done.signal:
        hint = {
            "SIGILL": " (an instruction this CPU does not have: the build targets another CPU)",
            "SIGSEGV": " (a crash)",
            "SIGBUS": " (a crash)",
            "SIGABRT": " (it aborted)",
        }.get(done.signal, "")
        return f"{name} died from {done.signal}{hint}; last output: {_tail(done.output)}"
    return f"{name} failed (exit code {done.returncode}); last output: {_tail(done.output)}"


def _tail(text: str, n: int = 4) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "(none)"


def roofline_fraction(tg_tokens_per_s: float, bytes_per_token: int, bandwidth_gbs: float) -> float:
    """Generation speed over the memory-bandwidth limit: 1.0 means every byte read at full speed."""
    return tg_tokens_per_s * bytes_per_token / (bandwidth_gbs * 1e9)


# --------------------------------------------------------------------------- memory bandwidth


def memory_bandwidth(
    threads: int | None = None, size_bytes: int | None = None, l3_bytes: int | None = None, reps: int = 7
) -> float:
    """Read bandwidth in GB/s (1e9 bytes/s) at one working-set size with ``threads`` threads
    (default: all CPUs), from ``bandwidth``'s kernel; numpy threads when it cannot be built."""
    threads = threads or os.cpu_count() or 1
    size = size_bytes or max(512 << 20, 16 * (l3_bytes or 0))
    size = min(size, 8 << 30)
    sw = bandwidth.sweep(threads, largest=size, smallest=size)
    if not sw.error and sw.points:
        return sw.points[-1].gbs
    return _numpy_bandwidth(threads, size, reps)


def _numpy_bandwidth(threads: int, size: int, reps: int) -> float:
    import numpy as np  # noqa: PLC0415 (numpy is heavy: loaded for this fallback only)

    a = np.ones(size // 8, dtype=np.float64)
    chunks = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(reps):
            t0 = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


# --------------------------------------------------------------------------- before / after


@dataclass
class Comparison(Serializable):
    """Builds benchmarked in interleaved rounds; ratios are each build over the first."""

    results: list[BenchResult] = field(default_factory=list)
    pp_ratio: list[Stat | None] = field(default_factory=list)  # per build, vs results[0]
    tg_ratio: list[Stat | None] = field(default_factory=list)
    rounds: int = 0
    model: str = ""
    bandwidth_gbs: float | None = None
    roofline_note: str = ""  # why the "of bw limit" column is a roofline, or "not measured: ..."


def _stat(values: list[float]) -> Stat | None:
    if not values:
        return None
    return Stat(
        mean=statistics.fmean(values), stddev=statistics.stdev(values) if len(values) > 1 else 0.0, n=len(values)
    )


def compare(
    binaries: list[Path],
    model: Path,
    *,
    rounds: int = 3,
    reps: int = 2,
    threads: int | None = None,
    bandwidth_gbs: float | None = None,
    timeout: float = BENCH_TIMEOUT,
    on_run: Callable[[int, int, BenchResult], None] | None = None,
) -> Comparison:
    """Run each build ``rounds`` times, interleaved (A B A B ...), so that drift of the machine
    (other load, heat) hits all builds alike; report speeds and per-round ratios to the first."""
    threads = threads or physical_cores()
    per: list[list[BenchResult]] = [[] for _ in binaries]
    for r in range(rounds):
        for i, b in enumerate(binaries):
            if per[i] and per[i][-1].error:
                continue  # a build that crashed once is not run again
            res = run_bench(b, model, threads=threads, reps=reps, timeout=timeout, bandwidth_gbs=bandwidth_gbs)
            per[i].append(res)
            if on_run:
                on_run(r, i, res)
    out = Comparison(rounds=rounds, model=str(model), bandwidth_gbs=bandwidth_gbs)
    for runs in per:
        ok = [x for x in runs if not x.error]
        first = ok[0] if ok else runs[0]
        agg = replace(first, pp=None, tg=None, roofline_fraction=None, error=None, bandwidth_gbs=bandwidth_gbs)
        if not ok:
            agg.error = first.error or runs[-1].error
        else:
            agg.pp = _pool([x.pp for x in ok])
            agg.tg = _pool([x.tg for x in ok])
            _set_roofline(agg)
        out.results.append(agg)
    base = per[0]
    for runs in per:
        out.pp_ratio.append(_ratio(base, runs, "pp"))
        out.tg_ratio.append(_ratio(base, runs, "tg"))
    return out


def _pool(stats: list[Stat | None]) -> Stat | None:
    """Mean and spread over runs: the spread of the run means, or within a run when only one."""
    have = [s for s in stats if s is not None]
    if not have:
        return None
    if len(have) == 1:
        return have[0]
    means = [s.mean for s in have]
    return Stat(mean=statistics.fmean(means), stddev=statistics.stdev(means), n=sum(s.n for s in have))


def _ratio(base: list[BenchResult], runs: list[BenchResult], kind: str) -> Stat | None:
    vals = []
    for a, b in zip(base, runs, strict=False):
        sa, sb = getattr(a, kind), getattr(b, kind)
        if a.error or b.error or not sa or not sb or sa.mean <= 0:
            continue
        vals.append(sb.mean / sa.mean)
    return _stat(vals)
