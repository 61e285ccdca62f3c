"""Time a real CUDA build of the pinned llama.cpp for a recorded GPU, on a machine without one.

    .venv/bin/python benchmarks/cuda_build.py --nvidia-smi tests/fixtures/nvidia-smi/rtx4090-driver550.xml \
        [--target llama-bench] [--cache-root DIR] [--ccache-dir DIR]

What `builddoctor build --backend cuda --nvidia-smi FILE --cuda-from-pip` does (cuBLAS from the pinned
PyPI wheel merged with this machine's nvcc, the recorded GPU's architecture only), but for the given
targets only (llama-bench is what the compute probe and `bench` run), then prints the wall time,
the fatbin's architectures and the sizes of what was built, with this machine's CPU model.
--cache-root: a fresh build cache (default: a temporary one, so nothing is answered from the
build cache); --ccache-dir: the ccache to use (empty for a cold build, the same again for warm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builddoctor import build, cuda_pip  # noqa: E402
from builddoctor.inspect import inspect_binary  # noqa: E402
from builddoctor.paths import vendor_dir  # noqa: E402
from builddoctor.probe import machine_profile  # noqa: E402
from builddoctor.probe.toolchain import cublas_fact  # noqa: E402
from builddoctor.render.progress import ProgressView  # noqa: E402
from builddoctor.resolve import resolve  # noqa: E402


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvidia-smi", type=Path, required=True)
    ap.add_argument("--target", action="append", default=None)
    ap.add_argument("--cache-root", type=Path)
    ap.add_argument("--ccache-dir", type=Path)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.ccache_dir:
        os.environ["CCACHE_DIR"] = str(args.ccache_dir)
        args.ccache_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_profile(nvidia_smi=args.nvidia_smi)
    nvcc = machine.tool("nvcc")
    tk = cuda_pip.ensure(nvcc.path, nvcc.version, say=print)
    machine.toolchains["cublas"] = cublas_fact(type(nvcc)(name="nvcc", found=True, path=tk.nvcc, version=nvcc.version))
    source = vendor_dir()
    plan = resolve(machine, backend="cuda", source=source)
    plan.targets = args.target or ["llama-bench"]
    opts = {o.name: o.value for o in plan.options}
    print("plan:", {k: v for k, v in opts.items() if "CUDA" in k}, "targets", plan.targets)
    cache_root = args.cache_root or Path(tempfile.mkdtemp(prefix="bd-cuda-build-"))
    t0 = time.monotonic()
    res = build.build(plan, source, cache_root=cache_root, progress=ProgressView(enabled=True))
    wall = time.monotonic() - t0
    print(f"status {res.status}, {wall:.0f} s wall (build's own figure {res.duration_s}), log {res.log_path}")
    if res.status not in ("ok", "cached"):
        print(res.error)
        return 1
    bin_dir = Path(res.build_dir) / "bin"
    sizes = {p.name: p.stat().st_size for p in sorted(bin_dir.iterdir()) if p.is_file() and not p.is_symlink()}
    cuda_lib = next((bin_dir / n for n in sizes if n.startswith("libggml-cuda.so")), None)
    archs = inspect_binary(str(cuda_lib)).cuda_archs if cuda_lib else None
    figures = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "wall_s": round(wall, 1),
        "status": res.status,
        "targets": plan.targets,
        "bin_dir": str(bin_dir),
        "sizes": sizes,
        "cuda_archs": archs,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
