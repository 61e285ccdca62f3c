"""The facts that checks.toml's rules test, one small function each, in one module per report area.

A rule takes (build, machine, ctx) and returns None when its check does not apply or passes, or
its evidence (rules.base). Importing this package registers every area's rules in ``RULES``.
"""

from builddoctor.findings.rules import build_type, cpu, gpu, load, options, runtime, version
from builddoctor.findings.rules.base import (
    RULES,
    Context,
    Evidence,
    _level_of,
    _same_arch,
    _variant_rank,
    closed_features,
    rule,
)

__all__ = [
    "RULES",
    "Context",
    "Evidence",
    "_level_of",
    "_same_arch",
    "_variant_rank",
    "build_type",
    "closed_features",
    "cpu",
    "gpu",
    "load",
    "options",
    "rule",
    "runtime",
    "version",
]
