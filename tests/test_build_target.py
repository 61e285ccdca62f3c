"""Plans for another machine never compile for this one (slow: two real llama-bench builds).

`recipe --profile` of a recorded Zen 3 and `--cpuinfo` of a recorded Granite Rapids, built here
(whatever CPU "here" is): the CPU code must use exactly the target's instruction sets, shown by
`check` against the target and by an independent disassembly (binutils' objdump).
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builddoctor import build
from builddoctor.profiles import BuildPlan

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
ZEN3 = FIXTURES / "machines" / "zen3-desktop.json"
GRANITE = FIXTURES / "cpuinfo" / "graniterapids-xeon-6975p-aws.txt"


def bd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=REPO
    )


def planned_for(tmp_path: Path, *machine_args: str) -> BuildPlan:
    saved = tmp_path / "plan.json"
    done = bd("recipe", *machine_args, "--save", saved)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = BuildPlan.from_json(saved.read_text())
    plan.targets = ["llama-bench"]
    return plan


def built(plan: BuildPlan) -> Path:
    from tests.llama_builds import _source_dir

    res = build.build(plan, _source_dir(), cache_root=REPO / ".cache" / "builder-tests")
    assert res.status in ("ok", "cached"), res.error
    return Path(res.build_dir) / "bin"


def checked_against_target(bin_dir: Path, *machine_args: str) -> dict:
    """`check` of the build against the machine it was planned for: its CPU code matches that CPU."""
    done = bd("check", "--json", *machine_args, bin_dir)
    report = json.loads(done.stdout)["builds"][0]
    got = {f["code"] for f in report["findings"]}
    assert "ok:cpu" in got and not got & {"BD130", "BD131", "BD133", "BD134"}, report["findings"]
    return report["build"]


def disassembly(lib: Path) -> str:
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    done = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def cpu_lib(bin_dir: Path) -> Path:
    return next(p for p in sorted(bin_dir.iterdir()) if re.match(r"libggml-cpu\.so", p.name) and not p.is_symlink())


@pytest.fixture(autouse=True)
def x86_only():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the recorded targets are x86-64 machines; this host cannot compile for them natively")


def test_zen3_profile_builds_avx2_code_only(tmp_path):
    plan = planned_for(tmp_path, "--profile", ZEN3)
    opts = {o.name: o.value for o in plan.options}
    assert opts["GGML_NATIVE"] == "OFF" and "not for the machine that builds it" in next(
        o.reason for o in plan.options if o.name == "GGML_NATIVE"
    )
    assert opts["GGML_AVX2"] == "ON" and opts["GGML_FMA"] == "ON" and opts["GGML_AVX512"] == "OFF"
    bin_dir = built(plan)
    assert checked_against_target(bin_dir, "--profile", ZEN3)["isa_level"] == "avx2"
    # an independent reading: no AVX-512 register, mask or AMX tile anywhere in the CPU backend
    asm = disassembly(cpu_lib(bin_dir))
    assert "%ymm" in asm and "vfmadd" in asm
    assert "%zmm" not in asm and "%tmm" not in asm and not re.search(r"\{%k[1-7]\}", asm)


def test_granite_rapids_cpuinfo_builds_avx512_vnni_bf16_without_amx(tmp_path):
    plan = planned_for(tmp_path, "--cpuinfo", GRANITE)
    opts = {o.name: o.value for o in plan.options}
    assert opts["GGML_NATIVE"] == "OFF"
    assert {
        k: opts[k] for k in ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX512_VBMI", "GGML_AVX_VNNI")
    } == dict.fromkeys(
        ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX512_VBMI", "GGML_AVX_VNNI"), "ON"
    )
    # the pinned llama.cpp's AMX kernels are a known-bad row: AMX is left out, and the plan says why
    assert opts["GGML_AMX_INT8"] == "OFF" and "amx-mul-mat-crash" in next(
        o.reason for o in plan.options if o.name == "GGML_AMX_INT8"
    )
    bin_dir = built(plan)
    found = checked_against_target(bin_dir, "--cpuinfo", GRANITE)
    assert found["isa_level"] == "avx512" and {"AVX512_VNNI", "AVX512_BF16"} <= set(found["isa"])
    asm = disassembly(cpu_lib(bin_dir))
    assert "%zmm" in asm and "vpdpbusd" in asm and "vdpbf16ps" in asm
    assert "%tmm" not in asm and "tdpbssd" not in asm
