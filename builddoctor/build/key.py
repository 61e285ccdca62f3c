"""The cache key: what makes two builds the same (source, options, targets, compilers, recipe)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from builddoctor import proc
from builddoctor.build.settings import (
    COMPILER_ENV,
    TOOL_TIMEOUT,
    data,
    is_git_checkout,
    plan_options,
    targets_of,
    uses_cuda,
)
from builddoctor.profiles import BuildPlan


def source_identity(source_dir: Path) -> str:
    """What the sources are: git HEAD + local changes for a checkout, else a walk of the tree.

    The walk hashes each file's path, size and modification time (content hashing of 180 MB
    costs more than the build cache saves on a small change); build folders (those holding a
    CMakeCache.txt), hidden folders and ``models/`` are left out.
    """
    source_dir = source_dir.resolve()
    if is_git_checkout(source_dir):
        head = proc.run(["git", "-C", str(source_dir), "rev-parse", "HEAD"], timeout=TOOL_TIMEOUT)
        if head.ok:
            diff = proc.run(["git", "-C", str(source_dir), "diff", "HEAD", "--no-color", "--no-ext-diff"], timeout=60)
            untracked = proc.run(["git", "-C", str(source_dir), "status", "--porcelain", "-uall"], timeout=60)
            h = hashlib.sha256()
            h.update(head.stdout.strip().encode())
            h.update(diff.stdout.encode())
            h.update(untracked.stdout.encode())
            return f"git:{head.stdout.strip()}:{h.hexdigest()[:16]}"
    return _tree_identity(source_dir)


def _tree_identity(source_dir: Path) -> str:
    """A source tree without git, as the paths, sizes and mtimes of its files."""
    h = hashlib.sha256()
    count = 0
    for root, dirs, files in os.walk(source_dir):
        if "CMakeCache.txt" in files and Path(root) != source_dir:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (Path(root) == source_dir and d == "models"))
        for name in sorted(files):
            p = Path(root, name)
            try:
                st = p.lstat()
            except OSError:
                continue
            h.update(f"{p.relative_to(source_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            count += 1
    return f"tree:{count}:{h.hexdigest()}"


def _first_line(argv: list[str], env: dict[str, str]) -> str:
    res = proc.run(argv, timeout=TOOL_TIMEOUT, env=env)
    if not res.ok:
        return f"{argv[0]}: {res.error or res.returncode}"
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    return lines[0].strip() if lines else ""


def compiler_versions(plan: BuildPlan, env: dict[str, str]) -> dict[str, str]:
    cc = env.get("CC", "cc")
    cxx = env.get("CXX", "c++")
    out = {
        "cc": f"{shutil.which(cc, path=env.get('PATH')) or cc}: {_first_line([cc, '--version'], env)}",
        "c++": f"{shutil.which(cxx, path=env.get('PATH')) or cxx}: {_first_line([cxx, '--version'], env)}",
    }
    if uses_cuda(plan):
        nvcc = env.get("CUDACXX", "nvcc")
        res = proc.run([nvcc, "--version"], timeout=TOOL_TIMEOUT, env=env)
        out["nvcc"] = (res.output.strip().splitlines() or [""])[-1] if res.ok else "missing"
    return out


def cache_key(plan: BuildPlan, source_dir: Path, env: dict[str, str], *, identity: str | None = None) -> str:
    doc = {
        "recipe": data()["recipe_version"],
        "source": identity or source_identity(source_dir),
        "source_dir": str(source_dir.resolve()),
        "options": sorted(plan_options(plan).items()),
        "targets": sorted(targets_of(plan)),
        "env": sorted(plan.env.items()),
        "compilers": compiler_versions(plan, env),
        "user_env": sorted((k, env[k]) for k in COMPILER_ENV if k in env and not k.startswith("CCACHE")),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]
