"""CPU parsing: recorded /proc/cpuinfo and sysctl dumps -> features, microarchitecture, llama.cpp variant;
and the data tables checked against the pinned llama.cpp sources."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builddoctor.probe import _data, cpu, cpu_from_file

FIX = Path(__file__).parent / "fixtures"

X86_BASE = {"SSE3", "SSSE3", "SSE41", "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"}
AVX512_SET = {"AVX512", "AVX512F", "AVX512CD", "AVX512VL", "AVX512DQ", "AVX512BW"}

# file -> (arch, microarch, features exactly, best variant, every variant it runs, threads, cores)
CASES = {
    "cpuinfo/sandybridge-i7-2600.txt": (
        "x86_64",
        "sandybridge",
        {"SSE3", "SSSE3", "SSE41", "SSE42", "AVX"},
        "sandybridge",
        ["x64", "sse42", "sandybridge"],
        8,
        4,
    ),
    "cpuinfo/haswell-i7-4770.txt": (
        "x86_64",
        "haswell",
        X86_BASE,
        "haswell",
        ["x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell"],
        8,
        4,
    ),
    "cpuinfo/cascadelake-xeon-8259cl-aws.txt": (
        "x86_64",
        "cascadelake",
        X86_BASE | AVX512_SET | {"AVX512_VNNI"},
        "cascadelake",
        ["x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell", "skylakex", "cascadelake"],
        4,
        2,
    ),
    "cpuinfo/sapphirerapids-xeon-8488c-aws.txt": (
        "x86_64",
        "sapphirerapids",
        X86_BASE
        | AVX512_SET
        | {"AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AVX512_FP16", "AVX_VNNI", "AMX_TILE", "AMX_INT8", "AMX_BF16"},
        "sapphirerapids",
        [
            "x64",
            "sse42",
            "sandybridge",
            "ivybridge",
            "piledriver",
            "haswell",
            "alderlake",
            "skylakex",
            "cannonlake",
            "cascadelake",
            "icelake",
            "cooperlake",
            "zen4",
            "sapphirerapids",
        ],
        4,
        2,
    ),
    # a KVM guest whose CPUID model (167) is Rocket Lake's number, with AMX and AVX512_FP16 in its flags:
    # named from the features (as archspec does), not from the model number
    "cpuinfo/alderlake-i9-12900k.txt": (
        "x86_64",
        "alderlake",
        X86_BASE | {"AVX_VNNI"},
        "alderlake",
        ["x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell", "alderlake"],
        24,
        16,
    ),
    "cpuinfo/zen2-ryzen7-3700x.txt": (
        "x86_64",
        "zen2",
        X86_BASE,
        "haswell",
        ["x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell"],
        16,
        8,
    ),
    "cpuinfo/zen3-epyc-vm-debian12.txt": (
        "x86_64",
        "zen3",
        X86_BASE,
        "haswell",
        ["x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell"],
        2,
        2,
    ),
    "cpuinfo/zen4-ryzen9-7950x.txt": (
        "x86_64",
        "zen4",
        X86_BASE | AVX512_SET | {"AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"},
        "zen4",
        [
            "x64",
            "sse42",
            "sandybridge",
            "ivybridge",
            "piledriver",
            "haswell",
            "skylakex",
            "cannonlake",
            "cascadelake",
            "icelake",
            "cooperlake",
            "zen4",
        ],
        32,
        16,
    ),
    "cpuinfo/zen4-epyc-9r14-aws.txt": (
        "x86_64",
        "zen4",
        X86_BASE | AVX512_SET | {"AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"},
        "zen4",
        [
            "x64",
            "sse42",
            "sandybridge",
            "ivybridge",
            "piledriver",
            "haswell",
            "skylakex",
            "cannonlake",
            "cascadelake",
            "icelake",
            "cooperlake",
            "zen4",
        ],
        2,
        2,
    ),
    "cpuinfo/graviton3-neoverse-v1-aws.txt": (
        "aarch64",
        "neoverse_v1",
        {"NEON", "ARM_FMA", "DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "MATMUL_INT8"},
        "armv8.6_1",
        ["armv8.0_1", "armv8.2_1", "armv8.2_2", "armv8.2_3", "armv8.6_1"],
        4,
        None,
    ),
    "cpuinfo/graviton4-neoverse-v2-aws.txt": (
        "aarch64",
        "neoverse_v2",
        {"NEON", "ARM_FMA", "DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "SVE2", "MATMUL_INT8"},
        "armv8.6_2",
        ["armv8.0_1", "armv8.2_1", "armv8.2_2", "armv8.2_3", "armv8.6_1", "armv8.6_2"],
        4,
        None,
    ),
    "cpuinfo/rpi5-cortex-a76.txt": (
        "aarch64",
        "cortex_a76",
        {"NEON", "ARM_FMA", "DOTPROD", "FP16_VECTOR_ARITHMETIC"},
        "armv8.2_2",
        ["armv8.0_1", "armv8.2_1", "armv8.2_2"],
        4,
        None,
    ),
    "cpuinfo/rpi3-armv7l-cortex-a53.txt": ("armv7l", "cortex_a53", {"NEON", "ARM_FMA"}, None, [], 4, None),
    "cpuinfo/riscv64-spacemit-k1.txt": ("riscv64", "x60", {"RVV"}, "riscv64_v", ["riscv64_0", "riscv64_v"], 8, None),
    "cpuinfo/riscv64-visionfive2-u74.txt": ("riscv64", "u74-mc", set(), "riscv64_0", ["riscv64_0"], 4, None),
    "cpuinfo/power9-talos2.txt": (
        "ppc64le",
        "power9",
        {"POWER7", "POWER8", "POWER9", "VSX"},
        "power9",
        ["power0", "power7_1", "power8_1", "power7_2", "power8_2", "power9"],
        4,
        None,
    ),
    "cpuinfo/s390x-z15.txt": ("s390x", "z15", {"VXE", "VXE2"}, "z15", ["z15"], 4, None),
    "sysctl/macos14-apple-m2.txt": (
        "aarch64",
        "m2",
        {"NEON", "ARM_FMA", "DOTPROD", "FP16_VECTOR_ARITHMETIC", "MATMUL_INT8"},
        "apple_m2_m3",
        ["apple_m1", "apple_m2_m3"],
        8,
        8,
    ),
    "sysctl/macos15-apple-m1.txt": (
        "aarch64",
        "m1",
        {"NEON", "ARM_FMA", "DOTPROD", "FP16_VECTOR_ARITHMETIC"},
        "apple_m1",
        ["apple_m1"],
        8,
        8,
    ),
    "sysctl/macos15-apple-m4.txt": (
        "aarch64",
        "m4",
        {"NEON", "ARM_FMA", "DOTPROD", "FP16_VECTOR_ARITHMETIC", "MATMUL_INT8", "SME", "SME2"},
        "apple_m4",
        ["apple_m1", "apple_m2_m3", "apple_m4"],
        10,
        10,
    ),
    "sysctl/macos13-intel-i9-9880h.txt": (
        "x86_64",
        "coffeelake",
        X86_BASE,
        "haswell",
        ["x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell"],
        16,
        8,
    ),
}

# a KVM guest whose CPUID model (167) is Rocket Lake's number, with AMX and AVX512_FP16 in its flags: named
# from the features (as archspec does), not from the model number; otherwise the Sapphire Rapids case, 2 vCPUs
CASES["cpuinfo/kvm-xeon-amx-model167.txt"] = CASES["cpuinfo/sapphirerapids-xeon-8488c-aws.txt"][:5] + (2, 2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_cpu(name):
    arch, microarch, features, variant, variants, threads, cores = CASES[name]
    facts = cpu_from_file(FIX / name)
    c = facts.cpu
    assert c.arch == arch
    assert c.microarch == microarch
    assert set(c.features) == features
    assert c.variant == variant
    assert c.variants == variants
    assert c.threads == threads
    assert c.cores == cores
    assert c.features == sorted(c.features) and c.flags == sorted(c.flags)
    kind = "sysctl" if name.startswith("sysctl/") else "cpuinfo"
    assert c.source == f"{kind}:{FIX / name}"
    assert facts.os == ("darwin" if kind == "sysctl" else "linux")


def test_fixture_set_covers_the_issue():
    """At least eight realistic dumps: Intel and AMD of several generations, with/without AVX-512 and AMX,
    an aarch64 server, a Pi-class board, macOS on Apple Silicon and on Intel."""
    variants = {name: CASES[name][3] for name in CASES}
    assert len([n for n in CASES if n.startswith("cpuinfo/")]) >= 8
    assert {"haswell", "cascadelake", "sapphirerapids", "alderlake", "zen4"} <= set(variants.values())
    assert any("AMX_INT8" in CASES[n][2] for n in CASES)
    assert any(CASES[n][0] == "aarch64" and "SVE" in CASES[n][2] for n in CASES if n.startswith("cpuinfo/"))
    assert variants["sysctl/macos14-apple-m2.txt"] == "apple_m2_m3"
    for name in CASES:
        assert (FIX / name).stat().st_size > 500, name


def test_model_number_kept_when_features_agree():
    """The model number names the CPU unless the flags contradict it: a Rocket Lake (model 167) without AMX
    stays rocketlake; the same model with AMX is named from its features."""
    text = (FIX / "cpuinfo/kvm-xeon-amx-model167.txt").read_text()
    plain = re.sub(r" (amx_bf16|amx_tile|amx_int8|avx512_fp16|avx512_bf16|avx_vnni)(?= )", "", text)
    assert cpu.parse_cpuinfo(plain).cpu.microarch == "rocketlake"
    assert cpu.parse_cpuinfo(text).cpu.microarch == "sapphirerapids"


def test_cpuinfo_without_final_newline_accepted():
    """A copy whose last flags line has no newline after it is whole when another entry has the same line."""
    text = (FIX / "cpuinfo/kvm-xeon-amx-model167.txt").read_text()
    lines = text.rstrip("\n").splitlines()
    last_flags = max(i for i, ln in enumerate(lines) if ln.startswith("flags"))
    cut = "\n".join(lines[: last_flags + 1])  # ends right after the last flags line, no newline
    assert not cut.endswith("\n")
    facts = cpu.parse_cpuinfo(cut)
    assert facts.cpu.threads == 2 and "AMX_INT8" in facts.cpu.features
    # cut inside that line, it is still refused
    with pytest.raises(cpu.CpuTextError, match="truncated"):
        cpu.parse_cpuinfo(cut[:-40])


@pytest.mark.parametrize(
    "name", sorted(n for n in CASES if n.startswith("cpuinfo/") and "flags" in (FIX / n).read_text().split("\n\n")[0])
)
def test_single_processor_entry_ending_at_its_flags_line(name):
    """One processor entry cut right after its flags line (a VM with one vCPU, a copy of the first
    entry) is whole, with or without a final newline; cut inside that line, it is refused."""
    lines = (FIX / name).read_text().split("\n\n")[0].splitlines()
    one = "\n".join(lines[: max(i for i, ln in enumerate(lines) if ln.startswith("flags")) + 1])
    for text in (one, one + "\n"):
        facts = cpu.parse_cpuinfo(text)
        assert facts.cpu.threads == 1 and set(facts.cpu.features) == CASES[name][2]  # every entry has them
    last = one.rsplit(" ", 1)[1]
    with pytest.raises(cpu.CpuTextError, match="truncated"):
        cpu.parse_cpuinfo(one[: -(len(last) // 2 + 1)])  # ends inside its last word


def test_amd_sme_flag_is_not_arm_sme():
    """x86 "sme" is AMD Secure Memory Encryption; it must not become ARM's SME."""
    c = cpu_from_file(FIX / "cpuinfo/zen4-ryzen9-7950x.txt").cpu
    assert "sme" in c.flags
    assert "SME" not in c.features


def test_knights_landing_has_no_avx512_level():
    """AVX512F+CD without VL/DQ/BW is not llama.cpp's AVX512 (Xeon Phi): skylakex must not be chosen."""
    flags = [
        "fpu",
        "sse",
        "sse2",
        "pni",
        "ssse3",
        "sse4_1",
        "sse4_2",
        "avx",
        "f16c",
        "fma",
        "avx2",
        "bmi2",
        "avx512f",
        "avx512cd",
        "avx512pf",
        "avx512er",
        "lm",
    ]
    feats = cpu.features_from_flags(flags, "linux", "x86_64")
    assert "AVX512F" in feats and "AVX512" not in feats
    assert [v for v, _ in cpu.variants_for(feats, "linux", "x86_64")][-1] == "haswell"


def test_intel_cache_size_is_l3_amd_is_not():
    assert cpu_from_file(FIX / "cpuinfo/haswell-i7-4770.txt").cpu.l3_cache_bytes == 8 * 2**20
    assert cpu_from_file(FIX / "cpuinfo/zen2-ryzen7-3700x.txt").cpu.l3_cache_bytes is None  # "512 KB" is L2
    assert cpu_from_file(FIX / "sysctl/macos13-intel-i9-9880h.txt").cpu.l3_cache_bytes == 16 * 2**20


def test_sysctl_tells_os_and_memory():
    facts = cpu_from_file(FIX / "sysctl/macos14-apple-m2.txt")
    assert facts.os_version == "macOS 14.5"
    assert facts.kernel == "Darwin 23.5.0"
    assert facts.memory_bytes == 16 * 2**30
    assert facts.cpu.model == "Apple M2" and facts.cpu.vendor == "Apple"


def test_hypervisor_note():
    facts = cpu_from_file(FIX / "cpuinfo/cascadelake-xeon-8259cl-aws.txt")
    assert any("hypervisor" in n for n in facts.notes)
    assert not cpu_from_file(FIX / "cpuinfo/haswell-i7-4770.txt").notes


def test_big_little_lists_both_cores():
    text = (FIX / "cpuinfo/rpi5-cortex-a76.txt").read_text()
    blocks = text.split("\n\n")
    blocks[2] = blocks[2].replace("0xd0b", "0xd05")  # processor 2 becomes a Cortex-A55
    facts = cpu.parse_cpuinfo("\n\n".join(blocks))
    assert facts.cpu.microarch == "cortex_a76+cortex_a55"


# --------------------------------------------------------------------------- the data agrees with llama.cpp


def test_variant_table_matches_pinned_cmakelists(pinned_source):
    text = (pinned_source / "ggml/src/CMakeLists.txt").read_text()
    calls = re.findall(r"^\s*ggml_add_cpu_backend_variant\(([^)]*)\)", text, re.M)
    from_cmake = {tuple(c.split()) for c in calls}
    from_toml = {tuple(v) for s in _data.load("cpu_variants").values() for v in s["variants"]}
    assert from_toml == from_cmake


@pytest.mark.parametrize(
    "arch_dir,section",
    [("x86", "x86"), ("arm", "arm_linux"), ("riscv", "riscv64"), ("powerpc", "power"), ("s390", "s390x")],
)
def test_variant_weights_match_llama_loader_scores(arch_dir, section, pinned_source):
    src = (pinned_source / f"ggml/src/ggml-cpu/arch/{arch_dir}/cpu-feats.cpp").read_text()
    expected = {}
    for cond, body in re.findall(r"#(?:ifdef\s+|if defined\()(\w+)\)?\s*\n(.*?)#endif", src, re.S):
        m = re.search(r"score \+= 1(?:\s*<<\s*(\d+))?;", body)
        if m:
            name = re.sub(r"^GGML_(USE_)?", "", cond)
            expected[name] = 1 << int(m.group(1) or 0)
    assert expected, "no score lines found"
    assert _data.load("cpu_variants")[section]["weights"] == expected


def test_avx512_means_what_ggml_avx512_compiles(pinned_source):
    text = (pinned_source / "ggml/src/ggml-cpu/CMakeLists.txt").read_text()
    block = re.search(r"if \(GGML_AVX512\)\s*\n((?:\s*list\(APPEND ARCH_FLAGS -mavx512\w+\)\s*\n)+)", text)
    assert block, "GGML_AVX512 -m flags not found"
    parts = re.findall(r"-mavx512(\w+)", block.group(1))
    assert sorted(f"avx512{p}" for p in parts) == sorted(_data.load("cpu_features")["linux"]["x86_64"]["AVX512"])


def test_every_variant_tag_is_a_known_feature():
    feats = set()
    for os_table in _data.load("cpu_features").values():
        for table in os_table.values():
            feats |= set(table)
    for vset in _data.load("cpu_variants").values():
        for name, *tags in vset["variants"]:
            for tag in tags:
                assert tag in feats or tag in vset["build_only"], (name, tag)
