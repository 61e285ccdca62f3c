"""The findings engine alone: BuildProfile + MachineProfile values in, findings out.

The values here are what the inspector and the probe produce (their own tests check that
against real binaries and recorded tool outputs); this file checks the catalogue's rules
and their wording, one situation each. End-to-end checks on real builds are in
test_check_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builddoctor.findings import catalogue, findings_for
from builddoctor.findings.rules import RULES
from builddoctor.findings.rules.gpu import nvcc_support, toolkit_dropped
from builddoctor.probe import gpus_from_file
from builddoctor.profiles import (
    BinaryFile,
    BuildProfile,
    BuildReport,
    ComputeResult,
    CpuProfile,
    Diagnosis,
    GpuProfile,
    MachineProfile,
    RuntimeResult,
)

ZEN4 = [
    "SSE3",
    "SSSE3",
    "SSE41",
    "SSE42",
    "AVX",
    "F16C",
    "FMA",
    "AVX2",
    "BMI2",
    "AVX512",
    "AVX512_VBMI",
    "AVX512_VNNI",
    "AVX512_BF16",
]
HASWELL = ["SSE3", "SSSE3", "SSE41", "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"]


def machine(features=ZEN4, variant="zen4", gpus=(), source="live") -> MachineProfile:
    return MachineProfile(
        os="linux",
        arch="x86_64",
        source=source,
        libc="glibc",
        libc_version="2.36",
        libstdcxx_version="3.4.30",
        cpu=CpuProfile(
            arch="x86_64",
            vendor="AuthenticAMD",
            model="AMD EPYC 9R14",
            microarch="zen4",
            features=list(features),
            variant=variant,
            variants=["x64", variant],
        ),
        gpus=list(gpus),
    )


RTX4090 = GpuProfile(
    vendor="nvidia",
    name="NVIDIA GeForce RTX 4090",
    memory_mib=24564,
    compute_capability="8.9",
    driver_version="550.54.14",
    cuda_version="12.4",
    apis=["cuda"],
    source="nvidia-smi",
)


def build(isa=ZEN4, backends=("CPU",), build_type="Release", **kw) -> BuildProfile:
    files = kw.pop("files", None) or [
        BinaryFile(
            path="/b/bin/llama-bench",
            role="executable",
            format="ELF",
            arch="x86_64",
            needed=["libllama.so", "libggml.so", "libc.so.6"],
            symbol_versions={"GLIBC": "2.34"},
        ),
        BinaryFile(
            path="/b/bin/libggml-cpu.so",
            role="backend",
            format="ELF",
            arch="x86_64",
            isa=list(isa),
            backends=["CPU"],
            needed=["libggml-base.so", "libgomp.so.1", "libc.so.6"],
            symbol_versions={"GLIBC": "2.34", "GLIBCXX": "3.4.29"},
        ),
    ]
    return BuildProfile(
        root="/b/bin",
        name="llama-bench",
        files=files,
        backends=list(backends),
        isa=list(isa),
        isa_level=None,
        build_type=build_type,
        version="0.5.0-dev",
        commit="0c1e570",
        compiler="GNU 12.2.0",
        **kw,
    )


def codes(findings, severities=("error", "warning", "info")):
    return sorted(f.code for f in findings if f.severity in severities)


def test_catalogue_is_consistent():
    cat = catalogue()
    assert len({c["code"] for c in cat["check"]}) == len(cat["check"])
    assert all(c["rule"] in RULES for c in cat["check"])
    # every rule is used by some check: no dead code in findings/rules/
    assert {c["rule"] for c in cat["check"]} == set(RULES)


def test_healthy_native_build_on_its_machine():
    found = findings_for(build(), machine())
    assert codes(found) == []
    titles = {f.area: f.title for f in found if f.severity == "ok"}
    assert "AVX512" in titles["cpu"] and "zen4" in titles["cpu"]
    assert titles["build"] == "Release build, with OpenMP"
    assert "no GPU" in titles["gpu"]
    assert "glibc 2.34" in titles["load"]


def test_sse_only_build_on_avx512_cpu_warns_with_speedup():
    found = findings_for(build(isa=["SSE3", "SSSE3"]), machine())
    (f,) = [f for f in found if f.code == "BD130"]
    assert f.severity == "warning"
    assert "SSE" in f.title and "AVX512" in f.title and "4x" in f.title
    assert "builddoctor fix --rebuild /b/bin" in f.fix


def test_avx2_build_on_avx512_cpu_warns_smaller_gain():
    found = findings_for(build(isa=HASWELL), machine())
    (f,) = [f for f in found if f.code == "BD130"]
    assert "AVX2" in f.title and "1.3x" in f.title


def test_same_level_missing_extensions_is_info_only():
    isa = [x for x in ZEN4 if x not in ("AVX512_VNNI", "AVX512_BF16", "AVX512_VBMI")]
    found = findings_for(build(isa=isa), machine())
    assert "BD130" not in codes(found)
    (f,) = [f for f in found if f.code == "BD133"]
    assert f.severity == "info" and "AVX512_VNNI" in f.title and "zen4" in f.title


def test_avx512_code_on_cpu_without_it_is_an_error():
    found = findings_for(build(isa=ZEN4), machine(features=HASWELL, variant="haswell"))
    (f,) = [f for f in found if f.code == "BD131"]
    assert f.severity == "error" and "AVX512" in f.title and "illegal instruction" in f.title
    assert "BD130" not in codes(found)


def test_sigill_at_runtime_names_the_missing_features():
    b = build(isa=ZEN4, runtime=[RuntimeResult(argv=["/b/bin/llama-bench", "--version"], signal="SIGILL")])
    found = findings_for(b, machine(features=HASWELL, variant="haswell"))
    (f,) = [f for f in found if f.code == "BD190"]
    assert "AVX512" in f.title and "llama-bench --version" in f.evidence


def test_hang_and_crash_are_findings():
    b = build(
        runtime=[
            RuntimeResult(argv=["/b/bin/llama-cli", "--version"], timed_out=True),
            RuntimeResult(argv=["/b/bin/llama-cli", "--list-devices"], signal="SIGSEGV"),
        ]
    )
    found = findings_for(b, machine())
    assert {"BD191", "BD192"} <= set(codes(found))


def test_debug_build_is_an_error_with_release_fix():
    found = findings_for(build(build_type="Debug"), machine())
    (f,) = [f for f in found if f.code == "BD140"]
    assert f.severity == "error" and "CMAKE_BUILD_TYPE=Release" in f.fix


def test_no_cuda_backend_with_nvidia_gpu():
    found = findings_for(build(), machine(gpus=[RTX4090]))
    (f,) = [f for f in found if f.code == "BD101"]
    assert "RTX 4090" in f.title and "CUDA" in f.title and "-DGGML_CUDA=ON" in f.fix


def test_cpu_emulated_vulkan_device_does_not_ask_for_a_gpu_backend():
    llvmpipe = GpuProfile(vendor="other", name="llvmpipe (LLVM 15.0.6, 256 bits)", apis=["vulkan"], cpu_emulated=True)
    found = findings_for(build(), machine(gpus=[llvmpipe]))
    assert codes(found) == []
    assert any("CPU-emulated" in f.title for f in found if f.area == "gpu")


def cuda_build(archs, needed=("libcudart.so.12", "libcublas.so.12"), missing=(), fa=True):
    b = build(backends=("CPU", "CUDA"))
    b.files.append(
        BinaryFile(
            path="/b/bin/libggml-cuda.so",
            role="backend",
            format="ELF",
            arch="x86_64",
            backends=["CUDA"],
            needed=list(needed),
            missing_needed=list(missing),
            cuda_archs=list(archs),
        )
    )
    b.cuda_archs = list(archs)
    b.flash_attn_kernels = fa
    return b


@pytest.mark.parametrize(
    "archs,expect",
    [
        (["sm_89"], []),
        (["sm_80", "sm_86"], []),  # same major, lower minor: SASS runs
        (["sm_90", "compute_90"], ["BD120"]),  # newer only: nothing runs on 8.9
        (["sm_75", "compute_75"], ["BD121"]),  # PTX JIT only
        (["sm_90a"], ["BD120"]),  # arch-specific SASS runs on exactly 9.0
    ],
)
def test_cuda_architectures_against_the_gpu(archs, expect):
    found = findings_for(cuda_build(archs), machine(gpus=[RTX4090]))
    assert [c for c in codes(found) if c in ("BD120", "BD121")] == expect


PASCAL_SMI = Path(__file__).parent / "fixtures" / "nvidia-smi" / "gtx1080-driver535.csv"


def test_bd120_for_a_pascal_gpu_says_a_cuda_12_toolkit_is_needed():
    """A CUDA 13 build (sm_75 and up is all nvcc 13 makes) on the recorded GTX 1080 (6.1)."""
    gpus = gpus_from_file(PASCAL_SMI)
    cuda13 = cuda_build(["sm_75", "sm_89"], needed=["libcudart.so.13", "libcublas.so.13"])
    (f,) = [f for f in findings_for(cuda13, machine(gpus=gpus)) if f.code == "BD120"]
    assert f.severity == "error" and "GTX 1080" in f.title and "6.1" in f.title
    assert f.fix.startswith("install a CUDA 12 toolkit (nvcc 12.x builds for compute capability 5.0 and up; ")
    assert "CUDA 13 dropped GPUs below 7.5" in f.fix
    assert "then: builddoctor fix --rebuild /b/bin " in f.fix and "-DCMAKE_CUDA_ARCHITECTURES=61" in f.fix


def test_bd120_for_a_gpu_the_newest_toolkit_builds_for_keeps_the_plain_fix():
    (f,) = [f for f in findings_for(cuda_build(["sm_90"]), machine(gpus=[RTX4090])) if f.code == "BD120"]
    assert f.fix == "builddoctor fix --rebuild /b/bin   (or cmake -DCMAKE_CUDA_ARCHITECTURES=89)"


@pytest.mark.parametrize(
    "cc,expect",
    [
        (61, ("12", "5.0", "13", "7.5")),  # Pascal: CUDA 13 dropped it
        (70, ("12", "5.0", "13", "7.5")),  # Volta
        (37, ("11", "3.5", "12", "5.0")),  # Kepler: CUDA 12 dropped it
        (75, None),  # Turing: CUDA 13 still builds for it
        (120, None),
        (30, None),  # no toolkit in the table ever built for it
    ],
)
def test_toolkit_dropped_reads_the_recipe_table(cc, expect):
    got = toolkit_dropped(cc, nvcc_support())
    assert (got and (got["last_major"], got["last_min"], got["drop_major"], got["drop_min"])) == expect


def test_cuda_runtime_newer_than_driver():
    found = findings_for(cuda_build(["sm_89"], needed=["libcudart.so.13"]), machine(gpus=[RTX4090]))
    (f,) = [f for f in found if f.code == "BD111"]
    assert "CUDA 13" in f.title and "12.4" in f.title


def test_cuda_backend_with_missing_runtime_and_no_gpu():
    found = findings_for(cuda_build(["sm_89"], missing=["libcudart.so.99"]), machine())
    assert "BD112" in codes(found)
    assert "BD110" in codes(found)  # no NVIDIA GPU here at all
    assert "BD170" not in codes(found)  # reported once, as a GPU runtime


def test_flash_attention_kernels_missing():
    found = findings_for(cuda_build(["sm_89"], fa=False), machine(gpus=[RTX4090]))
    assert "BD150" in codes(found)


def test_glibc_and_libstdcxx_too_new():
    b = build()
    b.files[0].symbol_versions = {"GLIBC": "2.99"}
    b.files[1].symbol_versions = {"GLIBCXX": "3.4.33"}
    found = findings_for(b, machine())
    assert {"BD171", "BD172"} <= set(codes(found, ("error",)))
    (g,) = [f for f in found if f.code == "BD171"]
    assert "2.99" in g.title and "2.36" in g.title


def test_missing_library_only_judged_for_this_machine():
    b = build()
    b.files[0].missing_needed = ["libllama.so"]
    from builddoctor.findings.engine import _context

    m = machine()
    assert "BD170" in codes(findings_for(b, m, _context(m, 5.0, None, here=True)))
    assert "BD170" not in codes(findings_for(b, m, _context(m, 5.0, None, here=False)))


def test_portable_build_without_this_cpus_variant():
    b = build(isa=[])
    b.cpu_variants = ["x64", "sse42", "haswell", "skylakex"]
    m = machine()
    m.cpu.variants = ["x64", "sse42", "haswell", "skylakex", "zen4"]
    (f,) = [f for f in findings_for(b, m) if f.code == "BD132"]
    assert "skylakex" in f.title and "zen4" in f.title
    b.cpu_variants.append("zen4")
    assert "BD132" not in codes(findings_for(b, m))


def test_old_build_number_and_version():
    b = build()
    b.commit, b.build_number, b.version = "abc1234", 4000, None
    (f,) = [f for f in findings_for(b, machine()) if f.code == "BD180"]
    assert "b4000" in f.title and "0c1e570" in f.title
    b.build_number, b.version = None, "0.3.0-dev"
    (f,) = [f for f in findings_for(b, machine()) if f.code == "BD180"]
    assert f.severity == "info"


def test_old_build_says_what_it_lacks_and_what_to_do():
    b = build()
    b.commit, b.build_number, b.version = None, 4965, None
    b.evidence["build_number"] = "soname of libllama.so.0.0.4965"
    (f,) = [f for f in findings_for(b, machine()) if f.code == "BD180"]
    assert f.title.startswith("old llama.cpp: build b4965 is from before 2026-04-01, builddoctor's pinned llama.cpp is")
    assert "model architectures" in f.title and "libllama.so.0.0.4965" in f.evidence
    assert f.fix.startswith("builddoctor fix --rebuild /b/bin") and "pinned llama.cpp" in f.fix
    # the version line names the build by its number, never "llama.cpp ?"
    b.build_number = 9999
    (ok,) = [f for f in findings_for(b, machine()) if f.code == "ok:version"]
    assert ok.title.startswith("llama.cpp b9999")


def test_vulkan_with_only_a_cpu_emulated_device():
    """llvmpipe is hidden by ggml: a Vulkan build on such a machine falls back to the CPU, like CUDA without a GPU."""
    llvmpipe = GpuProfile(
        vendor="other", name="llvmpipe (LLVM 15.0.6, 256 bits)", apis=["vulkan"], cpu_emulated=True, source="vulkaninfo"
    )
    (f,) = [f for f in findings_for(build(backends=("CPU", "Vulkan")), machine(gpus=[llvmpipe])) if f.code == "BD110"]
    assert f.title.startswith("Vulkan backend built in, but this machine's only Vulkan device is llvmpipe")
    assert "CPU-emulated" in f.title
    (f,) = [f for f in findings_for(build(backends=("CPU", "Vulkan")), machine()) if f.code == "BD110"]
    assert "no GPU" in f.title
    assert "BD110" not in codes(findings_for(build(backends=("CPU", "Vulkan")), machine(gpus=[RTX4090])))


@pytest.mark.parametrize(
    "needed,missing,want,not_want",
    [
        (
            ["libcudart.so.13", "libcublas.so.13"],
            ["libcudart.so.13", "libcublas.so.13"],
            "nvidia-cuda-runtime nvidia-cublas",
            "cu12",
        ),
        (["libcudart.so.12", "libcublas.so.12"], ["libcudart.so.12"], "nvidia-cuda-runtime-cu12", "CUDA 13"),
        (["libcudart.so.13", "libcuda.so.1"], ["libcuda.so.1"], "NVIDIA driver", "pip install"),
    ],
)
def test_cuda_runtime_advice_follows_the_cuda_version(needed, missing, want, not_want):
    found = findings_for(cuda_build(["sm_89"], needed=needed, missing=missing), machine())
    (f,) = [f for f in found if f.code == "BD112"]
    assert want in f.fix and not_want not in f.fix


def test_msvc_openmp_is_openmp():
    files = [
        BinaryFile(
            path="C:/b/ggml-cpu.dll",
            role="backend",
            format="PE",
            arch="x86_64",
            isa=list(ZEN4),
            backends=["CPU"],
            needed=["ggml-base.dll", "VCOMP140.DLL", "KERNEL32.dll"],
        )
    ]
    windows = machine()
    windows.os, windows.libc, windows.libc_version, windows.libstdcxx_version = "windows", None, None, None
    found = findings_for(build(files=files), windows)
    assert "BD141" not in codes(found)
    assert any(f.code == "ok:build" and "with OpenMP" in f.title for f in found)


def test_not_llama_cpp_gets_one_finding_only():
    b = BuildProfile(
        root="/x",
        name="ls",
        is_llama_cpp=False,
        files=[BinaryFile(path="/usr/bin/ls", role="executable", format="ELF", arch="x86_64")],
    )
    found = findings_for(b, machine())
    assert [f.code for f in found] == ["BD001"]


def test_diagnosis_json_round_trip():
    d = Diagnosis(machine=machine(), builds=[BuildReport(build=build(), findings=findings_for(build(), machine()))])
    again = Diagnosis.from_json(d.to_json())
    assert again.to_json() == d.to_json()
    assert again.healthy


def test_option_set_against_the_plan():
    b = build()
    b.cmake_cache = "/b/CMakeCache.txt"
    b.cmake_options = {"GGML_NATIVE": "OFF", "CMAKE_BUILD_TYPE": "Release", "GGML_RVV": "ON"}
    (f,) = [f for f in findings_for(b, machine()) if f.code == "BD161"]
    assert f.severity == "warning"
    assert "GGML_NATIVE=OFF" in f.title and "GGML_NATIVE=ON" in f.title and "this CPU" in f.evidence
    # GGML_RVV=ON is llama.cpp's default in every cache: not something the user asked for
    assert not [f for f in findings_for(b, machine()) if "RVV" in f.title]
    b.cmake_options["GGML_NATIVE"] = "ON"
    assert "BD161" not in codes(findings_for(b, machine()))
    # a portable build is compared with the portable plan, not flagged for GGML_NATIVE=OFF
    b.cmake_options.update(GGML_NATIVE="OFF", GGML_CPU_ALL_VARIANTS="ON", GGML_BACKEND_DL="ON")
    assert "BD161" not in codes(findings_for(b, machine()))


# --------------------------------------------------------------------------- the compute probe

SPR = ZEN4 + ["AVX_VNNI", "AMX_TILE", "AMX_INT8", "AMX_BF16"]


def inference(**kw) -> ComputeResult:
    base = dict(
        kind="inference",
        argv=["/b/bin/llama-bench", "-m", "probe.gguf", "-t", "2"],
        threads=2,
        seconds=0.2,
        timeout_s=30.0,
    )
    base.update(kw)
    return ComputeResult(**base)


def test_amx_crash_names_the_known_bad_row_and_the_fix():
    found = findings_for(build(isa=SPR, compute=inference(signal="SIGSEGV")), machine(SPR, "sapphirerapids"))
    (f,) = [f for f in found if f.code == "BD193"]
    assert f.severity == "error" and "SIGSEGV" in f.title and "AMX" in f.title
    assert "amx-mul-mat-crash" in f.evidence and "#20824" in f.evidence
    assert "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in f.fix and "builddoctor fix --rebuild /b/bin" in f.fix
    assert "ok:runtime" not in [x.code for x in found]


def test_crash_of_a_build_from_a_fixed_llama_cpp_is_not_blamed_on_the_row():
    b = build(isa=SPR, compute=inference(signal="SIGSEGV"))
    b.build_number = 3000  # before the AMX kernels existed (known-bad row's first_build)
    b.version = None
    (f,) = [f for f in findings_for(b, machine(SPR, "sapphirerapids")) if f.code == "BD193"]
    assert "amx-mul-mat-crash" not in f.evidence and "no static fact" in f.title


def test_sigill_while_computing_names_what_the_cpu_lacks():
    found = findings_for(build(isa=ZEN4, compute=inference(signal="SIGILL")), machine(HASWELL, "haswell"))
    (f,) = [f for f in found if f.code == "BD193"]
    assert "AVX512" in f.title and "lacks" in f.title


def test_hang_and_garbage_are_their_own_findings():
    hung = findings_for(build(compute=inference(timed_out=True)), machine())
    assert [f.code for f in hung if f.code.startswith("BD19")] == ["BD194"]
    bad = findings_for(
        build(compute=inference(returncode=0, problem="printed a meaningless speed ('nan' tokens/s)")), machine()
    )
    (f,) = [f for f in bad if f.code == "BD195"]
    assert "meaningless" in f.title and f.severity == "error"


def test_a_computing_build_says_what_ran():
    ok = inference(ok=True, returncode=0, backend="CPU", pp_tps=812.4, tg_tps=120.2)
    found = findings_for(
        build(compute=ok, runtime=[RuntimeResult(argv=["/b/bin/llama-bench", "--version"], returncode=0)]), machine()
    )
    (line,) = [f.title for f in found if f.code == "ok:runtime"]
    assert line.startswith(
        "a real inference ran (llama-bench on the probe model, CPU, 2 threads: prompt 812 t/s, generation 120 t/s)"
    )


def test_amx_code_without_a_run_is_flagged_from_the_table():
    found = findings_for(build(isa=SPR), machine(SPR, "sapphirerapids", source="profile:x.json"))
    (f,) = [f for f in found if f.code == "BD134"]
    assert f.severity == "error" and "AMX_INT8" in f.title and "amx-mul-mat-crash" in f.evidence
    # a CPU without AMX never meets the row, and a build that computed here is not flagged
    assert "BD134" not in codes(findings_for(build(isa=SPR), machine(ZEN4)))
    assert "BD134" not in codes(
        findings_for(build(isa=SPR, compute=inference(ok=True, returncode=0)), machine(SPR, "sapphirerapids"))
    )


def test_library_that_does_not_load():
    c = ComputeResult(
        kind="dlopen",
        argv=["/b/bin/libllama.so"],
        returncode=3,
        error="/b/bin/libllama.so: undefined symbol: ggml_backend_cpu_reg",
    )
    (f,) = [f for f in findings_for(build(compute=c), machine()) if f.code == "BD173"]
    assert f.area == "load" and "undefined symbol" in f.title and "older or newer" in f.fix


def test_features_a_known_bad_row_keeps_out_are_not_missing():
    """AVX-512 code without AMX on an AMX CPU, from the pinned llama.cpp: what builddoctor itself plans."""
    found = findings_for(build(isa=ZEN4 + ["AVX_VNNI"]), machine(SPR, "sapphirerapids"))
    assert not {"BD130", "BD133"} & set(codes(found))
    assert "ok:cpu" in [f.code for f in found]


def test_isa_departures_from_a_spelled_out_plan_are_one_finding():
    """An SSE-only build on an AMX CPU, whose plan spells the ISA out: one BD161 names every ISA option."""
    b = build(isa=["SSE3", "SSSE3"])
    b.cmake_cache = "/b/CMakeCache.txt"
    b.cmake_options = {
        "GGML_NATIVE": "OFF",
        "GGML_AVX": "OFF",
        "GGML_AVX2": "OFF",
        "GGML_FMA": "OFF",
        "GGML_AVX512": "OFF",
        "GGML_AMX_INT8": "OFF",
    }
    (f,) = [f for f in findings_for(b, machine(SPR, "sapphirerapids")) if f.code == "BD161"]
    assert "GGML_AVX=OFF, GGML_FMA=OFF, GGML_AVX2=OFF, GGML_AVX512=OFF" in f.title
    assert "-DGGML_AVX=ON -DGGML_FMA=ON -DGGML_AVX2=ON -DGGML_AVX512=ON" in f.fix
    assert "AMX" not in f.title  # off in the build and in the plan (known-bad): no departure
