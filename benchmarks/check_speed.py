"""How fast inspect is: a check of the three real test builds, and one 100 MB library.

    .venv/bin/python benchmarks/check_speed.py [--repeat N]
    .venv/bin/python benchmarks/check_speed.py --corpus [--min-mb M] [--timeout S] [CASE...]

``--corpus``: the real third-party builds of tests/corpus/cases.toml (fetched first when missing: about
1.3 GB from npm and PyPI, cached in .cache/corpus). For each llama.cpp file of a case (its truth file lists
them) of at least M MB, a fresh Python process reads it (``inspect_binary``: what ``check`` does per file),
and for each case ``builddoctor check <case> --no-run --json`` runs; each prints its wall time, its time
after start-up, and its peak memory (the child's ru_maxrss), then the slowest file's figures against the
goal (under 1 s and 300 MB per file, whatever its size).

Prints, for each case, the wall time of a fresh Python process doing it (what a user of
``builddoctor check`` waits for, imports included) and the time inside a warm process
(best of N). Goals: the three builds under 1.0 s in total without the compute probe, under 3 s with it
(a real inference per build), the 100 MB library under 0.3 s, a 300 MB monolithic module
under 1 s and 300 MB of memory.
The three builds come from tests/llama_builds.py (built first when missing: minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builddoctor import proc  # noqa: E402

BIG_C = """
const char big_weights_blob[100 * 1024 * 1024] = {1};
float ggml_vec_dot_f32(int n, const float *x, const float *y) {
    float s = 0; for (int i = 0; i < n; i++) s += x[i] * y[i] + big_weights_blob[i]; return s;
}
int ggml_backend_cpu_reg(void) { return 1; }
int ggml_cpu_has_avx2(void) {
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}
"""

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from builddoctor.inspect import inspect_binary, inspect_paths
mode, args = sys.argv[1], sys.argv[2:]
if mode == "builds-norun":
    b, m = inspect_paths(args, run=False)
elif mode == "builds-run":
    b, m = inspect_paths(args, run=True, compute=False)
elif mode == "builds-compute":
    b, m = inspect_paths(args, run=True)
else:
    b = [inspect_binary(args[0])]
# peak memory of this process's own image: VmHWM (ru_maxrss would carry over the forking parent's size)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"inside": time.perf_counter() - t0, "n": len(b), "maxrss_mb": hwm / 1024}))
"""


def make_big_module(d: Path, code_from: Path, functions: int = 100_000) -> Path:
    """A ~300 MB monolithic Python extension module: ``functions`` C++-named functions (a 10 MB string
    table, 200 MB of real x86 code cut from ``code_from``'s .text), the CPU backend's hot functions,
    and 80 MB of real CUDA fatbin containers (nvcc, when installed): the shape of the module that took
    88 s and 577 MB to check before the ISA scan was bounded (issue 13)."""
    code = d / "code.bin"
    res = proc.run(["objcopy", "-O", "binary", "--only-section=.text", str(code_from), str(code)], timeout=60)
    if not res.ok:
        raise SystemExit(f"objcopy failed: {res.stderr}")
    size, chunk = code.stat().st_size, 2000
    lines = ['.section .note.GNU-stack,"",@progbits', ".text"]
    names = [f"_ZN4ggml4cuda21kernel_variant_{i:06d}EPKfS2_Pfiii" for i in range(functions)]
    names += ["ggml_vec_dot_q4_0_q8_0", "ggml_vec_dot_f16", "ggml_backend_cpu_reg", "ggml_compute_forward_mul_mat"]
    for i, name in enumerate(names):
        lines += [
            f".globl {name}",
            f".type {name},@function",
            f"{name}:",
            f'.incbin "{code}",{(i * 7919 * 16) % (size - chunk)},{chunk}',
            f".size {name},{chunk}",
        ]
    (d / "big.s").write_text("\n".join(lines) + "\n")
    out = d / "_big.cpython-311-x86_64-linux-gnu.so"
    for argv in (
        ["as", str(d / "big.s"), "-o", str(d / "big.o")],
        ["gcc", "-shared", str(d / "big.o"), "-o", str(out)],
    ):
        res = proc.run(argv, timeout=600)
        if not res.ok:
            raise SystemExit(f"{argv[0]} failed: {res.stderr[-2000:]}")
    try:
        from tests import elf_fixtures as fx

        cu = fx.make_cuda_fatbin(d / "cu")
    except RuntimeError:
        return out  # no nvcc: no fatbin section
    one = d / "one.fatbin"
    proc.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", str(cu), str(one)], timeout=60)
    blob = one.read_bytes()
    (d / "fat.bin").write_bytes(blob * (80_000_000 // max(1, len(blob))))
    with_fat = d / "with-fatbin" / out.name
    with_fat.parent.mkdir()
    proc.run(
        [
            "objcopy",
            "--add-section",
            f".nv_fatbin={d / 'fat.bin'}",
            "--set-section-flags",
            ".nv_fatbin=contents,alloc,load,readonly,data",
            str(out),
            str(with_fat),
        ],
        timeout=120,
    )
    return with_fat if with_fat.exists() else out


def make_big_lib(d: Path) -> Path:
    src = d / "big.c"
    src.write_text(BIG_C)
    lib = d / "libggml-cpu.so"
    res = proc.run(["gcc", "-O2", "-mavx2", "-shared", "-fPIC", str(src), "-o", str(lib)], timeout=300)
    if not res.ok:
        raise SystemExit(f"gcc failed: {res.stderr}")
    return lib


def fresh(mode: str, args: list[str], repeat: int, rss: list | None = None) -> tuple[float, float]:
    walls = []
    insides = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = proc.run([sys.executable, "-c", CHILD, mode, *args], timeout=120, cwd=str(ROOT))
        walls.append(time.perf_counter() - t0)
        if not res.ok:
            raise SystemExit(f"child failed: {res.stderr[-2000:]}")
        got = json.loads(res.stdout.strip().splitlines()[-1])
        insides.append(got["inside"])
        if rss is not None:
            rss.append(got["maxrss_mb"])
    return statistics.median(walls), statistics.median(insides)


def warm(fn, repeat: int) -> float:
    fn()  # imports, ldconfig cache
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


FILE_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from builddoctor.inspect import inspect_binary
import builddoctor.inspect.binary  # noqa: F401  (its imports are start-up, not the file's time)
t1, c1 = time.perf_counter(), time.process_time()
bf = inspect_binary(sys.argv[1])
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
print(json.dumps({"inside": time.perf_counter() - t1, "cpu": time.process_time() - c1, "imports": t1 - t0,
                  "peak_mb": int(hwm[0]) / 1024 if hwm else None,
                  "isa_level": bf.isa_level,
                  "backends": bf.backends, "error": bf.error}))
"""

FILE_GOAL_S, FILE_GOAL_MB = 1.0, 300


def measured(argv: list[str], timeout: float) -> tuple[float, float, int | None, str]:
    """(wall s, peak RSS MB, exit status or None when killed for time, stdout) of one child.

    The peak is the child's own when it reports one (a last JSON line with ``peak_mb``, its VmHWM):
    ``ru_maxrss`` of a child starts at its parent's RSS, because Linux carries the high-water mark
    across exec, so a child of a big process (pytest after 900 tests: 372 MB) would look as big."""
    import os
    import signal
    import subprocess

    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out_chunks: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(p.stdout.read()), daemon=True)
    reader.start()
    status = None
    deadline = t0 + timeout
    while True:
        pid, st, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            status = os.waitstatus_to_exitcode(st)
            break
        if time.perf_counter() > deadline:
            os.kill(p.pid, signal.SIGKILL)
            pid, st, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    p.returncode = status if status is not None else -9
    reader.join(timeout=5)
    out = "".join(out_chunks)
    peak = ru.ru_maxrss / 1024
    try:
        own = json.loads(out.strip().splitlines()[-1]).get("peak_mb") if out.strip() else None
    except (ValueError, AttributeError):
        own = None
    return wall, (own if isinstance(own, (int, float)) else peak), status, out


def corpus_main(opts) -> int:
    import platform as _pf

    from tests.corpus import fetch

    cases, _shapes = fetch.load()
    if opts.cases:
        cases = [c for c in cases if c.name in set(opts.cases)]
    cpu = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            _pf.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    print(f"real-file corpus, {len(cases)} cases; CPU: {cpu}; files of at least {opts.min_mb:g} MB")
    rows = []
    for c in cases:
        base = fetch.fetch_case(c)
        truth = json.loads((fetch.TRUTH_DIR / f"{c.name}.json").read_text())
        for f in truth["files"]:
            if not f.get("llama") or f["size"] < opts.min_mb * 1e6:
                continue
            path = base / f["path"]
            wall, mb, st, out = measured([sys.executable, "-c", FILE_CHILD, str(path)], opts.timeout)
            info = json.loads(out.strip().splitlines()[-1]) if st == 0 and out.strip() else {}
            inside = info.get("inside")
            rows.append((c.name, f["path"], f["size"], wall, inside, mb, st, info.get("cpu")))
            state = (
                f"{inside:7.3f} s inside ({info['cpu']:.3f} s CPU)"
                if inside is not None
                else (f"  killed after {opts.timeout:.0f} s" if st is None else f"  exit {st}")
            )
            print(
                f"  {c.name:22s} {f['path'][-58:]:58s} {f['size'] / 1e6:7.1f} MB  {wall:7.3f} s wall "
                f"{state}  {mb:7.1f} MB peak",
                flush=True,
            )
        wall, mb, st, _out = measured(
            [sys.executable, "-m", "builddoctor", "check", str(base), "--no-run", "--json"], opts.timeout
        )
        print(
            f"  {c.name:22s} {'check --no-run (whole case)':58s} {'':10s}  {wall:7.3f} s wall "
            f"{'exit ' + str(st) if st is not None else 'killed':>16s}  {mb:7.1f} MB peak",
            flush=True,
        )
    if not rows:
        print("no file measured")
        return 0

    def key(r):
        return (r[4] if r[4] is not None else float("inf"), r[3])

    # CPU seconds beside the wall time: on a shared machine the wall time says more about the load
    print(
        f"\nthe {min(opts.top, len(rows))} slowest files (time after start-up, its CPU time; peak memory of the child):"
    )
    print(f"  {'case':22s} {'file':58s} {'MB':>7s} {'inside s':>9s} {'CPU s':>7s} {'wall s':>8s} {'peak MB':>8s}")

    def line(r):
        inside = f"{r[4]:9.3f}" if r[4] is not None else f"{'-':>9s}"
        cpu = f"{r[7]:7.3f}" if r[7] is not None else f"{'-':>7s}"
        print(f"  {r[0]:22s} {r[1][-58:]:58s} {r[2] / 1e6:7.1f} {inside} {cpu} {r[3]:8.3f} {r[5]:8.1f}")

    for r in sorted(rows, key=key, reverse=True)[: opts.top]:
        line(r)
    print(f"the {min(opts.top, len(rows))} files with the highest peak memory:")
    for r in sorted(rows, key=lambda r: r[5], reverse=True)[: opts.top]:
        line(r)
    slow = max(rows, key=key)
    big = max(rows, key=lambda r: r[5])
    for label, r in (("slowest file", slow), ("most memory", big)):
        t = (
            f"{r[4]:.3f} s after start-up ({r[3]:.3f} s wall)"
            if r[4] is not None
            else f"did not finish ({r[3]:.0f} s wall)"
        )
        ok = r[4] is not None and r[4] < FILE_GOAL_S and r[5] < FILE_GOAL_MB
        print(
            f"{label}: {r[0]} {r[1]} ({r[2] / 1e6:.0f} MB): {t}, {r[5]:.0f} MB peak   "
            f"[goal < {FILE_GOAL_S:g} s, < {FILE_GOAL_MB} MB: {'OK' if ok else 'over goal'}]"
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--corpus", action="store_true", help="time each file of the real-file corpus instead")
    ap.add_argument("--min-mb", type=float, default=0.0, help="--corpus: only files of at least this size")
    ap.add_argument("--timeout", type=float, default=600, help="--corpus: seconds per child at most")
    ap.add_argument("--top", type=int, default=10, help="--corpus: how many of the slowest files to list")
    ap.add_argument("cases", nargs="*", help="--corpus: only these cases")
    opts = ap.parse_args()
    if opts.corpus:
        return corpus_main(opts)

    from builddoctor.inspect import inspect_binary, inspect_paths
    from tests.llama_builds import ensure_build

    roots = [str(ensure_build(n).parent) for n in ("native", "sse", "debug")]
    files = sum(1 for r in roots for p in Path(r, "bin").iterdir() if not p.is_symlink())
    print(f"three real builds ({files} files): {', '.join(roots)}")
    t_ps = time.perf_counter()
    res = proc.run([sys.executable, "-c", "import lief"], timeout=60)
    t_lief = time.perf_counter() - t_ps
    t_ps = time.perf_counter()
    proc.run([sys.executable, "-c", "pass"], timeout=60)
    t_py = time.perf_counter() - t_ps
    print(
        f"  python start-up alone: {t_py:.3f} s; 'import lief' alone: {t_lief - t_py:.3f} s "
        f"({'not imported by inspect' if res.ok else 'lief missing'})"
    )
    from builddoctor.smoke_model import ensure_probe_model

    ensure_probe_model()  # generated once per machine (cached): not part of a check's time
    for mode, label, goal in (
        ("builds-norun", "static only (--no-run)", 1.0),
        ("builds-run", "with --version/--list-devices", 1.0),
        ("builds-compute", "with the compute probe too", 3.0),
    ):
        wall, inside = fresh(mode, roots, opts.repeat)
        run, compute = mode != "builds-norun", mode == "builds-compute"
        w = warm(lambda run=run, compute=compute: inspect_paths(roots, run=run, compute=compute), opts.repeat)
        verdict = "OK" if wall < goal else "over goal"
        print(
            f"  {label:32s} fresh process {wall:.3f} s wall ({inside:.3f} s after start-up), "
            f"warm {w:.3f} s   [goal < {goal:.1f} s: {verdict}]"
        )

    with tempfile.TemporaryDirectory(prefix="bd-bench-") as tmp:
        lib = make_big_lib(Path(tmp))
        size = lib.stat().st_size
        # drop it from nothing: the file was just written, so it is in the page cache, as a
        # library on a machine in use is
        wall, inside = fresh("binary", [str(lib)], opts.repeat)
        w = warm(lambda: inspect_binary(lib), opts.repeat)
        bf = inspect_binary(lib)
        verdict = "OK" if inside < 0.3 else "over goal"
        print(
            f"one {size / 1e6:.0f} MB library: fresh process {wall:.3f} s wall ({inside:.3f} s after start-up), "
            f"warm {w * 1000:.1f} ms   [goal < 0.3 s: {verdict}]  (isa_level={bf.isa_level}, "
            f"backends={bf.backends})"
        )

    with tempfile.TemporaryDirectory(prefix="bd-bench-") as tmp:
        mod = make_big_module(Path(tmp), Path(roots[1]) / "bin" / "libggml-cpu.so")
        rss: list[float] = []
        wall, inside = fresh("binary", [str(mod)], opts.repeat, rss)
        bf = inspect_binary(mod)
        verdict = "OK" if inside < 1.0 and max(rss) < 300 else "over goal"
        print(
            f"one {mod.stat().st_size / 1e6:.0f} MB monolithic extension module (100,000 functions): fresh process "
            f"{wall:.3f} s wall ({inside:.3f} s after start-up), peak memory {max(rss):.0f} MB   "
            f"[goal < 1 s, < 300 MB: {verdict}]  (isa_level={bf.isa_level}, cuda_archs={bf.cuda_archs})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
