"""Memory read bandwidth against working-set size, and the cache knee it shows.

A roofline ("generation reads every weight once per token, so tokens/s x bytes/token <= bandwidth")
holds only when the weights do not fit in a cache. The cache size a CPU reports is no guide (a VM
here reports its host's 480 MiB L3), so the knee is measured: a tiny C kernel, compiled once into
the cache, reads working sets from 1 MiB up and prints GB/s for each; the knee is the smallest
size from which on no size reads more than ``PLATEAU_TOLERANCE`` faster than memory's plateau.

``sweep`` -> Sweep (the curve); ``knee`` (a pure function of a curve, tested on recorded ones);
``smoke_size`` -> SmokeSize: the smoke model's size, past the knee within a cap, or the reason the
roofline cannot be measured in time.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import paths, proc
from builddoctor.profiles import Serializable
from builddoctor.smoke_model import DEFAULT_BYTES

#: a size's speed within this fraction of the largest size's: memory's plateau, past every cache
PLATEAU_TOLERANCE = 0.25
#: the model is this many times the knee: a streamed working set twice the cache misses it whole
PAST_KNEE = 2.0
#: the largest smoke model `bench` makes by default: generation of 64 tokens x 3 runs at the
#: ~10 GB/s llama.cpp reaches on 2 cores, plus writing the model once, stays within a minute
DEFAULT_CAP = 600 * 1000**2
SMALLEST = 1 << 20
LARGEST = 1 << 30
SWEEP_TIMEOUT = 120.0

_KERNEL = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <omp.h>
/* builddoctor: read bandwidth by working-set size. argv: threads max_bytes [min_bytes].
   Each thread reads its share of the first `size` bytes `passes` times in one parallel region
   (no fork/join per pass); best of 5 timings; one line "bytes GB/s" per size, doubling. */
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int threads = atoi(argv[1]);
    size_t max = strtoull(argv[2], 0, 10), min = argc > 3 ? strtoull(argv[3], 0, 10) : (1u << 20);
    omp_set_num_threads(threads);
    size_t n = max / sizeof(uint64_t);
    uint64_t *a = aligned_alloc(4096, n * sizeof(uint64_t));
    if (!a) { fprintf(stderr, "out of memory\n"); return 3; }
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = i;
    uint64_t sink = 0;
    for (size_t size = min; size <= max; size *= 2) {
        size_t m = size / sizeof(uint64_t);
        size_t passes = (size_t)(256u << 20) / size; if (passes < 2) passes = 2;
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            uint64_t s = 0;
            double t0 = omp_get_wtime();
            #pragma omp parallel reduction(+:s)
            {
                int t = omp_get_thread_num(), nt = omp_get_num_threads();
                size_t lo = m * t / nt, hi = m * (t + 1) / nt;
                for (size_t p = 0; p < passes; p++) {
                    uint64_t x = 0;
                    for (size_t i = lo; i < hi; i++) x += a[i];
                    s += x ^ p;
                }
            }
            double dt = omp_get_wtime() - t0;
            if (dt < best) best = dt;
            sink += s;
        }
        printf("%zu %.3f\n", size, (double)size * passes / best / 1e9);
        fflush(stdout);
    }
    fprintf(stderr, "%d\n", (int)(sink & 1));
    return 0;
}
"""


@dataclass
class Point(Serializable):
    bytes: int
    gbs: float


@dataclass
class Sweep(Serializable):
    """Read bandwidth by working-set size with ``threads`` threads; ``error`` when not measured."""

    threads: int
    points: list[Point] = field(default_factory=list)
    error: str | None = None

    @property
    def plateau_gbs(self) -> float | None:
        return self.points[-1].gbs if self.points else None


@dataclass
class SmokeSize(Serializable):
    """The smoke model's size and whether its roofline figure means anything (``why`` if not)."""

    model_bytes: int
    roofline: bool
    why: str
    knee_bytes: int | None = None
    bandwidth_gbs: float | None = None
    sweep: Sweep | None = None


def kernel_binary() -> Path | None:
    """The sweep kernel, compiled once into ``<cache>/tools`` (None without a C compiler with OpenMP)."""
    digest = hashlib.sha256(_KERNEL.encode()).hexdigest()[:12]
    folder = paths.cache_dir() / "tools"
    exe = folder / f"bw-sweep-{digest}"
    if exe.is_file():
        return exe
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"bw-sweep-{digest}.c"
    src.write_text(_KERNEL)
    tmp = folder / f".bw-sweep-{digest}.{os.getpid()}"
    for flags in (["-O3", "-march=native"], ["-O3"]):
        res = proc.run(["cc", *flags, "-fopenmp", str(src), "-o", str(tmp)], timeout=120)
        if res.ok:
            os.replace(tmp, exe)
            return exe
    tmp.unlink(missing_ok=True)
    return None


def parse_sweep(text: str, threads: int) -> Sweep:
    """The kernel's "bytes GB/s" lines; a line that is not two positive numbers is an error."""
    out = Sweep(threads=threads)
    for line in text.splitlines():
        parts = line.split()
        try:
            size, gbs = int(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            out.error = f"unreadable bandwidth line {line[:60]!r}"
            return out
        if size <= 0 or not 0 < gbs < 1e5:
            out.error = f"implausible bandwidth line {line[:60]!r}"
            return out
        out.points.append(Point(size, gbs))
    if not out.points:
        out.error = "the bandwidth kernel printed nothing"
    return out


def sweep(threads: int | None = None, largest: int = LARGEST, smallest: int = SMALLEST) -> Sweep:
    """Measure the curve with the compiled kernel (``error`` says why not)."""
    threads = threads or os.cpu_count() or 1
    exe = kernel_binary()
    if exe is None:
        return Sweep(threads=threads, error="no C compiler with OpenMP (cc -fopenmp) to build the bandwidth kernel")
    res = proc.run([str(exe), str(threads), str(largest), str(smallest)], timeout=SWEEP_TIMEOUT)
    if not res.ok:
        why = "timed out" if res.timed_out else (res.error or res.signal or f"exit {res.returncode}")
        return Sweep(threads=threads, error=f"the bandwidth kernel failed ({why}): {res.output.strip()[-200:]}")
    return parse_sweep(res.stdout, threads)


def knee(points: list[Point], tolerance: float = PLATEAU_TOLERANCE) -> int | None:
    """The smallest working set from which on no size reads faster than memory's plateau (the
    median of the three largest sizes) by more than ``tolerance``: one-sided, as a cache only ever
    makes reads faster, while other load on the machine makes any one size slower. None when the
    curve has not flattened by its end (the caches may be larger than the sweep reached)."""
    if len(points) < 4:
        return None
    pts = sorted(points, key=lambda p: p.bytes)
    floor = sorted(p.gbs for p in pts[-3:])[1]
    limit = (1 + tolerance) * floor
    if pts[-2].gbs > (1 + tolerance) * pts[-1].gbs:
        return None  # still faster than the plateau near the end: no plateau seen
    k = len(pts) - 1
    while k > 0 and pts[k - 1].gbs <= limit:
        k -= 1
    return pts[k].bytes if k > 0 else None  # even the smallest size is no faster: no cache seen


def choose_size(sw: Sweep, *, cap: int = DEFAULT_CAP, default: int) -> SmokeSize:
    """Size the model ``PAST_KNEE`` times past the knee, at least ``default``; within ``cap``, or
    the default size with the reason no roofline is measured."""
    if sw.error:
        return SmokeSize(default, False, f"not measured: {sw.error}", sweep=sw)
    k = knee(sw.points)
    largest = max(p.bytes for p in sw.points)
    if k is None:
        return SmokeSize(
            default,
            False,
            f"not measured: read speed still changes at {largest / 2**20:.0f} MiB, the "
            "largest working set measured: the caches may hold more than that",
            sweep=sw,
        )
    want = max(default, int(PAST_KNEE * k))
    bw = sw.plateau_gbs
    if want > cap:
        return SmokeSize(
            default,
            False,
            f"not measured: the caches hold up to about {k / 2**20:.0f} MiB (measured), "
            f"a model past that ({want / 1e6:.0f} MB) is over the {cap / 1e6:.0f} MB cap "
            "that keeps the benchmark short; ask for it with --size",
            knee_bytes=k,
            bandwidth_gbs=bw,
            sweep=sw,
        )
    return SmokeSize(
        want,
        True,
        f"model {want / 1e6:.0f} MB is past the measured cache knee ({k / 2**20:.0f} MiB; {bw:.1f} GB/s beyond it)",
        knee_bytes=k,
        bandwidth_gbs=bw,
        sweep=sw,
    )


def roofline_check(model_bytes: int, sw: Sweep) -> SmokeSize:
    """For a model size the user chose: is it past the measured knee?"""
    if sw.error:
        return SmokeSize(model_bytes, False, f"not measured: {sw.error}", sweep=sw)
    k = knee(sw.points)
    if k is None:
        return SmokeSize(
            model_bytes,
            False,
            f"not measured: no memory plateau within the {max(p.bytes for p in sw.points) / 2**20:.0f} MiB measured",
            sweep=sw,
        )
    if model_bytes < PAST_KNEE * k:
        return SmokeSize(
            model_bytes,
            False,
            f"not measured: the {model_bytes / 1e6:.0f} MB model fits in the caches "
            f"(knee measured at {k / 2**20:.0f} MiB)",
            knee_bytes=k,
            bandwidth_gbs=sw.plateau_gbs,
            sweep=sw,
        )
    return SmokeSize(
        model_bytes,
        True,
        f"model {model_bytes / 1e6:.0f} MB is past the measured cache knee ({k / 2**20:.0f} MiB)",
        knee_bytes=k,
        bandwidth_gbs=sw.plateau_gbs,
        sweep=sw,
    )


#: default sizes are rounded up to this step, so that runs on one host reuse one cached model
SIZE_STEP = 50 * 1000**2


def plan_smoke(
    size_bytes: int | None,
    *,
    threads: int | None = None,
    measure: bool = True,
    default: int | None = None,
    cap: int = DEFAULT_CAP,
    remember: Path | None = None,
) -> SmokeSize:
    """The smoke model for `bench`: the user's size (checked against the knee) or one past the knee.
    ``remember``: a file keeping the curve (tune: per machine, so that a rerun picks the same model
    and its cached results without measuring again)."""
    default = default or DEFAULT_BYTES
    if not measure:
        return SmokeSize(size_bytes or default, False, "not measured: --no-bandwidth")
    sw = None
    if remember is not None:
        try:
            sw = Sweep.from_json(Path(remember).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            sw = None
    if sw is None or sw.error or not sw.points:
        sw = sweep(threads)
        if remember is not None and not sw.error:
            Path(remember).parent.mkdir(parents=True, exist_ok=True)
            Path(remember).write_text(sw.to_json(), encoding="utf-8")
    if size_bytes:
        return roofline_check(size_bytes, sw)
    got = choose_size(sw, cap=cap, default=default)
    if got.roofline:
        got.model_bytes = min(cap, -(-got.model_bytes // SIZE_STEP) * SIZE_STEP)
    return got
