"""Headers and libraries found by path: the Vulkan SDK's versions, read before any configure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SDK = Path(__file__).parent / "fixtures" / "vulkan-sdk-debian12"


def _sdk(tmp_path: Path) -> Path:
    sdk = tmp_path / "sdk"
    shutil.copytree(SDK, sdk)
    lib = sdk / "lib"
    lib.mkdir()
    (lib / "libvulkan.so.1.3.239").write_bytes(b"")
    (lib / "libvulkan.so.1").symlink_to("libvulkan.so.1.3.239")
    (lib / "libvulkan.so").symlink_to("libvulkan.so.1")
    return sdk


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_probe_reads_vulkan_sdk_versions(tmp_path):
    sdk = _sdk(tmp_path)
    done = run("probe", "--json", env={"VULKAN_SDK": str(sdk)})
    assert done.returncode == 0, done.stderr
    tools = json.loads(done.stdout)["toolchains"]
    assert tools["vulkan-headers"]["version"] == "1.3.239"
    assert tools["vulkan-headers"]["path"] == str(sdk / "include" / "vulkan" / "vulkan_core.h")
    assert tools["spirv-headers"]["version"] == "1.5.5"
    assert tools["libvulkan"]["version"] == "1.3.239"


def test_recipe_says_debian12_vulkan_headers_are_too_old(tmp_path):
    sdk = _sdk(tmp_path)
    done = run("recipe", "--backend", "vulkan", "--json", env={"VULKAN_SDK": str(sdk)})
    assert done.returncode in (0, 1), done.stderr
    plan = json.loads(done.stdout)
    prereq = {p["name"]: p for p in plan["prerequisites"]}
    assert prereq["vulkan-headers"]["status"] == "too-old"
    assert prereq["vulkan-headers"]["found_version"] == "1.3.239"
    assert prereq["spirv-headers"]["status"] == "found"
    assert prereq["libvulkan"]["status"] == "found"


def test_build_refuses_debian12_headers_before_configuring(tmp_path):
    """The 5-minute compile failure the old headers lead to is caught before cmake runs."""
    from builddoctor import errors
    from builddoctor.source import ensure_source

    ensure_source()
    sdk = _sdk(tmp_path)
    cache = tmp_path / "cache"
    done = run(
        "build",
        "--backend",
        "vulkan",
        env={"VULKAN_SDK": str(sdk), "BUILDDOCTOR_CACHE": str(cache), "BUILDDOCTOR_HOME": str(tmp_path / "h")},
    )
    assert done.returncode == errors.TOOLCHAIN, done.stdout + done.stderr
    assert "vulkan-headers (1.3.239 found, needs 1.3.272 or newer)" in done.stderr
    assert "LayerSettingEXT" in done.stderr  # why, in the recipe's words
    assert not cache.exists() or not any(cache.iterdir())
