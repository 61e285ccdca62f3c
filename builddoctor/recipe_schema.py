"""What a recipe is: the vocabulary of the recipe format (kinds, goals, condition keys,
placeholders) and the dataclasses a recipe file is read into.

The format is docs/recipes.md; reading and checking a file is :mod:`builddoctor.recipe_parse`,
finding the files and matching them to a machine :mod:`builddoctor.recipes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builddoctor import errors


class RecipeError(errors.UserError):
    """A recipe file is empty, malformed, or contradicts another one."""

    exit_code = errors.USAGE


# --------------------------------------------------------------------------- vocabulary

KINDS = ("backend", "concern")
GOALS = ("native", "portable")
INSTALL_KEYS = ("debian", "fedora", "arch", "macos", "windows")
PREREQ_KINDS = ("tool", "library", "header", "driver")

#: placeholders a recipe may use in values and reasons ({name}); resolve/facts.py computes them
PLACEHOLDERS = frozenset(
    {
        "cpu_model",
        "microarch",
        "cpu_variant",
        "cpu_isa",
        "cpu_features",
        "os_name",
        "gpu_names",
        "nvidia_gpus",
        "amd_gpus",
        "intel_gpus",
        "apple_gpus",
        "cuda_architectures",
        "cuda_arch_detail",
        "nvcc_version",
        "nvcc_path",
        "cuda_toolkit_root",
        "hip_targets",
        "rocm_clang",
        "rocm_path",
        "compiler",
        "emulated_note",
        "avoid_reason",
        "explicit_reason",
    }
)

#: condition keys (see docs/recipes.md); value: what the key accepts
CONDITION_KEYS = {
    "os": "str|list",  # linux, darwin, windows
    "arch": "str|list",  # x86_64, aarch64, riscv64, ppc64le, s390x (arm64 is read as aarch64)
    "cpu_vendor": "str|list",  # GenuineIntel, AuthenticAMD, Apple, ARM...
    "microarch": "str|list",
    "features_all": "list",  # CPU has every one (llama.cpp names: AVX2, AVX512, DOTPROD...)
    "features_any": "list",
    "features_none": "list",
    "cpu_code": "str|list",  # native (-march=native for the building machine) or explicit (ISA spelled out)
    "avoided_any": "list",  # a known-bad row takes one of these features of this CPU away
    "gpu_vendor": "str|list",  # a real (not CPU-emulated) GPU of this vendor is present
    "gpu_api": "str|list",  # a real GPU offers this API (cuda, hip, metal, vulkan, sycl)
    "gpu_emulated": "bool",  # a CPU-emulated GPU (llvmpipe...) is present / absent
    "gpu": "gpu-condition",  # one real GPU matches all of: vendor, api, name_any, name_none, min_memory_mib
    "tool": "str|list",  # all these tools were found
    "tool_missing": "str|list",  # none of these tools were found
    "goal": "str|list",  # native, portable
    "backend": "str|list",  # the backend chosen for this plan (concern recipes)
    "any": "list-of-conditions",  # at least one holds
    "not": "condition",  # it does not hold
}

# --------------------------------------------------------------------------- model


@dataclass
class OptionSpec:
    name: str
    value: str
    reason: str
    when: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrereqSpec:
    name: str
    kind: str = "tool"
    tools: list[str] = field(default_factory=list)  # alternatives looked up in machine.toolchains
    min_version: str | None = None
    max_version: str | None = None  # exclusive upper bound ("13" means: below 13)
    reason: str = ""
    when: dict[str, Any] = field(default_factory=dict)
    install: dict[str, str] = field(default_factory=dict)
    required: bool = True  # False: the build works without it, only without the feature it brings


@dataclass
class Recipe:
    name: str
    path: Path
    kind: str = "concern"
    title: str = ""
    summary: str = ""
    backend: str | None = None  # kind=backend: the --backend name it answers to
    priority: int = 0  # kind=backend: higher is preferred when several apply
    switch: str | None = None  # the option that turns this backend on (GGML_CUDA)
    toolkit: str | None = None  # the tool that compiles for it (nvcc): named when it is skipped
    when: dict[str, Any] = field(default_factory=dict)
    unmet: dict[str, str] = field(default_factory=dict)  # condition key -> sentence when it fails
    preferred_because: str = ""
    conflicts: list[str] = field(default_factory=list)
    report_skip: bool = False
    checks: list[str] = field(default_factory=list)  # named checks implemented in resolve/checks.py
    notes: list[str] = field(default_factory=list)
    options: list[OptionSpec] = field(default_factory=list)
    prerequisites: list[PrereqSpec] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.title or self.name

    @property
    def file(self) -> str:
        return self.path.name
