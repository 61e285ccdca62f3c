"""`builddoctor flags`: deprecated, unknown and machine-contradicting cmake options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor import errors
from builddoctor.findings.flags import check_cmake_options, check_flags
from builddoctor.flagcheck import parse_defines
from builddoctor.llama_options import SNAPSHOT, known_options, render_snapshot, scan_source
from builddoctor.profiles import MachineProfile

MACHINES = Path(__file__).parent / "fixtures" / "machines"


def machine(name: str) -> MachineProfile:
    return MachineProfile.from_json((MACHINES / f"{name}.json").read_text())


def codes(findings) -> list[str]:
    return [f.code for f in findings]


@pytest.fixture(scope="module")
def runner():
    from builddoctor import cli

    cli._register()
    return CliRunner(), cli.cli


def test_parse_defines_forms():
    got = parse_defines(
        "cmake -S . -B build -DGGML_CUDA=ON -D GGML_NATIVE=OFF -DCMAKE_BUILD_TYPE:STRING=Release "
        "'-DCMAKE_CUDA_ARCHITECTURES=86;89' -DLLAMA_FOO"
    )
    assert got == {
        "GGML_CUDA": "ON",
        "GGML_NATIVE": "OFF",
        "CMAKE_BUILD_TYPE": "Release",
        "CMAKE_CUDA_ARCHITECTURES": "86;89",
        "LLAMA_FOO": "ON",
    }


def test_deprecated_llama_cuda():
    f = check_flags("cmake -B build -DLLAMA_CUDA=ON", None)
    assert codes(f) == ["BD401"]
    assert f[0].severity == "warning" and "GGML_CUDA" in f[0].title and f[0].fix == "-DGGML_CUDA=ON"


@pytest.mark.parametrize(
    "old,new",
    [
        ("LLAMA_CUBLAS", "GGML_CUDA"),
        ("LLAMA_METAL", "GGML_METAL"),
        ("LLAMA_NATIVE", "GGML_NATIVE"),
        ("LLAMA_VULKAN", "GGML_VULKAN"),
        ("LLAMA_HIPBLAS", "GGML_HIP"),
        ("LLAMA_AVX2", "GGML_AVX2"),
        ("LLAMA_BUILD_WEBUI", "LLAMA_BUILD_UI"),
    ],
)
def test_deprecated_names_have_todays_name(old, new):
    (f,) = check_flags(f"-D{old}=ON", None)
    assert f.code == "BD401" and new in f.title and f.fix == f"-D{new}=ON"


def test_cublas_is_fatal_in_the_pinned_source():
    (f,) = check_flags("-DLLAMA_CUBLAS=ON", None)
    assert f.severity == "error" and "stops configuring" in f.evidence


@pytest.mark.parametrize("name", ["LLAMA_CLBLAST", "LLAMA_KOMPUTE", "LLAMA_CURL", "GGML_CUDA_F16"])
def test_removed_options(name):
    (f,) = check_flags(f"-D{name}=ON", None)
    assert f.code == "BD402" and "removed" in f.title


def test_unknown_with_suggestion():
    (f,) = check_flags("cmake -B build -DGGML_CUDAA=ON", None)
    assert f.code == "BD403" and "Did you mean GGML_CUDA?" in f.evidence and f.fix == "-DGGML_CUDA=ON"
    (g,) = check_flags("-DCMAKE_BUILD_TYP=Release", None)
    assert g.code == "BD404" and "CMAKE_BUILD_TYPE" in g.fix
    (h,) = check_flags("-DGGML_TOTALLY_MADE_UP=1", None)
    assert h.code == "BD403" and "Did you mean" not in h.evidence


def test_known_options_are_quiet():
    assert (
        check_flags(
            "cmake -B build -G Ninja -DGGML_CUDA=ON -DGGML_CUDA_FA_ALL_QUANTS=ON -DBUILD_SHARED_LIBS=OFF "
            "-DCMAKE_BUILD_TYPE=Release -DGPU_TARGETS=gfx1100 -DLLAMA_BUILD_COMMIT=0c1e570 "
            "-DGGML_CUDA_CUB_3DOT2=OFF -DOpenMP_ROOT=/opt/omp",
            None,
        )
        == []
    )


def test_cuda_on_without_toolkit_and_gpu():
    fs = check_flags("-DGGML_CUDA=ON", machine("zen3-desktop"))
    assert codes(fs) == ["BD405", "BD406"]
    assert fs[0].severity == "error" and "nvcc" in fs[0].title and "pacman" in fs[0].fix  # Arch Linux


def test_cuda_on_this_machine_nvcc_without_gpu():
    fs = check_flags("cmake -B build -DLLAMA_CUDA=ON", machine("this-machine"))
    assert codes(fs) == ["BD401", "BD406"]  # the old name still means GGML_CUDA=ON
    assert "no NVIDIA GPU or driver" in fs[1].title and "nvcc 13.0" in fs[1].title


def test_cuda_on_a_cuda_machine_is_fine():
    assert check_flags("-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=89", machine("rtx4090-cuda12")) == []


def test_isa_forced_on_cpu_without_it():
    fs = check_flags("-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX2=ON", machine("zen3-desktop"))
    assert codes(fs) == ["BD407"] and "AVX512" in fs[0].title and "SIGILL" in fs[0].evidence
    assert check_flags("-DGGML_AVX512=ON", machine("this-machine")) == []  # Zen 4 has it
    assert codes(check_flags("-DGGML_AMX_INT8=ON", machine("this-machine"))) == ["BD407"]


def test_contradicting_options():
    fs = check_flags("-DGGML_CPU_ALL_VARIANTS=ON", None)
    assert codes(fs) == ["BD408"] and fs[0].severity == "error"
    assert check_flags("-DGGML_CPU_ALL_VARIANTS=ON -DGGML_BACKEND_DL=ON", None) == []
    assert codes(check_flags("-DGGML_BACKEND_DL=ON -DBUILD_SHARED_LIBS=OFF", None)) == ["BD408"]


def test_network_fetch_is_info():
    (f,) = check_flags("-DLLAMA_BUILD_BORINGSSL=ON", None)
    assert f.code == "BD409" and f.severity == "info"


def test_bad_input():
    with pytest.raises(errors.InputError, match="quotes"):
        check_flags("cmake -DGGML_CUDA='ON", None)
    with pytest.raises(errors.InputError, match="No -D options"):
        check_flags("cmake -B build", None)


def test_cmake_cache_options():
    """A CMakeCache's options: find_package and internal variables are not flagged; old names are."""
    cache = {
        "CMAKE_BUILD_TYPE": "Release",
        "GGML_CUDA": "OFF",
        "GGML_NATIVE": "ON",
        "LLAMA_CUDA": "ON",
        "OpenMP_C_FLAGS": "-fopenmp",
        "Vulkan_INCLUDE_DIR": "/usr/include",
        "FETCHCONTENT_QUIET": "ON",
        "GGML_CUDAA": "ON",
        "CMAKE_BUILD_TYP": "x",
        "SOMETHING_ELSE": "1",
    }
    fs = check_cmake_options(cache, None)
    assert codes(fs) == ["BD401", "BD403"]


def test_snapshot_knows_the_source_options():
    k = known_options()
    for name in (
        "GGML_CUDA",
        "GGML_CUDA_FA",
        "GGML_CUDA_FA_ALL_QUANTS",
        "GGML_CPU_ALL_VARIANTS",
        "GGML_BACKEND_DL",
        "LLAMA_OPENSSL",
        "LLAMA_USE_PREBUILT_UI",
        "GGML_OPENMP_FETCH",
        "GGML_SYCL_TARGET",
    ):
        assert name in k.options, name
    assert k.options["GGML_CUDA"]["kind"] == "option" and k.options["GGML_CUDA"]["default"] == "OFF"
    assert k.deprecated["LLAMA_CUBLAS"]["level"] == "FATAL_ERROR"
    # every replacement in the historic table exists today
    for name, d in k.deprecated.items():
        if d["replacement"]:
            assert d["replacement"] in k.options, (name, d["replacement"])


def test_snapshot_matches_the_vendor_tree(pinned_source):
    fresh = scan_source(pinned_source)
    text = SNAPSHOT.read_text()
    commit = text.split('source_commit = "', 1)[1].split('"', 1)[0]
    assert render_snapshot(fresh, commit) == text, (
        "data/llama_options.toml is stale: python -m builddoctor.flagcheck regenerate"
    )


def test_scan_source_reads_declarations(tmp_path):
    (tmp_path / "CMakeLists.txt").write_text(
        'option(LLAMA_A "a thing" ON)\n# option(LLAMA_COMMENTED "no" OFF)\n'
        'set(GGML_B "x;y" CACHE STRING\n    "multi-line")\nif (GGML_C AND NOT LLAMA_A)\nendif()\n'
        "llama_option_depr(WARNING LLAMA_OLD GGML_NEW)\n"
    )
    k = scan_source(tmp_path)
    assert k.options["LLAMA_A"] == {"kind": "option", "default": "ON", "help": "a thing", "file": "CMakeLists.txt"}
    assert k.options["GGML_B"]["kind"] == "cache STRING" and k.options["GGML_B"]["help"] == "multi-line"
    assert k.options["GGML_C"]["kind"] == "variable"
    assert "LLAMA_COMMENTED" not in k.options
    assert k.deprecated["LLAMA_OLD"]["replacement"] == "GGML_NEW"


# --------------------------------------------------------------------------- CLI


def test_cli_flags_llama_cuda(runner):
    r, cli = runner
    res = r.invoke(cli, ["flags", "--profile", str(MACHINES / "this-machine.json"), "cmake -B build -DLLAMA_CUDA=ON"])
    assert res.exit_code == 1
    assert "GGML_CUDA" in res.output and "BD401" in res.output


def test_cli_flags_clean_and_json(runner):
    r, cli = runner
    res = r.invoke(cli, ["flags", "--no-machine", "cmake -B build -DGGML_NATIVE=ON"])
    assert res.exit_code == 0 and "No problems" in res.output
    res = r.invoke(cli, ["flags", "--no-machine", "--json", "-DGGML_CUDAA=ON"])
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert doc["findings"][0]["code"] == "BD403" and doc["findings"][0]["fix"] == "-DGGML_CUDA=ON"


def test_cli_flags_bad_usage(runner):
    r, cli = runner
    assert r.invoke(cli, ["flags"]).exit_code == 2
    res = r.invoke(cli, ["flags", "--no-machine", "cmake -DX='unterminated"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_cli_recipe_json_and_save(runner, tmp_path):
    from builddoctor.profiles import BuildPlan

    r, cli = runner
    out = tmp_path / "plan.json"
    res = r.invoke(cli, ["recipe", "--profile", str(MACHINES / "rtx4090-cuda12.json"), "--json", "--save", str(out)])
    assert res.exit_code == 0, res.output
    plan = BuildPlan.from_json(res.output)
    assert plan.backend == "cuda" and BuildPlan.from_json(out.read_text()) == plan


def test_cli_recipe_text(runner):
    r, cli = runner
    res = r.invoke(cli, ["recipe", "--profile", str(MACHINES / "gtx1080-cuda12.json")])
    assert res.exit_code == 0, res.output
    assert "CMAKE_CUDA_ARCHITECTURES=61-real" in res.output
    assert "Vulkan: skipped, CUDA is faster" in res.output
    assert "cmake -S " in res.output and "-DGGML_CUDA=ON" in res.output
    assert "cmake --build " in res.output and "--config" not in res.output  # what `build` runs
    res = r.invoke(cli, ["recipe", "--profile", str(MACHINES / "laptop-rtx-old-driver.json")])
    assert "nvidia-driver 470.256.02 (needs >= 525.60.13): too-old" in res.output
    assert "install (fedora):" in res.output


def test_cli_recipe_bad_profile(runner, tmp_path):
    r, cli = runner
    bad = tmp_path / "m.json"
    bad.write_text('{"os": "linux"}')
    res = r.invoke(cli, ["recipe", "--profile", str(bad)])
    assert res.exit_code == 2 and "not a builddoctor machine profile" in res.output


def test_all_variants_cache_does_not_trip_isa_check():
    cache = {"GGML_CPU_ALL_VARIANTS": "ON", "GGML_BACKEND_DL": "ON", "GGML_NATIVE": "OFF", "GGML_AVX512": "ON"}
    assert check_cmake_options(cache, machine("zen3-desktop")) == []
    assert codes(check_cmake_options({"GGML_AVX512": "ON"}, machine("zen3-desktop"))) == ["BD407"]


def test_source_tree_is_read_when_given(pinned_source):
    assert codes(check_flags("-DLLAMA_CUDA=ON -DGGML_CUDA_FA=ON", None, source=pinned_source)) == ["BD401"]
