"""A real GPU backend without a GPU: the Vulkan build, run on Mesa's CPU-emulated llvmpipe device (slow).

Needs Debian 12's glslc, libvulkan-dev, spirv-headers, mesa-vulkan-drivers and vulkan-tools, and Vulkan
headers of 1.3.272 or newer (Debian 12 has 1.3.239): `.ci/vulkan-sdk` installs the packages, unpacks
Debian 13's headers into ~/.cache/builddoctor/vulkan-sdk and prints that folder, which the tests pass as
VULKAN_SDK. CI runs it; without it these tests skip and say so.

Everything goes through the command line as a user would type it: recipe, build, check, bench.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SDK = Path(os.environ.get("BUILDDOCTOR_TEST_VULKAN_SDK") or "~/.cache/builddoctor/vulkan-sdk").expanduser()
BUILD_TIMEOUT = 3 * 3600  # cold, on a busy 2-core machine


@pytest.fixture(scope="module")
def vk_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("vk-home")
    env = {
        **os.environ,
        "BUILDDOCTOR_HOME": str(home),
        "GGML_VK_VISIBLE_DEVICES": "0",
    }  # ggml lists a CPU-type device only when named
    if (SDK / "include" / "vulkan" / "vulkan_core.h").is_file():
        env["VULKAN_SDK"] = str(SDK)
    missing = [t for t in ("glslc", "vulkaninfo") if shutil.which(t) is None]
    # builddoctor's own probe says whether the headers it would build with are new enough
    probe = json.loads(bd(env, "probe", "--json").stdout)
    headers = probe["toolchains"].get("vulkan-headers") or {}
    version = headers.get("version") or "0"
    if tuple(int(x) for x in version.split(".")) < (1, 3, 272):
        missing.append(f"Vulkan headers 1.3.272 or newer (found {version})")
    if missing:
        pytest.skip(f"the Vulkan toolchain is not here ({', '.join(missing)}): run .ci/vulkan-sdk")
    from builddoctor.source import ensure_source

    ensure_source()
    return env


def bd(env, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def vk_build(vk_env, tmp_path_factory):
    """`recipe --backend vulkan --save`, trimmed to llama-bench (CI time), then `build --plan`."""
    plan_file = tmp_path_factory.mktemp("vk-plan") / "plan.json"
    done = bd(vk_env, "recipe", "--backend", "vulkan", "--save", str(plan_file))
    assert done.returncode in (0, 1), done.stderr
    plan = json.loads(plan_file.read_text())
    assert {o["name"]: o["value"] for o in plan["options"]}["GGML_VULKAN"] == "ON"
    assert all(p["status"] == "found" for p in plan["prerequisites"]), plan["prerequisites"]
    plan["targets"] = ["llama-bench"]
    plan_file.write_text(json.dumps(plan))
    done = bd(vk_env, "build", "--plan", str(plan_file), "--json", timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] in ("ok", "cached")
    return Path(result["build_dir"]) / "bin"


def test_resolver_never_chooses_the_emulated_device(vk_env):
    done = bd(vk_env, "recipe", "--json")
    plan = json.loads(done.stdout)
    assert plan["backend"] == "cpu"
    assert not any(o["name"] == "GGML_VULKAN" and o["value"] == "ON" for o in plan["options"])
    vulkan = [s["reason"] for s in plan["skipped"] if s["what"] == "Vulkan"]
    assert vulkan and "llvmpipe" in vulkan[0] and "CPU-emulated" in vulkan[0]


def test_check_reports_the_vulkan_backend_and_the_llvmpipe_device(vk_env, vk_build):
    done = bd(vk_env, "check", str(vk_build), "--json")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    builds = report["builds"]
    assert len(builds) == 1
    build = builds[0]["build"]
    assert "Vulkan" in build["backends"] and "CPU" in build["backends"]
    assert any("llvmpipe" in d for d in build["devices"]), build["devices"]
    gpus = report["machine"]["gpus"]
    assert any("llvmpipe" in g["name"] and g["cpu_emulated"] for g in gpus)
    # the text report says the same in words
    text = bd(vk_env, "check", str(vk_build)).stdout
    assert "Vulkan" in text and "llvmpipe" in text


def test_smoke_benchmark_runs_on_the_vulkan_device(vk_env, vk_build):
    done = bd(vk_env, "bench", str(vk_build), "--size", "8", "--reps", "1", "--no-bandwidth", "--json", timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    res = json.loads(done.stdout)["results"][0]
    assert res["error"] is None
    assert res["n_gpu_layers"] == 99 and res["backends"] == "Vulkan" and "llvmpipe" in res["gpu_info"]
    assert res["pp"]["mean"] > 0 and res["tg"]["mean"] > 0
    assert res["roofline_fraction"] is None  # host bandwidth does not bound a GPU run


def test_without_the_device_choice_the_build_says_it_found_no_gpu(vk_env, vk_build):
    env = {k: v for k, v in vk_env.items() if k != "GGML_VK_VISIBLE_DEVICES"}
    done = bd(env, "check", str(vk_build), "--json")
    build = json.loads(done.stdout)["builds"][0]["build"]
    assert not any("llvmpipe" in d for d in build["devices"])  # ggml skips CPU-type devices by default
