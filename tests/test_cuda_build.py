"""A real CUDA build of the pinned llama.cpp for a recorded GPU, on a machine without one (slow: ggml-cuda is
about 170 nvcc compiles, an hour or more cold on 2 cores; minutes with ccache warm).

Runs only with BUILDDOCTOR_TEST_CUDA=1 (it does not fit .ci/run's budget cold) and where nvcc is
installed; cuBLAS comes from the system toolkit, or else from the pinned PyPI wheel (cuda_pip.py,
a 421 MB download into .cache/cuda-tests). The build cache is fresh (tmp_path), so nothing is
answered from an earlier build; ccache (CCACHE_DIR) may make it fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builddoctor import build, cuda_pip
from builddoctor.inspect import compute, inspect_binary
from builddoctor.probe import machine_profile
from builddoctor.resolve import resolve

REPO = Path(__file__).resolve().parent.parent
SMI = Path(__file__).parent / "fixtures" / "nvidia-smi"
GPU = SMI / "rtx4090-driver580.xml"  # Ada, compute capability 8.9, a driver for CUDA 13
OTHER = SMI / "2x-h100-sxm-driver570.xml"  # Hopper, 9.0: another generation

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cuda,
    pytest.mark.skipif(
        os.environ.get("BUILDDOCTOR_TEST_CUDA", "") in ("", "0"),
        reason="the real CUDA build (an hour cold on 2 cores): set BUILDDOCTOR_TEST_CUDA=1",
    ),
]


def bd(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", *map(str, args)], capture_output=True, text=True, timeout=900, cwd=REPO
    )


@pytest.fixture(scope="module")
def cuda_bin(tmp_path_factory) -> Path:
    from tests.llama_builds import _source_dir

    machine = machine_profile(nvidia_smi=GPU)
    if not machine.tool("nvcc").found:
        pytest.skip("nvcc is not installed")
    if not machine.tool("cublas").found:
        os.environ.setdefault("BUILDDOCTOR_CACHE", str(REPO / ".cache" / "cuda-tests"))
        cuda_pip.use_for(machine)
    plan = resolve(machine, backend="cuda", source=_source_dir())
    plan.targets = ["llama-bench"]  # what the compute probe and `bench` run; ggml-cuda comes with it
    assert not build.unmet_prerequisites(plan), [(p.name, p.status, p.reason) for p in plan.prerequisites]
    res = build.build(plan, _source_dir(), cache_root=tmp_path_factory.mktemp("cuda-builds"), timeout=4 * 3600)
    assert res.status == "ok", res.error
    print(f"CUDA build: {res.duration_s:.0f} s, {res.log_path}")
    return Path(res.build_dir) / "bin"


def cuda_lib(bin_dir: Path) -> Path:
    return next(p for p in sorted(bin_dir.iterdir()) if p.name.startswith("libggml-cuda.so") and not p.is_symlink())


def report(*args) -> dict:
    done = bd("check", "--json", *args)
    assert done.stdout, done.stderr
    return json.loads(done.stdout)["builds"][0]


def test_fatbin_holds_sass_for_exactly_the_recorded_gpu(cuda_bin):
    assert inspect_binary(str(cuda_lib(cuda_bin))).cuda_archs == ["sm_89"]


def test_check_against_the_gpu_it_was_built_for(cuda_bin):
    r = report("--nvidia-smi", GPU, cuda_bin)
    codes = {f["code"] for f in r["findings"]}
    assert "CUDA" in r["build"]["backends"] and r["build"]["cuda_archs"] == ["sm_89"]
    assert not codes & {"BD110", "BD111", "BD112", "BD120", "BD121", "BD122"}, r["findings"]
    assert not [f for f in r["findings"] if f["severity"] == "error"], r["findings"]
    gpu = next(f for f in r["findings"] if f["code"] == "ok:gpu")
    assert "CUDA backend (sm_89) for NVIDIA GeForce RTX 4090" in gpu["title"]


def test_compute_probe_without_a_driver_is_not_run(cuda_bin):
    """Here (no libcuda.so.1) the probe is not run and says what the build is for, as `build` verifies it."""
    from builddoctor.findings import diagnose

    if compute.device_not_here(["CUDA"]) is None:
        pytest.skip("this machine has an NVIDIA driver: the compute probe runs")
    d = diagnose(machine_profile(nvidia_smi=GPU), [cuda_bin], run=True)
    found = {f.code: f for f in d.builds[0].findings}
    assert found["BD113"].title == "no CUDA device here: built for NVIDIA GeForce RTX 4090 (sm_89), not run"
    assert not [f for f in found.values() if f.severity == "error"], list(found)
    live = report(cuda_bin)  # plain `check` here: no GPU in this machine's profile
    line = next(f for f in live["findings"] if f["code"] == "BD113")
    assert line["title"] == "no CUDA device here: built for sm_89, not run"
    assert not {"BD112", "BD193", "BD194", "BD195"} & {f["code"] for f in live["findings"]}, live["findings"]


def test_check_against_another_generation_reports_bd120_with_the_fix(cuda_bin):
    r = report("--nvidia-smi", OTHER, cuda_bin)
    bd120 = next(f for f in r["findings"] if f["code"] == "BD120")
    assert "H100" in bd120["title"] and "sm_89" in bd120["title"] and "9.0" in bd120["title"]
    assert "CMAKE_CUDA_ARCHITECTURES=90" in bd120["fix"] and "fix --rebuild" in bd120["fix"]


def test_check_against_an_old_driver_says_cuda_13_will_not_load(cuda_bin):
    r = report("--nvidia-smi", SMI / "rtx4090-driver550.xml", cuda_bin)
    bd111 = next(f for f in r["findings"] if f["code"] == "BD111")
    assert "CUDA 13" in bd111["title"] and "12.4" in bd111["title"]
