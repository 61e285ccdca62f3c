"""The one command builder: the cmake commands ``build`` runs and ``recipe`` prints, and the job count."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from builddoctor import plan_policy
from builddoctor.build.settings import (
    data,
    default_cache_root,
    environment,
    is_git_checkout,
    is_pinned_tree,
    pin_data,
    targets_of,
    uses_cuda,
)
from builddoctor.profiles import BuildPlan
from builddoctor.resources import available_memory, cpu_count

#: the build folder's name in a dry run: the real key hashes the compilers' --version output and
#: the source tree's state, and a dry run neither runs a compiler nor reads the tree
KEY_PLACEHOLDER = "<key>"


def check_policy(plan: BuildPlan, source_dir: Path, env: dict[str, str], allowed_paths=()) -> None:
    """Refuse a plan that asks for more than llama.cpp options (plan_policy), before anything runs;
    compilers named in it are looked up on the PATH the build will use."""
    plan_policy.enforce(
        plan.to_dict(),
        where="The build plan",
        source=source_dir,
        allowed_paths=allowed_paths,
        search_path=env.get("PATH"),
    )


def _has_ccache(env: dict[str, str]) -> bool:
    return shutil.which("ccache", path=env.get("PATH")) is not None


def configure_command(plan: BuildPlan, source_dir: Path, build_dir: Path, env: dict[str, str]) -> list[str]:
    """The cmake configure command, the one builder: ``build`` runs it and ``recipe`` prints it."""
    cfg = data()["cmake"]
    argv = ["cmake", "-S", str(source_dir), "-B", str(build_dir), "-G", cfg["generator"], *plan.cmake_args()]
    have = {a.split("=", 1)[0][2:] for a in argv if a.startswith("-D")}
    extra = list(cfg["args"])
    if "CMAKE_BUILD_TYPE" not in have:
        extra.append(f"-DCMAKE_BUILD_TYPE={cfg['build_type']}")
    if _has_ccache(env):
        extra += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        if uses_cuda(plan):
            extra.append("-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache")
    if not is_git_checkout(source_dir):
        # llama.cpp asks git for its commit; in a tree without .git (the pinned one sits
        # inside another repository) that would find the wrong commit.
        commit, number = pin_data() if is_pinned_tree(source_dir) else ("unknown", 0)
        extra += [f"-DLLAMA_BUILD_COMMIT={commit}", f"-DLLAMA_BUILD_NUMBER={number}"]
    argv += [a for a in extra if a.split("=", 1)[0][2:] not in have]
    return argv


def compile_command(plan: BuildPlan, build_dir: Path, jobs: int) -> list[str]:
    return ["cmake", "--build", str(build_dir), "--target", *targets_of(plan), "-j", str(jobs)]


@dataclass
class DryRun:
    """What ``build`` would do, computed without running or writing anything."""

    commands: list[list[str]]
    env: dict[str, str]  # the whole environment cmake would start with
    build_dir: str  # <cache>/<key>


def commands(
    plan: BuildPlan,
    source_dir: Path,
    *,
    cache_root: Path | None = None,
    jobs: int | None = None,
    allowed_paths=(),
    build_dir: Path | None = None,
    policy: bool = True,
) -> DryRun:
    """The commands ``build`` would run (for --dry-run, and what ``recipe`` prints). Checks the plan's
    policy (unless ``policy`` is False: a recipe for another machine is built there); runs nothing
    (no compiler --version, no git), reads no source tree and creates no folder."""
    cache_root = Path(cache_root or default_cache_root()).absolute()
    source_dir = Path(source_dir).absolute()
    env = environment(plan, source_dir, cache_root)
    if policy:
        check_policy(plan, source_dir, env, allowed_paths)
    bdir = build_dir if build_dir is not None else cache_root / KEY_PLACEHOLDER
    return DryRun(
        [configure_command(plan, source_dir, bdir, env), compile_command(plan, bdir, jobs or choose_jobs(plan))],
        env,
        str(bdir),
    )


def choose_jobs(plan: BuildPlan, *, cores: int | None = None, mem_available: int | None = None) -> int:
    """Parallel compile jobs: one per core, fewer when memory would not hold them.

    A CUDA compile job (nvcc on ggml-cuda's template-heavy files) peaks at several GiB, a
    C++ one at about one: a plan that enables CUDA gets a larger share per job.
    """
    cores = cores or cpu_count()
    mem = mem_available if mem_available is not None else available_memory()
    cfg = data()["jobs"]
    per_job = (cfg["cuda_job_mib"] if uses_cuda(plan) else cfg["cxx_job_mib"]) * 1024 * 1024
    jobs = cores
    if mem:
        jobs = min(jobs, mem // per_job)
    return max(1, int(jobs))
