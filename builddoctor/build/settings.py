"""What a build is set up from: the data file, the plan's options and targets, the pin, the environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builddoctor import paths, proc
from builddoctor.cmake_bool import is_on
from builddoctor.profiles import BuildPlan
from builddoctor.source import load_pin
from builddoctor.tomlload import data_file

LOCK_PATH = Path("/tmp/builddoctor-llama-build.lock")  # shared with every llama.cpp compile on this machine

MARKER = "builddoctor-build.json"
LOG_NAME = "build.log"
BUILD_TIMEOUT = 3600.0  # compile; generous, but a limit
CONFIGURE_TIMEOUT = 600.0
TOOL_TIMEOUT = 20.0
# Passed from the user's environment to cmake: compilers, and where toolkits live (VULKAN_SDK is
# how the LunarG SDK, or newer headers unpacked by hand, are found).
COMPILER_ENV = (
    "CC",
    "CXX",
    "CUDACXX",
    "CUDAHOSTCXX",
    "CUDAToolkit_ROOT",
    "CCACHE_DIR",
    "CCACHE_MAXSIZE",
    "VULKAN_SDK",
    "CMAKE_PREFIX_PATH",
)


def default_lock_path() -> Path:
    """The machine-wide build lock (BUILDDOCTOR_BUILD_LOCK overrides, e.g. for tests)."""
    return Path(os.environ.get("BUILDDOCTOR_BUILD_LOCK") or LOCK_PATH)


def data() -> dict:
    """builddoctor/data/build.toml (the data layer's cached reader)."""
    return data_file("build.toml")


@dataclass
class ProgressEvent:
    stage: str  # configure, compile, done, failed
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str = ""


ProgressFn = Callable[[ProgressEvent], None]


def default_cache_root() -> Path:
    return paths.cache_dir() / "builds"


def targets_of(plan: BuildPlan) -> list[str]:
    return list(plan.targets) or list(data()["default_targets"])


def plan_options(plan: BuildPlan) -> dict[str, str]:
    return {o.name: o.value for o in plan.options}


def uses_cuda(plan: BuildPlan) -> bool:
    opts = plan_options(plan)
    return plan.backend.lower() == "cuda" or is_on(opts.get("GGML_CUDA"))


def pin_data() -> tuple[str, int]:
    """(short commit, build number) of the pinned tree, from builddoctor/data/llama_pin.toml."""
    pin = load_pin()  # the one reader of the pin
    return pin.short_commit, pin.build_number


def is_git_checkout(source_dir: Path) -> bool:
    return (source_dir / ".git").exists()


def is_pinned_tree(source_dir: Path) -> bool:
    try:
        return source_dir.resolve() == paths.vendor_dir().resolve()
    except OSError:
        return False


def build_env(plan: BuildPlan, cache_root: Path, base_env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base_env) if base_env is not None else proc.clean_env()
    if base_env is None:
        for name in COMPILER_ENV:
            if name in os.environ:
                env[name] = os.environ[name]
    env.update(plan.env)
    sdk = env.get("VULKAN_SDK")
    if sdk:
        # CMake's FindVulkan reads VULKAN_SDK, but find_package(SPIRV-Headers CONFIG) only looks
        # in prefixes: make the SDK one, as the LunarG SDK's setup-env.sh does through PATH.
        prefixes = [p for p in env.get("CMAKE_PREFIX_PATH", "").split(os.pathsep) if p]
        if sdk not in prefixes:
            env["CMAKE_PREFIX_PATH"] = os.pathsep.join([sdk, *prefixes])
    # ccache: paths under the cache folder are rewritten relative to each compile's working
    # folder, so the temp folder's name does not spoil hits between builds.
    env.setdefault("CCACHE_BASEDIR", str(cache_root.resolve()))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    return env


def environment(
    plan: BuildPlan, source_dir: Path, cache_root: Path, base_env: dict[str, str] | None = None
) -> dict[str, str]:
    """Exactly the environment the build starts cmake with (``--dry-run`` prints it)."""
    env = build_env(plan, cache_root, base_env)
    if not is_git_checkout(source_dir):
        # ggml's CMake asks git for its commit; in the pinned tree (inside builddoctor's own
        # repository) git would answer with builddoctor's commit: stop its search at the tree.
        env["GIT_CEILING_DIRECTORIES"] = str(source_dir)
    return env
