"""The report areas' checks, one module per area: the rules its checks name and its ok line.

A rule takes (build, machine, ctx) and returns None when its check does not apply or passes, or
its evidence (a Hit or a dict of template values, or a list of them when it fires several times).
What a finding says, how severe it is and how to fix it is in checks.toml, not here. Importing
this package registers every area's rules (areas.RULES) and validator (areas.VALIDATORS).
"""

from builddoctor.findings.areas import RULES, Context, Evidence, rule
from builddoctor.findings.rules import build_type, cpu, gpu, load, options, runtime, version
from builddoctor.findings.rules.base import _level_of, _same_arch, _variant_rank, closed_features

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
