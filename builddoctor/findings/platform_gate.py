"""The platform gate: which builds can run on the machine being diagnosed at all.

Between inspect and the findings. Each file's OS and architecture (``BinaryFile.os`` /
``.archs``, read from its ELF, Mach-O or PE header) is compared with the machine's (this one,
or ``--profile``/``--cpuinfo``). A build none of whose files the machine's loader can take gets
one error finding and what it contains, as information; the checks of the areas that are about
loading and running (``[platform_gate]`` in checks.toml) are not run for it, since their verdicts
would be about a machine it cannot run on. Its programs are never run either
(``may_run``: the inspect stage asks before ``--version``, the compute probe or a dlopen).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from builddoctor import platforms
from builddoctor.findings.rules import rule
from builddoctor.inspect.binary import _BACKEND_LIB
from builddoctor.inspect.isa import level_of
from builddoctor.profiles import BinaryFile, BuildProfile, MachineProfile

# the rules of this module: they always run (the gate's own verdict)
GATE_RULES = ("foreign_platform", "foreign_contents", "foreign_files")


def file_platform(f: BinaryFile) -> platforms.Platform | None:
    """Where a readable file runs; None for files that are not (readable) binaries."""
    if not f.format or f.error or not f.os:
        return None
    return platforms.Platform(f.os, tuple(f.archs or ([f.arch] if f.arch else [])), f.format)


def machine_platform(machine: MachineProfile) -> tuple[str, str]:
    return platforms.canonical_os(machine.os), platforms.canonical_arch(machine.arch or machine.cpu.arch)


@dataclass
class Gate:
    """The files of a build that can run on the machine, and those that cannot."""

    runnable: list[BinaryFile] = field(default_factory=list)
    foreign: list[tuple[BinaryFile, platforms.Platform]] = field(default_factory=list)

    @property
    def foreign_build(self) -> bool:
        """Nothing in the build runs on the machine: the load/CPU/GPU/runtime checks do not apply."""
        return bool(self.foreign) and not self.runnable

    def targets(self) -> list[str]:
        """The distinct platforms of the foreign files, in words, most files first."""
        count: dict[str, int] = {}
        for _f, p in self.foreign:
            count[p.describe()] = count.get(p.describe(), 0) + 1
        return sorted(count, key=lambda k: -count[k])


def assess(build: BuildProfile, machine: MachineProfile) -> Gate:
    os_name, arch = machine_platform(machine)
    gate = Gate()
    for f in build.files:
        p = file_platform(f)
        if p is None:
            continue
        if p.runs_on(os_name, arch):
            gate.runnable.append(f)
        else:
            gate.foreign.append((f, p))
    return gate


def runnable_view(build: BuildProfile, gate: Gate) -> BuildProfile:
    """The build as the machine sees it when only some of its files run there: those files, and
    the CPU code facts of its CPU backend files that run (not an aarch64 variant's on x86_64)."""
    if not gate.foreign:
        return build

    view = dataclasses.replace(build, files=list(gate.runnable))
    carried = {b for f in gate.runnable for b in f.backends}
    view.backends = [b for b in build.backends if b in carried]
    if any("CPU" in f.backends for f, _p in gate.foreign):
        cpu = [f for f in gate.runnable if "CPU" in f.backends]
        view.isa = sorted({x for f in cpu for x in f.isa})
        view.isa_detail = sorted({x for f in cpu for x in f.isa_detail})
        view.isa_level = (level_of(view.isa) or "sse") if any(f.isa_level for f in cpu) else None
        gone = set()
        for f, _p in gate.foreign:
            m = _BACKEND_LIB.match(_name(f.path))
            if m and m.group(1) == "cpu" and m.group(2):
                gone.add(m.group(2))
        view.cpu_variants = [v for v in build.cpu_variants if v not in gone]
    return view


def may_run(build: BuildProfile, machine: MachineProfile) -> bool:
    """Whether the build's programs may be run for this diagnosis: never a foreign build's."""
    return not assess(build, machine).foreign_build


def gated(check: dict, catalogue: dict) -> bool:
    """Whether a catalogue check is one that only applies to a build that runs on the machine."""
    spec = catalogue.get("platform_gate", {})
    if check["rule"] in GATE_RULES:
        return False
    return check["area"] in spec.get("areas", []) or check["rule"] in spec.get("rules", [])


def _machine_words(machine: MachineProfile, ctx) -> str:
    os_name, arch = machine_platform(machine)
    where = platforms.label(os_name, arch)
    if ctx.live:
        return f"this {where} machine"
    return f"the {where} machine diagnosed ({machine.source or 'a recorded profile'})"


def _gate(build, machine, ctx) -> Gate:
    key = ("platform_gate", id(build))
    got = ctx.extra.get(key)
    if got is None or got[0] is not build:
        got = ctx.extra[key] = (build, assess(build, machine))
    return got[1]


def _hint(gate: Gate, ctx, root: str) -> str:
    """How to diagnose the build for the machine it is for (checks.toml [platform_gate.hint], by its OS)."""
    hints = ctx.catalogue.get("platform_gate", {}).get("hint", {})
    oses = {platforms.canonical_os(p.os) for _f, p in gate.foreign}
    os_name = oses.pop() if len(oses) == 1 else ""
    return hints.get(os_name, hints.get("default", "")).replace("{root}", root)


@rule
def foreign_platform(build, machine, ctx):
    gate = _gate(build, machine, ctx)
    if not gate.foreign_build:
        return None
    targets = gate.targets()
    files = "; ".join(f"{_name(f.path)}: {p.describe()}" for f, p in gate.foreign[:6])
    more = f" (and {len(gate.foreign) - 6} more)" if len(gate.foreign) > 6 else ""
    return {
        "target": " and ".join(targets),
        "machine": _machine_words(machine, ctx),
        "files": files + more,
        "hint": _hint(gate, ctx, build.root),
    }


@rule
def foreign_contents(build, machine, ctx):
    """What a foreign build holds, as information: the checks that would judge it do not run."""
    gate = _gate(build, machine, ctx)
    if not gate.foreign_build:
        return None
    bits = []
    if build.backends:
        bits.append("backends " + ", ".join(build.backends))
    if build.cpu_variants:
        bits.append("CPU variants " + ", ".join(build.cpu_variants))
    if build.isa:
        bits.append("CPU code " + ", ".join(build.isa))
    if build.cuda_archs:
        bits.append("GPU code for " + ", ".join(build.cuda_archs))
    version = build.version or (f"b{build.build_number}" if build.build_number else "")
    if version or build.commit:
        commit = f"commit {build.commit}" if build.commit else ""
        bits.append("llama.cpp " + " ".join(x for x in (version, commit) if x))
    if not bits:
        return None
    return {"contents": "; ".join(bits)}


@rule
def foreign_files(build, machine, ctx):
    """Some files of a build that otherwise runs here are for another platform."""
    gate = _gate(build, machine, ctx)
    if gate.foreign_build or not gate.foreign:
        return None
    n = len(gate.foreign)
    return {
        "count": f"{n} of its files {'is' if n == 1 else 'are'}",
        "target": " and ".join(gate.targets()),
        "machine": _machine_words(machine, ctx),
        "files": ", ".join(_name(f.path) for f, _p in gate.foreign[:6]) + (" ..." if len(gate.foreign) > 6 else ""),
    }


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
