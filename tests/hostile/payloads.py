"""Hostile inputs made in tmp_path: marker-writing programs, a tiny llama.cpp-shaped tree, plans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from builddoctor.profiles import BuildPlan, PlanOption

MINI = Path(__file__).resolve().parent.parent / "fixtures" / "build" / "miniproj"


def marker_program(path: Path, marker: Path, then: str = "") -> Path:
    """A program that leaves ``marker`` when anything runs it, then ``then`` (a shell line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho ran >> '{marker}'\n{then}\n")
    path.chmod(0o755)
    return path


def fake_llama_tree(root: Path) -> Path:
    """The mini project (real cmake + ninja + cc in seconds) with the files that make builddoctor
    take a folder for a llama.cpp checkout, so that a build (and a payload) really runs."""
    shutil.copytree(MINI, root)
    (root / "ggml").mkdir()
    (root / "ggml" / "CMakeLists.txt").write_text("\n")
    (root / "include").mkdir()
    (root / "include" / "llama.h").write_text("\n")
    return root


def plan_file(path: Path, options: dict[str, str] | None = None, env: dict[str, str] | None = None, **fields) -> Path:
    plan = BuildPlan(
        goal="native",
        backend="cpu",
        targets=["llama-bench"],
        options=[PlanOption(k, v, "from a plan file", "user") for k, v in (options or {}).items()],
        env=dict(env or {}),
    )
    doc = plan.to_dict()
    doc.update(fields)
    path.write_text(json.dumps(doc))
    return path


def tree_files(root: Path) -> dict[str, int]:
    """Every file under ``root`` and its size: what a command must leave as it was."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
