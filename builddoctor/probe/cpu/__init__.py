"""The CPU: parse /proc/cpuinfo or macOS ``sysctl -a`` text, or probe this machine.

Raw OS flags become features in llama.cpp's vocabulary through ``data/cpu_features.toml``;
the llama.cpp CPU backend variants this CPU can run come from ``data/cpu_variants.toml``
(GGML_CPU_ALL_VARIANTS of the pinned tree, scored as llama.cpp's loader scores them);
the microarchitecture name from ``data/cpu_microarch.toml``. One module per job: facts (the
result and its last step), variants, microarch, proc_cpuinfo and sysctl (the text readers), read
(a recorded text or this machine).
"""

from builddoctor.probe.cpu.facts import CpuFacts, CpuTextError, finish
from builddoctor.probe.cpu.proc_cpuinfo import parse_cpuinfo
from builddoctor.probe.cpu.read import decode, detect_kind, live, parse_text
from builddoctor.probe.cpu.sysctl import parse_sysctl
from builddoctor.probe.cpu.variants import feature_family, features_from_flags, normalize_arch, variants_for

__all__ = [
    "CpuFacts",
    "CpuTextError",
    "decode",
    "detect_kind",
    "feature_family",
    "features_from_flags",
    "finish",
    "live",
    "normalize_arch",
    "parse_cpuinfo",
    "parse_sysctl",
    "parse_text",
    "variants_for",
]
