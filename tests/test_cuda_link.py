"""The merged toolkit (cuda_pip.py) links cuBLAS as ggml-cuda does, in a minute (slow tier, marker cuda).

A small CMake project with ggml-cuda's own calls (find_package(CUDAToolkit), CUDA::cudart and
CUDA::cublas, CMAKE_CUDA_ARCHITECTURES from the plan for a recorded GPU) is configured and built
against the toolkit that `build --cuda-from-pip` points CMake at; the library's fatbin and its
linked libraries are then read back. Skipped where nvcc is not installed. Without cuBLAS in the
system toolkit it downloads the pinned wheel (421 MB, into .cache/cuda-tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builddoctor import cuda_pip, proc
from builddoctor.inspect import inspect_binary
from builddoctor.probe import machine_profile
from builddoctor.resolve import resolve

pytestmark = [pytest.mark.slow, pytest.mark.cuda]

REPO = Path(__file__).resolve().parent.parent
GPU = Path(__file__).parent / "fixtures" / "nvidia-smi" / "rtx4090-driver580.xml"

CMAKELISTS = """cmake_minimum_required(VERSION 3.18)
project(bdcublas C CXX)
find_package(CUDAToolkit REQUIRED)
enable_language(CUDA)
add_library(bdcublas SHARED k.cu)
target_link_libraries(bdcublas PRIVATE CUDA::cudart CUDA::cublas)
"""
KERNEL = """#include <cublas_v2.h>
__global__ void scale(float *x, float a) { x[threadIdx.x] *= a; }
extern "C" int bd_handle(void) { cublasHandle_t h; return (int) cublasCreate(&h); }
extern "C" void bd_scale(float *x) { scale<<<1, 32>>>(x, 2.0f); }
"""


def test_the_plans_toolkit_links_cublas_for_the_recorded_gpu(tmp_path, monkeypatch):
    machine = machine_profile(nvidia_smi=GPU)
    if not machine.tool("nvcc").found:
        pytest.skip("nvcc is not installed")
    if shutil.which("cmake") is None or shutil.which("ninja") is None:
        pytest.skip("cmake and ninja are needed")
    if not machine.tool("cublas").found:
        monkeypatch.setenv(
            "BUILDDOCTOR_CACHE", os.environ.get("BUILDDOCTOR_CACHE", str(REPO / ".cache" / "cuda-tests"))
        )
        cuda_pip.use_for(machine)
    plan = resolve(machine, backend="cuda")
    opts = {o.name: o.value for o in plan.options}
    (tmp_path / "CMakeLists.txt").write_text(CMAKELISTS)
    (tmp_path / "k.cu").write_text(KERNEL)
    defs = [
        f"-D{k}={opts[k]}" for k in ("CMAKE_CUDA_ARCHITECTURES", "CMAKE_CUDA_COMPILER", "CUDAToolkit_ROOT") if k in opts
    ]
    env = proc.clean_env()
    conf = proc.run(["cmake", "-S", tmp_path, "-B", tmp_path / "b", "-G", "Ninja", *defs], timeout=300, env=env)
    assert conf.ok, conf.output[-3000:]
    made = proc.run(["cmake", "--build", tmp_path / "b"], timeout=600, env=env)
    assert made.ok, made.output[-3000:]
    lib = tmp_path / "b" / "libbdcublas.so"
    bf = inspect_binary(str(lib))
    assert bf.cuda_archs == ["sm_89"]
    assert any(n.startswith("libcublas.so.") for n in bf.needed) and any(
        n.startswith("libcudart.so.") for n in bf.needed
    )
    # the dynamic loader resolves cuBLAS where the plan's toolkit has it (the build's RPATH)
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, timeout=60)
    cublas = next(line for line in ldd.stdout.splitlines() if "libcublas.so" in line and "Lt" not in line)
    assert "not found" not in cublas
    if "CUDAToolkit_ROOT" in opts:
        assert opts["CUDAToolkit_ROOT"] in cublas or Path(cublas.split("=>")[1].split()[0]).resolve().is_file()
