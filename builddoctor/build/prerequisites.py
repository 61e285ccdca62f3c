"""What must be installed before a build starts, and the install hints for what is not."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from builddoctor import platforms
from builddoctor.build.settings import data, plan_options, uses_cuda
from builddoctor.profiles import BuildPlan

BLOCKING = ("missing", "too-old", "too-new")


def missing_tools(plan: BuildPlan, env: dict[str, str]) -> list[str]:
    path = env.get("PATH")
    opts = plan_options(plan)
    need = [
        "cmake",
        "ninja",
        opts.get("CMAKE_C_COMPILER") or env.get("CC", "cc"),
        opts.get("CMAKE_CXX_COMPILER") or env.get("CXX", "c++"),
    ]
    if uses_cuda(plan):
        nvcc = env.get("CUDACXX") or "nvcc"
        if shutil.which(nvcc, path=path) is None and not any(Path(p).is_file() for p in ("/usr/local/cuda/bin/nvcc",)):
            return [n for n in need if shutil.which(n, path=path) is None] + ["nvcc"]
    return [n for n in need if shutil.which(n, path=path) is None]


def unmet_prerequisites(plan: BuildPlan, exclude: Sequence[str] = ()) -> list:
    """The plan's prerequisites that the resolver found missing or of the wrong version.

    Checked before configuring: a missing glslc or too-old Vulkan headers otherwise cost a
    configure (or a 5-minute compile) before failing. Drivers are not needed to compile, and a
    prerequisite marked ``required = false`` only costs a feature (the recipe's notes say which).
    """
    return [
        p
        for p in plan.prerequisites
        if p.status in BLOCKING and p.required and p.kind != "driver" and p.name not in exclude
    ]


def _install_command(p) -> str:
    """The prerequisite's install command for this system (its recipe's, first one as fallback)."""
    return p.install.get(_distro()) or next(iter(p.install.values()), "install it and put it on PATH")


def prerequisite_hint(p) -> str:
    cmd = _install_command(p)
    if p.status == "missing":
        state = "not found"
    else:
        bound = f"needs {p.min_version} or newer" if p.status == "too-old" else f"needs below {p.max_version}"
        state = f"{p.found_version} found, {bound}"
    why = f"\n      why: {p.reason}" if p.reason else ""
    return f"  {p.name} ({state}): {cmd}{why}"


def install_hint(tools: list[str], plan: BuildPlan | None = None) -> str:
    table = data()["tools"]
    distro = _distro()
    lines = []
    for tool in tools:
        prereq = next((p for p in (plan.prerequisites if plan else []) if p.name == tool and p.install), None)
        if prereq is not None:
            lines.append(f"  {tool}: {_install_command(prereq)}")
            continue
        key = tool if tool in table else Path(tool).name
        info = table.get(key, table.get("cc" if "cc" in key or "gcc" in key or "clang" in key else "", {}))
        cmd = info.get(distro) or info.get("debian") or "install it and put it on PATH"
        lines.append(f"  {tool} ({info.get('why', 'needed to build')}): {cmd}")
    return "\n".join(lines)


def unmet_message(plan: BuildPlan, env: dict[str, str]) -> str | None:
    """Why the build cannot start (the tools and prerequisites not installed), or None when it can."""
    missing = missing_tools(plan, env)
    unmet = unmet_prerequisites(plan, exclude=missing)
    if not missing and not unmet:
        return None
    names = missing + [p.name for p in unmet]
    lines = [install_hint(missing, plan)] if missing else []
    lines += [prerequisite_hint(p) for p in unmet]
    return (
        f"Missing build prerequisites: {', '.join(names)}. builddoctor installs nothing by "
        "itself; install them, then run the build again:\n" + "\n".join(lines)
    )


def _distro() -> str:
    """This machine's install-command key (platforms.install_keys: the one reading of a distribution)."""
    return platforms.install_keys(sys.platform, platforms.this_description())[0]
