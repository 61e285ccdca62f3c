"""The resolver on twelve realistic machines: the options, why, the prerequisites and what was skipped."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from builddoctor import errors
from builddoctor.llama_options import isa_table
from builddoctor.profiles import BuildPlan, GpuProfile, MachineProfile, ToolInfo
from builddoctor.recipes import load_recipes
from builddoctor.resolve import resolve

MACHINES = Path(__file__).parent / "fixtures" / "machines"


def recorded(name: str) -> MachineProfile:
    """A machine profile as a file from elsewhere: the plan is for it, built on another machine."""
    return MachineProfile.from_json((MACHINES / f"{name}.json").read_text())


def machine(name: str) -> MachineProfile:
    """The same machine probing itself (what `builddoctor recipe` or `pip install .` there plans)."""
    m = recorded(name)
    m.source = m.cpu.source = "live"
    return m


def opts(plan: BuildPlan) -> dict[str, str]:
    return {o.name: o.value for o in plan.options}


def reason(plan: BuildPlan, name: str) -> str:
    return next(o.reason for o in plan.options if o.name == name)


def prereq(plan: BuildPlan, name: str):
    return next(p for p in plan.prerequisites if p.name.startswith(name))


def skipped(plan: BuildPlan, what: str) -> str:
    return next(s.reason for s in plan.skipped if s.what == what)


ALWAYS = {
    "CMAKE_BUILD_TYPE": "Release",
    "LLAMA_BUILD_TESTS": "OFF",
    "LLAMA_BUILD_EXAMPLES": "OFF",
    "LLAMA_OPENSSL": "OFF",
    "LLAMA_USE_PREBUILT_UI": "OFF",
    "LLAMA_BUILD_UI": "OFF",
    "GGML_OPENMP_FETCH": "OFF",
}

# machine -> (backend, expected options, {option: words its reason must contain}, {skipped: words})
CASES = {
    # Linux + RTX 4090 + CUDA 12.4: CUDA for Ada (sm_89), native Zen 4 CPU code, OpenMP from GCC.
    "rtx4090-cuda12": (
        "cuda",
        {
            "GGML_CUDA": "ON",
            "CMAKE_CUDA_ARCHITECTURES": "89-real",
            "GGML_CUDA_FA": "ON",
            "GGML_NATIVE": "ON",
            "GGML_OPENMP": "ON",
            "CMAKE_CUDA_COMPILER": "/usr/local/cuda-12.4/bin/nvcc",
        },
        {
            "CMAKE_CUDA_ARCHITECTURES": ["RTX 4090", "8.9", "sm_89"],
            "GGML_NATIVE": ["zen4", "AVX-512"],
            "GGML_OPENMP": ["libgomp"],
            "GGML_CUDA_FA": ["FlashAttention"],
        },
        {"Vulkan": ["CUDA is faster", "RTX 4090"]},
    ),
    # 8x H100 with CUDA 12.8: Hopper sm_90 once, Sapphire Rapids host with AMX: the pinned llama.cpp's
    # AMX kernels crash (known-bad row), so the CPU code is spelled out without AMX.
    "h100-cuda128": (
        "cuda",
        {
            "GGML_CUDA": "ON",
            "CMAKE_CUDA_ARCHITECTURES": "90-real",
            "GGML_NATIVE": "OFF",
            "GGML_AVX512": "ON",
            "GGML_AVX512_VNNI": "ON",
            "GGML_AMX_INT8": "OFF",
            "GGML_AMX_TILE": "OFF",
        },
        {
            "CMAKE_CUDA_ARCHITECTURES": ["H100", "9.0"],
            "GGML_CUDA": ["H100 80GB HBM3 x8"],
            "GGML_NATIVE": ["AMX", "known-bad"],
            "GGML_AMX_INT8": ["amx-mul-mat-crash", "#20824"],
        },
        {"ROCm/HIP": ["no AMD GPU"]},
    ),
    # GTX 1080 (Pascal, 6.1) with CUDA 12.2: still buildable with CUDA 12.
    "gtx1080-cuda12": (
        "cuda",
        {"GGML_CUDA": "ON", "CMAKE_CUDA_ARCHITECTURES": "61-real", "GGML_NATIVE": "ON"},
        {"CMAKE_CUDA_ARCHITECTURES": ["GTX 1080", "6.1"], "GGML_NATIVE": ["AVX2"]},
        {"Vulkan": ["CUDA is faster"]},
    ),
    # Laptop RTX 3060 with a 470 driver (CUDA 11.4) and CUDA 12.3 installed: plan CUDA, driver too old.
    "laptop-rtx-old-driver": (
        "cuda",
        {"GGML_CUDA": "ON", "CMAKE_CUDA_ARCHITECTURES": "86-real"},
        {"CMAKE_CUDA_ARCHITECTURES": ["8.6"]},
        {"Vulkan": ["CUDA is faster"], "SYCL": ["SYCL"]},
    ),
    # RX 7900 XTX with ROCm 6.2: HIP for gfx1100, clang from that ROCm.
    "rx7900xtx-rocm": (
        "hip",
        {"GGML_HIP": "ON", "GPU_TARGETS": "gfx1100", "GGML_NATIVE": "ON", "GGML_OPENMP": "ON"},
        {"GPU_TARGETS": ["gfx1100"], "GGML_HIP": ["RX 7900 XTX"]},
        {"Vulkan": ["ROCm/HIP is faster"], "CUDA": ["no NVIDIA GPU"]},
    ),
    # Intel Arc A770 with oneAPI 2025: SYCL with icx/icpx and FP16.
    "intel-arc-oneapi": (
        "sycl",
        {
            "GGML_SYCL": "ON",
            "CMAKE_C_COMPILER": "icx",
            "CMAKE_CXX_COMPILER": "icpx",
            "GGML_SYCL_F16": "ON",
            "GGML_NATIVE": "ON",
        },
        {"GGML_SYCL": ["Arc"], "CMAKE_CXX_COMPILER": ["DPC++"], "GGML_NATIVE": ["AVX-VNNI"]},
        {"Vulkan": ["SYCL"]},
    ),
    # M2 Pro: Metal with the embedded library, Accelerate, no OpenMP with Apple clang.
    "mac-m2-pro": (
        "metal",
        {
            "GGML_METAL": "ON",
            "GGML_METAL_EMBED_LIBRARY": "ON",
            "GGML_BLAS": "ON",
            "GGML_BLAS_VENDOR": "Apple",
            "GGML_OPENMP": "OFF",
            "GGML_NATIVE": "ON",
        },
        {
            "GGML_METAL_EMBED_LIBRARY": ["embed"],
            "GGML_OPENMP": ["Apple clang"],
            "GGML_BLAS": ["Accelerate"],
            "GGML_NATIVE": ["DOTPROD", "I8MM"],
        },
        {"CUDA": ["no NVIDIA GPU"]},
    ),
    # Intel Mac: llama.cpp turns Metal on by default on macOS; the plan turns it off and says why.
    "mac-intel": (
        "cpu",
        {"GGML_METAL": "OFF", "GGML_NATIVE": "ON", "GGML_OPENMP": "OFF", "GGML_BLAS_VENDOR": "Apple"},
        {"GGML_METAL": ["default", "Apple Silicon"], "GGML_NATIVE": ["AVX2"]},
        {"Metal": ["Intel Mac"], "ROCm/HIP": ["macOS"]},
    ),
    # Zen 3 desktop, no GPU: native AVX2 CPU build.
    "zen3-desktop": (
        "cpu",
        {"GGML_NATIVE": "ON", "GGML_OPENMP": "ON"},
        {"GGML_NATIVE": ["zen3", "AVX2"]},
        {"CUDA": ["no NVIDIA GPU"], "Vulkan": ["no GPU"]},
    ),
    # Sapphire Rapids server: AVX-512 with VNNI/BF16/VBMI spelled out, AMX left out (known-bad row).
    "sapphire-rapids-server": (
        "cpu",
        {
            "GGML_NATIVE": "OFF",
            "GGML_OPENMP": "ON",
            "GGML_AVX512": "ON",
            "GGML_AVX512_BF16": "ON",
            "GGML_AVX512_VBMI": "ON",
            "GGML_AVX_VNNI": "ON",
            "GGML_AMX_INT8": "OFF",
            "GGML_AMX_BF16": "OFF",
        },
        {"GGML_NATIVE": ["AMX_INT8", "known-bad"], "GGML_AMX_INT8": ["0.5.0-dev"]},
        {"CUDA": ["no NVIDIA GPU"]},
    ),
    # Raspberry Pi 5: native ARM build (DOTPROD, FP16); its V3D Vulkan GPU is never chosen on its own.
    "raspberry-pi-5": (
        "cpu",
        {"GGML_NATIVE": "ON", "GGML_OPENMP": "ON"},
        {"GGML_NATIVE": ["Cortex-A76", "DOTPROD", "-mcpu=native"]},
        {"Vulkan": ["V3D", "slower"]},
    ),
    # This machine (FACTS.md): Zen 4 with AVX-512, nvcc 13 but no GPU or driver.
    "this-machine": (
        "cpu",
        {"GGML_NATIVE": "ON", "GGML_OPENMP": "ON"},
        {"GGML_NATIVE": ["zen4", "AVX-512"], "GGML_OPENMP": ["GCC"]},
        {"CUDA": ["no NVIDIA GPU or driver", "nvcc 13.0", "/usr/local/cuda-13.0/bin/nvcc"]},
    ),
}


def test_twelve_machines():
    assert len(list(MACHINES.glob("*.json"))) >= 12
    assert set(CASES) <= {p.stem for p in MACHINES.glob("*.json")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan(name):
    backend, expected, why, skip = CASES[name]
    plan = resolve(machine(name))
    got = opts(plan)
    assert plan.backend == backend
    for k, v in {**ALWAYS, **expected}.items():
        assert got.get(k) == v, f"{name}: {k}={got.get(k)}, expected {v}"
    for k, words in why.items():
        for w in words:
            assert w in reason(plan, k), f"{name}: reason for {k} lacks {w!r}: {reason(plan, k)}"
    for what, words in skip.items():
        for w in words:
            assert w in skipped(plan, what), f"{name}: skip reason for {what} lacks {w!r}"
    assert backend not in [s.what.lower() for s in plan.skipped]
    assert plan.targets == ["llama-cli", "llama-server", "llama-bench", "llama-quantize"]
    assert all(o.reason and o.recipe for o in plan.options)
    # the plan is the builder's input: it survives JSON unchanged
    assert BuildPlan.from_json(plan.to_json()) == plan


def test_cpu_machines_have_no_gpu_options():
    for name in ("zen3-desktop", "sapphire-rapids-server", "raspberry-pi-5", "this-machine"):
        got = opts(resolve(machine(name)))
        assert not any(k in got for k in ("GGML_CUDA", "GGML_HIP", "GGML_VULKAN", "GGML_SYCL", "GGML_METAL"))


def test_ready_machines():
    for name in (
        "rtx4090-cuda12",
        "h100-cuda128",
        "gtx1080-cuda12",
        "rx7900xtx-rocm",
        "intel-arc-oneapi",
        "mac-m2-pro",
        "zen3-desktop",
        "this-machine",
    ):
        plan = resolve(machine(name))
        assert plan.ready, (name, [(p.name, p.status) for p in plan.prerequisites])


def test_install_commands_follow_the_distro():
    plan = resolve(machine("laptop-rtx-old-driver"))  # Fedora
    assert set(prereq(plan, "cmake").install) == {"fedora"}
    assert set(prereq(resolve(machine("zen3-desktop")), "cmake").install) == {"arch"}
    assert set(prereq(resolve(machine("mac-m2-pro")), "cmake").install) == {"macos"}
    assert set(prereq(resolve(machine("sapphire-rapids-server")), "cmake").install) == {"fedora"}  # Rocky


def test_old_driver_is_too_old_with_a_reason():
    plan = resolve(machine("laptop-rtx-old-driver"))
    drv = prereq(plan, "nvidia-driver")
    assert drv.status == "too-old"
    assert drv.found_version == "470.256.02" and drv.min_version == "525.60.13"
    assert "11.4" in drv.reason and "CUDA 12" in drv.reason
    assert not plan.ready


def test_pascal_with_only_cuda13_needs_cuda12():
    m = machine("gtx1080-cuda12")
    m.toolchains["nvcc"] = ToolInfo("nvcc", True, "/usr/local/cuda-13.0/bin/nvcc", "13.0.88")
    m.gpus[0].driver_version, m.gpus[0].cuda_version = "580.82.07", "13.0"
    plan = resolve(m)
    nvcc = prereq(plan, "nvcc")
    assert nvcc.status == "too-new" and nvcc.max_version == "13.0"
    assert "6.1" in nvcc.reason and "CUDA 12" in nvcc.reason
    assert any("CUDA 12 toolkit is required" in n for n in plan.notes)
    assert "CMAKE_CUDA_COMPILER" not in opts(plan)  # it would point at the CUDA 13 nvcc
    assert opts(plan)["CMAKE_CUDA_ARCHITECTURES"] == "61-real"
    assert not plan.ready


def test_blackwell_needs_cuda_12_8():
    m = machine("rtx4090-cuda12")
    m.gpus[0] = GpuProfile(
        "nvidia",
        "NVIDIA GeForce RTX 5090",
        32607,
        "12.0",
        driver_version="575.57.08",
        cuda_version="12.9",
        apis=["cuda", "vulkan"],
    )
    plan = resolve(m)
    assert opts(plan)["CMAKE_CUDA_ARCHITECTURES"] == "120-real"
    nvcc = prereq(plan, "nvcc")
    assert nvcc.status == "too-old" and nvcc.min_version == "12.8"
    assert "RTX 5090" in nvcc.reason


def test_driver_older_minor_than_toolkit_is_a_note():
    m = machine("gtx1080-cuda12")
    m.toolchains["nvcc"] = ToolInfo("nvcc", True, "/usr/local/cuda-12.6/bin/nvcc", "12.6.85")
    plan = resolve(m)  # driver supports 12.2
    assert prereq(plan, "nvidia-driver").status == "found"
    assert any("minor-version compatibility" in n for n in plan.notes)


def test_mixed_gpus_get_every_architecture():
    m = machine("rtx4090-cuda12")
    m.gpus.append(
        GpuProfile(
            "nvidia",
            "NVIDIA GeForce RTX 3090",
            24576,
            "8.6",
            driver_version="550.78",
            cuda_version="12.4",
            apis=["cuda"],
        )
    )
    assert opts(resolve(m))["CMAKE_CUDA_ARCHITECTURES"] == "86-real;89-real"


def test_no_cuda_toolkit_is_missing_with_install_command():
    m = machine("rtx4090-cuda12")
    del m.toolchains["nvcc"]
    plan = resolve(m)
    nvcc = prereq(plan, "nvcc")
    assert nvcc.status == "missing" and "debian" in nvcc.install
    assert "CMAKE_CUDA_COMPILER" not in opts(plan)


def test_llvmpipe_never_chosen_but_can_be_forced():
    m = machine("this-machine")
    m.gpus.append(
        GpuProfile("other", "llvmpipe (LLVM 15.0.6, 256 bits)", apis=["vulkan"], cpu_emulated=True, source="vulkaninfo")
    )
    auto = resolve(m)
    assert auto.backend == "cpu"
    assert "llvmpipe" in skipped(auto, "Vulkan") and "CPU-emulated" in skipped(auto, "Vulkan")
    forced = resolve(m, backend="vulkan")
    assert forced.backend == "vulkan" and opts(forced)["GGML_VULKAN"] == "ON"
    assert any("CPU-emulated" in n for n in forced.notes)
    assert any("--backend vulkan was asked for" in n for n in forced.notes)
    assert prereq(forced, "glslc").status == "missing"


def test_forced_cuda_without_gpu():
    plan = resolve(machine("this-machine"), backend="cuda")
    assert plan.backend == "cuda" and opts(plan)["GGML_CUDA"] == "ON"
    assert "CMAKE_CUDA_ARCHITECTURES" not in opts(plan)
    assert any("CMAKE_CUDA_ARCHITECTURES is not set" in n for n in plan.notes)
    assert prereq(plan, "nvidia-driver").status == "missing"
    assert prereq(plan, "nvcc").status == "found"


def test_forced_cpu_on_a_gpu_machine():
    plan = resolve(machine("mac-m2-pro"), backend="cpu")
    assert opts(plan)["GGML_METAL"] == "OFF"
    assert "--backend cpu was asked for" in skipped(plan, "Metal")


def test_portable_goal():
    plan = resolve(machine("this-machine"), goal="portable")
    got = opts(plan)
    assert got["GGML_NATIVE"] == "OFF" and got["GGML_BACKEND_DL"] == "ON"
    assert got["GGML_CPU_ALL_VARIANTS"] == "ON" and got["BUILD_SHARED_LIBS"] == "ON"
    assert "variant" in reason(plan, "GGML_CPU_ALL_VARIANTS")
    cuda = resolve(machine("rtx4090-cuda12"), goal="portable")
    assert "CMAKE_CUDA_ARCHITECTURES" not in opts(cuda)  # llama.cpp's all-GPU default list


def test_riscv_without_vector_turns_rvv_off():
    m = machine("zen3-desktop")
    m.arch = m.cpu.arch = "riscv64"
    m.cpu.features = ["ZFH", "ZICBOP"]
    got = opts(resolve(m))
    assert got["GGML_RVV"] == "OFF" and got["GGML_RV_ZFH"] == "ON" and got["GGML_RV_ZVFH"] == "OFF"
    assert "GGML_NATIVE" not in got
    m.cpu.features = ["RVV", "ZFH", "ZVFH", "ZICBOP"]
    assert opts(resolve(m))["GGML_RVV"] == "ON"


@pytest.fixture
def amx_fixed(tmp_path, monkeypatch):
    """The known-bad table as it will read once a llama.cpp release fixes the AMX kernels:
    the row's range ends at the pinned version (0.5.0-dev is not before 0.5.0-dev)."""
    from builddoctor import known_bad

    text = known_bad.KNOWN_BAD_FILE.read_text().replace('fixed_in = ""', 'fixed_in = "0.5.0.dev0"')
    assert 'fixed_in = "0.5.0.dev0"' in text
    (tmp_path / "known_bad.toml").write_text(text)
    monkeypatch.setattr(known_bad, "KNOWN_BAD_FILE", tmp_path / "known_bad.toml")
    known_bad.rows.cache_clear()
    yield
    known_bad.rows.cache_clear()


def test_amx_comes_back_when_the_row_ends(amx_fixed):
    plan = resolve(machine("sapphire-rapids-server"))
    got = opts(plan)
    assert got["GGML_NATIVE"] == "ON" and "GGML_AMX_INT8" not in got
    assert "AMX" in reason(plan, "GGML_NATIVE")
    assert not plan.omit_cpu_variants and not resolve(machine("this-machine"), goal="portable").omit_cpu_variants


def test_amx_left_out_with_the_pinned_llama_cpp():
    plan = resolve(machine("sapphire-rapids-server"))
    assert {o.name: o.value for o in plan.options if o.name.startswith("GGML_AMX")} == {
        "GGML_AMX_TILE": "OFF",
        "GGML_AMX_INT8": "OFF",
        "GGML_AMX_BF16": "OFF",
    }
    assert "gcc" not in [p.name for p in plan.prerequisites]  # no AMX to compile: no GCC bound for it
    # portable builds travel to AMX machines: the sapphirerapids variant is left out, with the reason
    portable = resolve(machine("zen3-desktop"), goal="portable")
    assert portable.omit_cpu_variants == ["sapphirerapids"]
    assert any("amx-mul-mat-crash" in n and "sapphirerapids" in n for n in portable.notes)


def test_amx_needs_gcc_11(amx_fixed):
    m = machine("sapphire-rapids-server")
    m.toolchains["gcc"] = ToolInfo("gcc", True, "/usr/bin/gcc", "8.5.0")
    plan = resolve(m)
    p = next(p for p in plan.prerequisites if p.name == "gcc")
    assert p.status == "too-old" and "AMX" in p.reason
    # an old GCC still builds (without AMX): the builder does not stop for it
    from builddoctor.build import unmet_prerequisites

    assert not p.required and p not in unmet_prerequisites(plan)


def test_builder_stops_for_required_prerequisites_only():
    from builddoctor.build import unmet_prerequisites

    m = machine("rtx4090-cuda12")  # CUDA recipe: nvcc (tool), nvidia-driver (driver)
    m.toolchains.pop("nvcc", None)
    plan = resolve(m, backend="cuda")
    by_name = {p.name: p for p in plan.prerequisites}
    assert by_name["nvcc"].status == "missing" and by_name["nvcc"].required
    assert [p.name for p in unmet_prerequisites(plan)] == ["nvcc"]
    assert unmet_prerequisites(plan, exclude=["nvcc"]) == []
    by_name["nvidia-driver"].status = "missing"  # compiling needs no driver
    assert [p.name for p in unmet_prerequisites(plan)] == ["nvcc"]


def test_hip_substitute_target():
    m = machine("rx7900xtx-rocm")
    m.gpus[0] = GpuProfile("amd", "AMD Radeon RX 6700 XT", 12272, gfx_target="gfx1031", apis=["hip", "vulkan"])
    plan = resolve(m)
    assert opts(plan)["GPU_TARGETS"] == "gfx1030"
    assert any("HSA_OVERRIDE_GFX_VERSION=10.3.0" in n for n in plan.notes)
    assert plan.env["HIPCXX"] == "/opt/rocm-6.2.0/llvm/bin/clang"


def test_bad_goal_and_backend():
    with pytest.raises(errors.InputError, match="goal"):
        resolve(machine("this-machine"), goal="fastest")
    with pytest.raises(errors.InputError, match="Unknown backend 'opencl'"):
        resolve(machine("this-machine"), backend="opencl")


def test_cmake_command_line():
    """The one builder (build.configure_command/compile_command), which `recipe` prints too."""
    from pathlib import Path

    from builddoctor.build import compile_command, configure_command

    plan = resolve(machine("this-machine"))
    argv = configure_command(plan, Path("vendor/llama.cpp"), Path("build"), {"PATH": ""})
    assert argv[:7] == ["cmake", "-S", "vendor/llama.cpp", "-B", "build", "-G", "Ninja"]
    assert "-DGGML_NATIVE=ON" in argv and "-DCMAKE_BUILD_TYPE=Release" in argv
    b = compile_command(plan, Path("build"), jobs=2)
    assert b[:4] == ["cmake", "--build", "build", "--target"] and b[-2:] == ["-j", "2"]
    assert "--config" not in b
    mac = resolve(machine("mac-intel"))  # no ninja there: the build still configures with Ninja (and needs it)
    assert configure_command(mac, Path("src"), Path("build"), {"PATH": ""})[5:7] == ["-G", "Ninja"]


def test_every_emitted_option_is_known_to_the_pinned_source(pinned_source):
    """Every option any recipe can set is declared or read by the pinned llama.cpp (snapshot or tree)."""
    from builddoctor.llama_options import STANDARD_NAMES, known_options, scan_source

    names = {o.name for r in load_recipes() for o in r.options}
    known = known_options()
    unknown = {n for n in names if not n.startswith("CMAKE_") and n not in STANDARD_NAMES and n not in known.options}
    assert not unknown
    assert not names & set(known.deprecated)
    tree = scan_source(pinned_source)
    declared = {n for n, o in tree.options.items() if o["kind"] != "variable"}
    ggml = {n for n in names if n.startswith(("GGML_", "LLAMA_"))}
    assert ggml <= declared, ggml - declared


def test_this_machine_live():
    """On the machine the tests run on: a native CPU plan, and CUDA skipped with nvcc named when present."""
    from builddoctor import known_bad, probe
    from builddoctor.source import load_pin

    m = probe.machine_profile()
    plan = resolve(m)
    got = opts(plan)
    assert got["CMAKE_BUILD_TYPE"] == "Release"
    avoided = {f for r in known_bad.applying(m.cpu.features, load_pin().llama_version) for f in r.avoid}
    if avoided & set(m.cpu.features):  # e.g. an AMX host: the ISA is spelled out, less the known-bad features
        assert got["GGML_NATIVE"] == "OFF"
        assert all(got[f"GGML_{f}"] == "OFF" for f in avoided)
        for opt, feats in isa_table().items():
            if opt in got and not set(feats) & avoided and opt != "GGML_RVV":
                assert (got[opt] == "ON") == bool(set(feats) & set(m.cpu.features)), opt
    else:
        assert got["GGML_NATIVE"] == "ON"
    if not m.usable_gpus():
        assert plan.backend == "cpu"
        cuda = skipped(plan, "CUDA")
        assert "no NVIDIA GPU or driver" in cuda
        if m.tool("nvcc").found:
            assert "nvcc" in cuda and "installed" in cuda
    if m.os == "linux" and m.tool("gcc").found:
        assert got["GGML_OPENMP"] == "ON"
    copy.deepcopy(plan)


def test_source_tree_without_an_option_is_noted(tmp_path):
    (tmp_path / "CMakeLists.txt").write_text('option(GGML_NATIVE "native" ON)\noption(GGML_OPENMP "omp" ON)\n')
    plan = resolve(machine("this-machine"), source=tmp_path)
    assert any(n.startswith("LLAMA_OPENSSL (recipe no-network) is not an option") for n in plan.notes)
    assert not any(n.startswith("GGML_NATIVE ") for n in plan.notes)


def test_known_bad_version_ranges():
    from builddoctor.known_bad import Row

    row = Row(id="x", title="t", cpu_any=("AMX_INT8",), first_build=3930, fixed_in="0.6.0")
    assert row.affects_version("0.5.0-dev") and row.affects_version("0.5.2")
    assert not row.affects_version("0.6.0") and not row.affects_version("0.7.0-dev")
    assert row.affects_version(None) and row.affects_version(None, 4100)  # unknown: a likely cause
    assert not row.affects_version(None, 3000)  # older than the code the row is about
    assert row.affects_version("0.6.0-dev")  # a development version comes before its release
    open_ended = Row(id="y", title="t")
    assert open_ended.affects_version("9.9.9")


def test_plan_for_a_recorded_machine_spells_its_isa_out():
    """`recipe --profile zen3.json` on any machine: not -march=native of the building host."""
    plan = resolve(recorded("zen3-desktop"))
    got = opts(plan)
    assert got["GGML_NATIVE"] == "OFF" and "not for the machine that builds it" in reason(plan, "GGML_NATIVE")
    assert {
        k: got[k] for k in ("GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2", "GGML_SSE42")
    } == dict.fromkeys(("GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2", "GGML_SSE42"), "ON")
    assert all(got[k] == "OFF" for k in ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX_VNNI", "GGML_AMX_INT8"))
    assert "has AVX2" in reason(plan, "GGML_AVX2") and "has no AVX-512" in reason(plan, "GGML_AVX512")


def test_a_malformed_known_bad_row_is_named(tmp_path, monkeypatch):
    from builddoctor import known_bad

    (tmp_path / "kb.toml").write_text('[[row]]\nid = "x"\ntitle = "t"\nfixed = "1.0"\n')
    monkeypatch.setattr(known_bad, "KNOWN_BAD_FILE", tmp_path / "kb.toml")
    known_bad.rows.cache_clear()
    try:
        with pytest.raises(errors.UserError, match=r"row 1 has unknown key\(s\) fixed; known: .*fixed_in"):
            known_bad.rows()
    finally:
        known_bad.rows.cache_clear()
