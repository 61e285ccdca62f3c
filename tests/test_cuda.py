"""CUDA planning without a GPU (fast tier, nothing compiled): the prerequisite messages, the plan for a
recorded GPU, the PyPI cuBLAS pieces (cuda_pip.py) and the compute probe's "not run" verdict.

Machines are recorded profiles (tests/fixtures/machines) with GPUs from recorded nvidia-smi outputs
(tests/fixtures/nvidia-smi); the toolchain facts a test varies are set on the profile, so nothing
here depends on what this host has installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from builddoctor import build, cuda_pip, errors
from builddoctor.probe.gpu import parse_nvidia_smi
from builddoctor.probe.toolchain import cublas_fact, find_cublas, libcuda_fact, toolkit_root
from builddoctor.profiles import MachineProfile, ToolInfo
from builddoctor.resolve import resolve

FIX = Path(__file__).parent / "fixtures"
SMI = FIX / "nvidia-smi"
NVCC13 = ToolInfo("nvcc", True, "/usr/local/cuda-13.0/bin/nvcc", "13.0.88")


def host_with(
    smi: str, *, nvcc: ToolInfo | None = NVCC13, cublas: bool | None = True, libcuda: bool = True
) -> MachineProfile:
    """The recorded build machine (nvcc 13, no GPU) planning for the GPU of a recorded nvidia-smi
    output, as `build --nvidia-smi FILE` does; ``cublas``: None leaves the fact out (an old profile)."""
    m = MachineProfile.from_json((FIX / "machines" / "this-machine.json").read_text())
    m.source = m.cpu.source = "live"
    m.gpus = parse_nvidia_smi((SMI / smi).read_text())
    m.toolchains.pop("nvcc", None)
    if nvcc is not None:
        m.toolchains["nvcc"] = nvcc
    if cublas is not None:
        m.toolchains["cublas"] = (
            ToolInfo("cublas", True, "/opt/tk/include/cublas_v2.h", "13.0.2")
            if cublas
            else ToolInfo("cublas", False, detail="no cublas_v2.h")
        )
    m.toolchains["libcuda"] = (
        ToolInfo("libcuda", True, "/opt/tk/lib64/stubs/libcuda.so")
        if libcuda
        else ToolInfo("libcuda", False, detail="no lib/stubs/libcuda.so in /opt/tk")
    )
    return m


def prereq(plan, name):
    return next(p for p in plan.prerequisites if p.name == name)


def opts(plan) -> dict[str, str]:
    return {o.name: o.value for o in plan.options}


# --------------------------------------------------------------------------- prerequisite messages


def test_missing_cublas_names_the_package_and_the_pip_wheels():
    plan = resolve(host_with("rtx4090-driver580.xml", cublas=False), backend="cuda")
    p = prereq(plan, "cublas")
    assert p.status == "missing" and not plan.ready
    pin = cuda_pip.choose("13.0.88").wheels[0]
    assert p.install["debian"].startswith("sudo apt install libcublas-dev-13-0")
    assert "builddoctor build --cuda-from-pip" in p.install["debian"]
    assert f"pip install {pin.package}=={pin.version}" in p.install["debian"]
    assert "-DCUDAToolkit_ROOT" in p.install["debian"]
    # the build refuses before configuring, naming it with that command
    unmet = build.unmet_prerequisites(plan)
    assert [u.name for u in unmet] == ["cublas"]
    assert "libcublas-dev-13-0" in build.prerequisite_hint(unmet[0])
    assert "CUDAToolkit_ROOT" not in opts(plan)  # no toolkit root to point at


def test_cublas_found_points_cmake_at_its_toolkit():
    plan = resolve(host_with("rtx4090-driver580.xml"), backend="cuda")
    assert prereq(plan, "cublas").status == "found"
    assert opts(plan)["CUDAToolkit_ROOT"] == "/opt/tk"


def test_profile_recorded_before_the_cublas_probe_is_unchecked_not_missing():
    plan = resolve(host_with("rtx4090-driver580.xml", cublas=None), backend="cuda")
    assert prereq(plan, "cublas").status == "unchecked"
    assert not build.unmet_prerequisites(plan)


def test_missing_nvcc_names_the_toolkit_install():
    plan = resolve(host_with("rtx4090-driver580.xml", nvcc=None), backend="cuda")
    p = prereq(plan, "nvcc")
    assert p.status == "missing"
    assert "apt install nvidia-cuda-toolkit" in p.install["debian"]
    assert "nvcc" in [u.name for u in build.unmet_prerequisites(plan)]
    assert "CMAKE_CUDA_COMPILER" not in opts(plan)


def test_nvcc_13_is_too_new_for_a_pascal_gpu():
    plan = resolve(host_with("gtx1080-driver535.csv"), backend="cuda")
    p = prereq(plan, "nvcc")
    assert p.status == "too-new" and p.max_version == "13.0"
    assert "cannot build for compute capability 6.1" in p.reason and "dropped GPUs below 7.5" in p.reason
    assert "Install a CUDA 12 toolkit" in p.reason
    hint = build.prerequisite_hint(p)
    assert "13.0.88 found, needs below 13.0" in hint
    assert "CMAKE_CUDA_COMPILER" not in opts(plan)  # it would name the CUDA 13 nvcc


def test_driver_550_is_too_old_for_a_cuda_13_build():
    plan = resolve(host_with("rtx4090-driver550.xml"), backend="cuda")
    d = prereq(plan, "nvidia-driver")
    assert d.status == "too-old" and d.found_version == "550.54.14" and d.min_version == "580.65.06"
    assert "supports CUDA up to 12.4" in d.reason and "CUDA 13.x" in d.reason
    # compiling needs no driver: the build itself is not refused for it
    assert "nvidia-driver" not in [u.name for u in build.unmet_prerequisites(plan)]
    ok = resolve(host_with("rtx4090-driver580.xml"), backend="cuda")
    assert prereq(ok, "nvidia-driver").status == "found"


# --------------------------------------------------------------------------- the plan for a recorded GPU


@pytest.mark.parametrize(
    "smi, archs",
    [
        ("rtx4090-driver580.xml", "89-real"),
        ("2x-h100-sxm-driver570.xml", "90-real"),
        ("2x-l4-noheader-nounits.csv", "89-real"),
    ],
)
def test_plan_builds_sass_for_exactly_the_recorded_gpu(smi, archs):
    plan = resolve(host_with(smi), backend="cuda")
    o = opts(plan)
    assert o["GGML_CUDA"] == "ON" and o["CMAKE_CUDA_ARCHITECTURES"] == archs
    # no PTX: the recipe gives no reason for one (real code for the GPU, nothing to JIT)
    assert "virtual" not in o["CMAKE_CUDA_ARCHITECTURES"]
    # the FA KV types are the recipe's, and the all-pairs switch stays off
    assert o["GGML_CUDA_FA"] == "ON"
    assert o["GGML_CUDA_FA_QUANTS"] == "q4_0-q4_0;q8_0-q8_0;f16-f16;bf16-bf16"
    assert o.get("GGML_CUDA_FA_ALL_QUANTS", "OFF") == "OFF"
    assert "GGML_CUDA_NO_VMM" not in o  # the toolkit has a libcuda.so to link


def test_toolkit_without_libcuda_builds_without_vmm():
    plan = resolve(host_with("rtx4090-driver580.xml", libcuda=False), backend="cuda")
    o = next(o for o in plan.options if o.name == "GGML_CUDA_NO_VMM")
    assert o.value == "ON" and "no lib/stubs/libcuda.so in /opt/tk" in o.reason


def test_jobs_are_sized_for_nvcc_memory():
    cuda = resolve(host_with("rtx4090-driver580.xml"), backend="cuda")
    cpu = resolve(host_with("rtx4090-driver580.xml"), backend="cpu")
    per_job = build.data()["jobs"]
    mem = 10 * 1024**3
    assert build.choose_jobs(cuda, cores=16, mem_available=mem) == mem // (per_job["cuda_job_mib"] << 20)
    assert build.choose_jobs(cpu, cores=16, mem_available=mem) == min(16, mem // (per_job["cxx_job_mib"] << 20))
    assert build.choose_jobs(cuda, cores=16, mem_available=mem) < build.choose_jobs(cpu, cores=16, mem_available=mem)


# --------------------------------------------------------------------------- PyPI cuBLAS (cuda_pip.py)


def test_pinned_sets_are_complete():
    sets = cuda_pip.load_sets()
    assert sets
    for s in sets:
        for w in s.wheels:
            assert len(w.sha256) == 64 and w.file.startswith(w.package.replace("-", "_") + "-" + w.version + "-")
            assert any(p.startswith("include/") for p in w.provides) and any(p.startswith("lib/") for p in w.provides)


def test_the_set_follows_nvcc_major_and_never_a_newer_minor():
    sets = [
        cuda_pip.WheelSet("13.0", "nvidia/cu13", []),
        cuda_pip.WheelSet("13.2", "nvidia/cu13", []),
        cuda_pip.WheelSet("12.8", "nvidia/cu12", []),
    ]
    assert cuda_pip.choose("13.0.88", sets).cuda == "13.0"
    assert cuda_pip.choose("13.1.5", sets).cuda == "13.0"
    assert cuda_pip.choose("13.5", sets).cuda == "13.2"
    assert cuda_pip.choose("12.9", sets).cuda == "12.8"
    assert cuda_pip.choose("12.4", sets) is None and cuda_pip.choose("11.8", sets) is None
    assert cuda_pip.choose(None, sets) is None and cuda_pip.choose("garbage", sets) is None


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(path: Path, files: dict[str, bytes], *, lie: str | None = None) -> str:
    """A wheel in the nvidia-cublas layout (and RECORD); ``lie``: a file whose RECORD hash is wrong."""
    record = []
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
            record.append(f"{name},{_record_hash(b'other' if name == lie else data)},{len(data)}")
        rec = "nvidia_cublas-13.0.2.14.dist-info/RECORD"
        z.writestr(rec, "\n".join(record + [f"{rec},,"]) + "\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()


WHEEL_FILES = {
    "nvidia/cu13/include/cublas_v2.h": b'#include "cublas_api.h"\n',
    "nvidia/cu13/include/cublas_api.h": b"#define CUBLAS_VER_MAJOR 13\n#define CUBLAS_VER_MINOR 0\n"
    b"#define CUBLAS_VER_PATCH 2\n",
    "nvidia/cu13/lib/libcublas.so.13": b"\x7fELF fake",
    "nvidia/cu13/lib/libcublasLt.so.13": b"\x7fELF",
}


@pytest.fixture
def pinned(tmp_path, monkeypatch):
    """A cache, a system toolkit (bin/nvcc, include/, lib/, no cuBLAS) and a data file pinning a
    wheel made here; returns (toolkit, wheel dir, write_wheel)."""
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path / "cache"))
    tk = tmp_path / "cuda-13.0"
    (tk / "bin").mkdir(parents=True)
    (tk / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (tk / "bin" / "nvcc").chmod(0o755)
    (tk / "include").mkdir()
    (tk / "include" / "cuda_runtime.h").write_text("/* cudart */\n")
    (tk / "lib").mkdir()
    (tk / "lib" / "libcudart.so.13").write_bytes(b"\x7fELF")
    (tk / "nvvm").mkdir()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    name = "nvidia_cublas-13.0.2.14-py3-none-manylinux_2_27_x86_64.whl"

    def write_wheel(files=WHEEL_FILES, lie=None):
        digest = make_wheel(wheels / name, files, lie=lie)
        data = tmp_path / "cuda_pip.toml"
        data.write_text(
            f'[[set]]\ncuda = "13.0"\nprefix = "nvidia/cu13"\n[[set.wheel]]\npackage = "nvidia-cublas"\n'
            f'version = "13.0.2.14"\nfile = "{name}"\nsha256 = "{digest}"\n'
            'provides = ["include/cublas_v2.h", "lib/libcublas.so.13"]\n'
        )
        monkeypatch.setattr(cuda_pip, "DATA_FILE", data)
        return digest

    return tk, wheels, write_wheel


def test_merged_toolkit_holds_cudart_and_cublas(pinned):
    tk, wheels, write_wheel = pinned
    write_wheel()
    said = []
    assert cuda_pip.existing(str(tk / "bin" / "nvcc"), "13.0.88") is None  # a dry run finds none yet
    t = cuda_pip.ensure(str(tk / "bin" / "nvcc"), "13.0.88", wheel_dir=wheels, say=said.append)
    assert cuda_pip.existing(str(tk / "bin" / "nvcc"), "13.0.88") == t
    root = Path(t.root)
    assert root.is_relative_to(cuda_pip.cache_root()) and t.system_root == str(tk)
    assert (root / "include" / "cuda_runtime.h").read_text() == "/* cudart */\n"
    assert (root / "include" / "cublas_v2.h").is_file()
    assert (root / "lib" / "libcublas.so").resolve().name == "libcublas.so.13"  # what find_library wants
    assert (root / "lib64" / "libcudart.so.13").is_file()
    assert (root / "targets" / "x86_64-linux" / "include" / "cublas_v2.h").is_file()
    assert (root / "bin" / "nvcc").resolve() == (tk / "bin" / "nvcc").resolve()
    assert find_cublas(root) is not None and find_cublas(tk) is None
    # the probe reads the merged toolkit as one with cuBLAS, with its version from cublas_api.h
    fact = cublas_fact(ToolInfo("nvcc", True, t.nvcc, "13.0.88"))
    assert fact.found and fact.version == "13.0.2" and Path(fact.path).parent.parent == root
    assert (
        not libcuda_fact(ToolInfo("nvcc", True, t.nvcc, "13.0.88")).found
        or Path("/usr/lib/x86_64-linux-gnu/libcuda.so").exists()
    )
    # nothing outside the cache was written, and a second call reuses the tree
    assert sorted(p.name for p in tk.rglob("*")) == sorted(
        ["bin", "nvcc", "include", "cuda_runtime.h", "lib", "libcudart.so.13", "nvvm"]
    )
    said.clear()
    assert cuda_pip.ensure(str(tk / "bin" / "nvcc"), "13.0.88", wheel_dir=wheels, say=said.append) == t
    assert said and said[0].startswith("using the CUDA toolkit merged")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(pinned):
    tk, wheels, write_wheel = pinned
    write_wheel()
    (wheels / next(wheels.iterdir()).name).write_bytes(b"PK not the pinned wheel")
    with pytest.raises(errors.SourceError, match="sha256"):
        cuda_pip.ensure(str(tk / "bin" / "nvcc"), "13.0.88", wheel_dir=wheels)
    assert not list(cuda_pip.cache_root().glob("cuda13.0-*"))


def test_a_file_that_does_not_match_the_wheels_record_is_refused(pinned):
    tk, wheels, write_wheel = pinned
    write_wheel(lie="nvidia/cu13/lib/libcublas.so.13")
    with pytest.raises(errors.SourceError, match="RECORD"):
        cuda_pip.ensure(str(tk / "bin" / "nvcc"), "13.0.88", wheel_dir=wheels)
    assert not list((cuda_pip.cache_root() / "wheels").glob("nvidia_cublas*")) or not any(
        (p / cuda_pip.MARKER).exists() for p in (cuda_pip.cache_root() / "wheels").iterdir()
    )


def test_a_wheel_without_what_it_should_provide_is_refused(pinned):
    tk, wheels, write_wheel = pinned
    write_wheel(files={k: v for k, v in WHEEL_FILES.items() if "libcublas.so" not in k})
    with pytest.raises(errors.SourceError, match="lacks lib/libcublas.so.13"):
        cuda_pip.ensure(str(tk / "bin" / "nvcc"), "13.0.88", wheel_dir=wheels)


def test_no_pinned_set_for_this_nvcc_is_a_user_error(pinned):
    tk, wheels, write_wheel = pinned
    write_wheel()
    with pytest.raises(errors.UserError, match="no pinned PyPI CUDA wheels for nvcc 12.4"):
        cuda_pip.ensure(str(tk / "bin" / "nvcc"), "12.4.131", wheel_dir=wheels)


# --------------------------------------------------------------------------- the compute probe


def test_cuda_build_without_a_driver_is_not_run(monkeypatch, tmp_path):
    from builddoctor.inspect import compute

    monkeypatch.setenv("LD_LIBRARY_PATH", "")
    row = next(r for r in compute.table()["not_here"] if r["backend"] == "CUDA")
    here = any(Path(d, lib).exists() for d in row["dirs"] for lib in row["driver_libs"])
    got = compute.device_not_here(["CPU", "CUDA"])
    assert (got is None) == here
    assert compute.device_not_here(["CPU"]) is None
    if not here:
        assert got["why"] == "no CUDA device here: libcuda.so.1 (the NVIDIA driver's library) is not on this machine"
        assert compute.device_not_here(names=["llama-bench", "libggml-cuda.so"]) is not None
        res = compute.not_run(got)
        assert res.kind == "not-run" and not res.ok and json.loads(res.to_json())["backend"] == "CUDA"
    # a driver library on LD_LIBRARY_PATH counts as a driver here
    (tmp_path / "libcuda.so.1").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert compute.device_not_here(["CUDA"]) is None


def test_eta_weighs_the_nvcc_steps_left(tmp_path):
    """10 C++ steps done in 9 s with 10 nvcc steps left: a per-step ETA would say 9 s; the nvcc steps
    weigh cuda_step_weight C++ steps each (data/build.toml), so the ETA is that many times longer."""
    edges = [
        f"build ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/f{i}.cu.o: CUDA_COMPILER__ggml-cuda_unscanned_Release"
        for i in range(10)
    ]
    edges += [
        f"build ggml/src/CMakeFiles/ggml-base.dir/g{i}.cpp.o: CXX_COMPILER__ggml-base_unscanned_Release"
        for i in range(10)
    ]
    (tmp_path / "build.ninja").write_text("\n".join(edges) + "\n")
    w = build.data()["progress"]["cuda_step_weight"]
    eta = build._EtaWeights(tmp_path)
    assert eta.cuda_total == 10
    left = None
    for i in range(1, 11):
        left = eta.left(i, 20, f"Building CXX object ggml/src/CMakeFiles/ggml-base.dir/g{i}.cpp.o", float(i - 1))
    assert left == pytest.approx(10 * w)
    # once nvcc steps finish, they count at their weight
    left = eta.left(
        11, 20, "Building CUDA object ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/f0.cu.o", 9.0 + w
    )  # 1 s a unit, as before
    assert left == pytest.approx(9 * w)


def test_a_cuda_build_gets_time_for_each_nvcc_step(tmp_path):
    """The default time limit of a CUDA build grows with its nvcc steps (data/build.toml): a cold
    ggml-cuda build on 2 cores ran past the flat hour at step 250 of 285 and lost the work."""
    from builddoctor.build.cmake_run import compile_limit

    edges = [
        f"build ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/f{i}.cu.o: CUDA_COMPILER__ggml-cuda_x" for i in range(7)
    ]
    (tmp_path / "build.ninja").write_text("\n".join(edges) + "\n")
    cuda = resolve(host_with("rtx4090-driver580.xml"), backend="cuda")
    cpu = resolve(host_with("rtx4090-driver580.xml"), backend="cpu")
    per_step = build.data()["progress"]["cuda_step_limit_s"]
    assert per_step > 0
    assert compile_limit(cpu, tmp_path) == build.BUILD_TIMEOUT
    assert compile_limit(cuda, tmp_path) == build.BUILD_TIMEOUT + 7 * per_step


def test_pip_install_plans_cuda_for_a_recorded_gpu(tmp_path, monkeypatch, capsys):
    """What `BUILDDOCTOR_BACKEND=cuda BUILDDOCTOR_NVIDIA_SMI=FILE pip install .` plans on this host: the
    recorded GPU's architecture, or (a toolkit piece missing here) a refusal that names it and its install."""
    from builddoctor import _buildplan
    from builddoctor.probe import machine_profile

    smi = SMI / "rtx4090-driver580.xml"
    monkeypatch.setenv("BUILDDOCTOR_NVIDIA_SMI", str(smi))
    monkeypatch.delenv("BUILDDOCTOR_CUDA_FROM_PIP", raising=False)
    out = tmp_path / "plan.cmake"
    rc = _buildplan.main(
        [
            "--backend",
            "cuda",
            "--out",
            str(out),
            "--json",
            str(tmp_path / "plan.json"),
            "--info",
            str(tmp_path / "bundle.json"),
        ]
    )
    said = capsys.readouterr()
    here = machine_profile()
    if not here.tool("nvcc").found:
        assert rc != 0 and "nvcc is missing" in said.err + said.out
    elif not here.tool("cublas").found:
        assert rc != 0 and "cublas is missing" in said.err + said.out
        assert "--cuda-from-pip" in said.err + said.out and "libcublas-dev-" in said.err + said.out
    else:
        assert rc == 0
        text = out.read_text()
        assert "set(CMAKE_CUDA_ARCHITECTURES [=[89-real]=]" in text and "NVIDIA GeForce RTX 4090" in text


def test_a_wrapper_script_nvcc_is_traced_to_its_toolkit(pinned, tmp_path):
    """/usr/local/bin/nvcc can be a two-line `exec .../cuda-13.0/bin/nvcc "$@"`: the toolkit is where nvcc
    itself says it runs from (its --dryrun TOP), not the folder above the script."""
    tk, wheels, write_wheel = pinned
    (tk / "bin" / "nvcc").write_text(f'#!/bin/sh\necho "#$ TOP={tk}/bin/.." >&2\n')
    wrapper = tmp_path / "usr-local" / "bin" / "nvcc"
    wrapper.parent.mkdir(parents=True)
    (tmp_path / "usr-local" / "include").mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {tk}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    assert toolkit_root(str(wrapper)) == tk.resolve()
    assert toolkit_root(str(tk / "bin" / "nvcc")) == tk.resolve()
    fact = cublas_fact(ToolInfo("nvcc", True, str(wrapper), "13.0.88"))
    assert not fact.found and str(tk.resolve()) in fact.detail
    write_wheel()
    t = cuda_pip.ensure(str(wrapper), "13.0.88", wheel_dir=wheels)
    assert t.system_root == str(tk.resolve()) and (Path(t.root) / "include" / "cuda_runtime.h").is_file()


def test_cuda_from_pip_without_nvcc_says_to_install_the_toolkit():
    m = host_with("rtx4090-driver580.xml", nvcc=None)
    with pytest.raises(errors.UserError, match="no nvcc was found") as exc:
        cuda_pip.use_for(m)
    assert exc.value.exit_code == errors.TOOLCHAIN
    assert m.tool("cublas").found  # the profile is left as it was


def test_cuda_from_pip_records_the_merged_cublas_in_the_profile(pinned):
    tk, wheels, write_wheel = pinned
    write_wheel()
    # the wheel is taken from the download cache (as after an earlier download), sha256-checked there
    downloads = cuda_pip.paths.cache_dir() / "downloads"
    downloads.mkdir(parents=True)
    for w in wheels.iterdir():
        (downloads / w.name).write_bytes(w.read_bytes())
    m = host_with(
        "rtx4090-driver580.xml", nvcc=ToolInfo("nvcc", True, str(tk / "bin" / "nvcc"), "13.0.88"), cublas=False
    )
    t = cuda_pip.use_for(m)
    assert m.tool("cublas").found and Path(m.tool("cublas").path).parent.parent == Path(t.root)
    plan = resolve(m, backend="cuda")
    assert opts(plan)["CUDAToolkit_ROOT"] == t.root and prereq(plan, "cublas").status == "found"
    assert opts(plan)["CMAKE_CUDA_COMPILER"] == str(tk / "bin" / "nvcc")  # the system nvcc compiles


def test_a_pinned_file_that_is_no_zip_is_refused_not_a_crash(pinned):
    tk, wheels, write_wheel = pinned
    write_wheel()
    whl = next(wheels.iterdir())
    whl.write_bytes(b"not a zip at all")
    data = cuda_pip.DATA_FILE
    text = data.read_text()
    data.write_text(
        text.replace(text.split('sha256 = "')[1].split('"')[0], hashlib.sha256(whl.read_bytes()).hexdigest())
    )
    with pytest.raises(errors.SourceError, match="not a readable wheel"):
        cuda_pip.ensure(str(tk / "bin" / "nvcc"), "13.0.88", wheel_dir=wheels)
