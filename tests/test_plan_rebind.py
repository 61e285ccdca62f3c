"""A plan saved for a recorded GPU machine (`recipe --profile rtx4090-cuda12.json --save`) built on
this one: its tool paths become this machine's tools, and what the cuda recipe decides from the
building machine (cuBLAS, libcuda) and the recorded driver are graded again (resolve/rebind.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from builddoctor.cli import _register, cli
from builddoctor.profiles import BuildPlan, MachineProfile, ToolInfo
from builddoctor.resolve import recheck_prerequisites, resolve
from builddoctor.resolve.rebind import rebind_paths, regrade_cuda

FIX = Path(__file__).parent / "fixtures"
GPU_MACHINE = FIX / "machines" / "rtx4090-cuda12.json"  # nvcc 12.4 there, driver 550.78 (CUDA 12.4)


def gpu_plan() -> BuildPlan:
    return resolve(MachineProfile.from_json(GPU_MACHINE.read_text()), backend="cuda", host=False)


def builder(tmp_path: Path, *, cublas: bool = True) -> MachineProfile:
    """This build machine, with a CUDA 13.0 toolkit folder (nvcc, cuBLAS header) and no libcuda."""
    tk = tmp_path / "cuda-13.0"
    (tk / "bin").mkdir(parents=True)
    (tk / "include").mkdir()
    (tk / "bin" / "nvcc").write_text("")
    (tk / "include" / "cublas_v2.h").write_text("")
    m = MachineProfile.from_json((FIX / "machines" / "this-machine.json").read_text())
    m.toolchains["nvcc"] = ToolInfo("nvcc", True, str(tk / "bin" / "nvcc"), "13.0.88")
    m.toolchains["cublas"] = (
        ToolInfo("cublas", True, str(tk / "include" / "cublas_v2.h"), "13.0.2")
        if cublas
        else ToolInfo("cublas", False, detail=f"no cublas_v2.h and libcublas.so in {tk}")
    )
    m.toolchains["libcuda"] = ToolInfo("libcuda", False, detail=f"no lib/stubs/libcuda.so in {tk}")
    return m


def opts(plan: BuildPlan) -> dict[str, str]:
    return {o.name: o.value for o in plan.options}


def test_the_recorded_machines_tool_paths_become_this_machines(tmp_path):
    plan = gpu_plan()
    before = opts(plan)
    assert before["CMAKE_CUDA_COMPILER"] == "/usr/local/cuda-12.4/bin/nvcc"
    here = builder(tmp_path)
    lines = rebind_paths(plan, here)
    after = opts(plan)
    tk = tmp_path / "cuda-13.0"
    assert after["CMAKE_CUDA_COMPILER"] == str(tk / "bin" / "nvcc")
    assert after["CUDAToolkit_ROOT"] == str(tk)  # the recorded machine had no cuBLAS fact; here has one
    assert any("/usr/local/cuda-12.4/bin/nvcc is not on this machine" in line for line in lines)
    assert any(line.startswith("CUDAToolkit_ROOT: set to") for line in lines)
    # what is about the machine the build is for stays the plan's: its GPU's arch, its CPU's flags
    same = {k: v for k, v in before.items() if k not in ("CMAKE_CUDA_COMPILER", "CUDAToolkit_ROOT")}
    assert {k: after[k] for k in same} == same
    assert after["CMAKE_CUDA_ARCHITECTURES"] == "89-real"


def test_a_path_with_nothing_here_to_take_its_place_is_left_for_the_policy(tmp_path):
    plan = gpu_plan()
    here = builder(tmp_path)
    here.toolchains["nvcc"] = ToolInfo("nvcc", False)
    here.toolchains["cublas"] = ToolInfo("cublas", False)
    assert rebind_paths(plan, here) == []
    assert opts(plan)["CMAKE_CUDA_COMPILER"] == "/usr/local/cuda-12.4/bin/nvcc"


def test_a_plan_whose_paths_are_here_is_not_touched(tmp_path):
    here = builder(tmp_path)
    plan = resolve(here, backend="cpu")
    before = opts(plan)
    assert rebind_paths(plan, here) == []
    assert opts(plan) == before


def test_driver_cublas_and_libcuda_graded_again_for_this_builder(tmp_path):
    plan = gpu_plan()
    assert next(p for p in plan.prerequisites if p.name == "nvidia-driver").status == "found"  # 550 runs CUDA 12.4
    here = builder(tmp_path)
    rebind_paths(plan, here)
    recheck_prerequisites(plan, here)
    regrade_cuda(plan, here)
    drv = next(p for p in plan.prerequisites if p.name == "nvidia-driver")
    assert drv.status == "too-old"
    assert "550.78" in drv.reason and "CUDA 13.0" in drv.reason
    assert opts(plan).get("GGML_CUDA_NO_VMM") == "ON"  # no libcuda here to link the VMM calls against


def test_cublas_install_names_this_machines_cuda_version(tmp_path):
    plan = gpu_plan()
    here = builder(tmp_path, cublas=False)
    rebind_paths(plan, here)
    recheck_prerequisites(plan, here)
    regrade_cuda(plan, here)
    cublas = next(p for p in plan.prerequisites if p.name == "cublas")
    assert cublas.status == "missing"
    text = " ".join(cublas.install.values())
    assert "13-0" in text and "12-4" not in text
    assert "--cuda-from-pip" in text


def test_build_plan_dry_run_uses_this_machines_nvcc(tmp_path, monkeypatch):
    """The CLI: the saved plan is no longer refused for a path that is not here."""
    import shutil

    nvcc = shutil.which("nvcc")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(gpu_plan().to_dict()))
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BUILDDOCTOR_HOME", str(tmp_path / "home"))
    _register()
    done = CliRunner().invoke(cli, ["build", "--plan", str(plan_file), "--dry-run"])
    if nvcc is None:  # nothing here to take the recorded nvcc's place: refused, naming it
        assert done.exit_code != 0 and "/usr/local/cuda-12.4/bin/nvcc" in done.output
        return
    assert done.exit_code == 0, done.output
    assert "is not on this machine; using this machine's" in done.output
    assert "-DCMAKE_CUDA_COMPILER=/usr/local/cuda-12.4/bin/nvcc" not in done.output
