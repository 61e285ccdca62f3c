"""The placeholder values a recipe's templates are filled with ({cpu_isa}, {cuda_architectures}...),
computed from the machine profile on first use, and the sentence that says why a recipe does not
apply."""

from __future__ import annotations

from pathlib import Path

from builddoctor.platforms import install_keys
from builddoctor.profiles import GpuProfile, MachineProfile
from builddoctor.recipe_schema import PLACEHOLDERS, Recipe
from builddoctor.recipes import cpu_features, norm_arch
from builddoctor.tomlload import data_file
from builddoctor.versions import version_tuple

OS_NAMES = {"linux": "Linux", "darwin": "macOS", "windows": "Windows"}


def cc_int(cc: str | None) -> int | None:
    """A compute capability as llama.cpp's architecture number: "8.6" -> 86."""
    t = version_tuple(cc)
    if not t:
        return None
    return t[0] * 10 + (t[1] if len(t) > 1 else 0)


def platform_key(machine: MachineProfile) -> list[str]:
    """Which install commands apply: ['debian'], ['macos'], or all Linux ones when the distro is unknown."""
    return install_keys(machine.os, machine.os_version)


class Facts(dict):
    """Placeholder values for recipe templates, computed on first use."""

    def __init__(
        self,
        machine: MachineProfile,
        recipes: dict[str, Recipe],
        *,
        host: bool = True,
        known_bad: list | None = None,
        llama_version: str | None = None,
    ):
        super().__init__()
        self.machine = machine
        self.recipes = recipes
        self.host = host
        self.known_bad = list(known_bad or [])  # known_bad.Row that apply to this CPU and source
        self.llama_version = llama_version

    def __missing__(self, key: str) -> str:
        if key not in PLACEHOLDERS:
            raise KeyError(key)
        value = getattr(self, "_" + key)()
        self[key] = value
        return value

    def render(self, template: str) -> str:
        return template.format_map(self)

    # -- CPU
    def _cpu_model(self) -> str:
        return self.machine.cpu.model or self.machine.cpu.vendor or "this CPU"

    def _microarch(self) -> str:
        return self.machine.cpu.microarch or self.machine.cpu.variant or "unknown"

    def _cpu_variant(self) -> str:
        return self.machine.cpu.variant or "unknown"

    def _cpu_features(self) -> str:
        return ", ".join(sorted(self.machine.cpu.features)) or "no features recorded"

    def _cpu_isa(self) -> str:
        """The CPU's instruction sets in a few words (data/isa_labels.toml)."""
        f = cpu_features(self.machine)
        table = data_file("isa_labels.toml").get(norm_arch(self.machine.arch or self.machine.cpu.arch))
        if table is None:
            return ", ".join(sorted(f)) or "baseline ISA"
        level = next(lv for lv in table["levels"] if not lv.get("needs") or lv["needs"] in f)
        extra = [label for label, feature in level.get("extras", []) if feature in f]
        text = level["text"] + (level.get("form", " {}").format(", ".join(extra)) if extra else level.get("none", ""))
        for label, any_of in table.get("also", []):
            if set(any_of) & f:
                text += f", {label}"
        return text

    def _avoid_reason(self) -> str:
        rows = [r for r in self.known_bad if set(r.avoid) & cpu_features(self.machine)]
        version = f"llama.cpp {self.llama_version}" if self.llama_version else "this llama.cpp"
        return (
            "; ".join(
                f"{version} has a known bug on this CPU: {r.short or r.title} (known-bad row {r.id}; "
                f"{r.sources[0] if r.sources else 'no public report'})"
                for r in rows
            )
            or "no known-bad row applies"
        )

    def _explicit_reason(self) -> str:
        parts = []
        if not self.host:
            src = self.machine.cpu.source or ""
            where = src if src.startswith(("cpuinfo:", "sysctl:")) else "a recorded machine profile"
            parts.append(
                f"the plan is for {self._cpu_model()} ({where}), "
                "not for the machine that builds it, where -march=native would compile the build "
                "machine's instruction sets"
            )
        avoided = sorted({f for r in self.known_bad for f in r.avoid} & cpu_features(self.machine))
        if avoided:
            parts.append(
                f"{', '.join(avoided)} must stay out of the CPU code (known-bad: "
                f"{', '.join(r.id for r in self.known_bad)}), and -march=native would put them in"
            )
        return "; ".join(parts) or "the CPU code is spelled out"

    def _os_name(self) -> str:
        return OS_NAMES.get(self.machine.os.lower(), self.machine.os)

    def _compiler(self) -> str:
        for name in ("gcc", "clang", "cl"):
            t = self.machine.tool(name)
            if t.found:
                return f"{name} {t.version or ''}".strip()
        return "no compiler found"

    # -- GPUs
    def _names(self, vendor: str | None, none: str) -> str:
        gpus = [g for g in self.machine.usable_gpus() if vendor is None or g.vendor.lower() == vendor]
        if not gpus:
            return none
        counts: dict[str, int] = {}
        for g in gpus:
            counts[g.name] = counts.get(g.name, 0) + 1
        return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())

    def _gpu_names(self) -> str:
        # a forced --backend vulkan on a machine with only llvmpipe builds for that device
        emulated = ", ".join(dict.fromkeys(g.name for g in self.machine.emulated_gpus()))
        return self._names(None, f"{emulated} (CPU-emulated)" if emulated else "no GPU")

    def _nvidia_gpus(self) -> str:
        return self._names("nvidia", "no NVIDIA GPU")

    def _amd_gpus(self) -> str:
        return self._names("amd", "no AMD GPU")

    def _intel_gpus(self) -> str:
        return self._names("intel", "no Intel GPU")

    def _apple_gpus(self) -> str:
        return self._names("apple", "the Apple GPU")

    def nvidia(self) -> list[GpuProfile]:
        return [g for g in self.machine.usable_gpus() if g.vendor.lower() == "nvidia"]

    def _cuda_architectures(self) -> str:
        ccs = sorted({c for c in (cc_int(g.compute_capability) for g in self.nvidia()) if c})
        return ";".join(f"{c}-real" for c in ccs)

    def _cuda_arch_detail(self) -> str:
        parts = []
        for g in self.nvidia():
            c = cc_int(g.compute_capability)
            if c:
                parts.append(f"{g.name}: compute capability {g.compute_capability} -> sm_{c}")
        return "; ".join(dict.fromkeys(parts)) or "no compute capability known"

    def _nvcc_version(self) -> str:
        t = self.machine.tool("nvcc")
        return f"CUDA {t.version}" if t.found and t.version else ("nvcc" if t.found else "no nvcc")

    def _nvcc_path(self) -> str:
        t = self.machine.tool("nvcc")
        return t.path or "" if t.found else ""

    def _cuda_toolkit_root(self) -> str:
        """The toolkit root cuBLAS was found in (a merged one from --cuda-from-pip, or the system's)."""
        t = self.machine.tool("cublas")
        return str(Path(t.path).parent.parent) if t.found and t.path else ""

    def hip_target_map(self) -> dict[str, str]:
        sub = self.recipes["hip"].data.get("gfx_substitute", {}) if "hip" in self.recipes else {}
        out = {}
        for g in self.machine.usable_gpus():
            if g.vendor.lower() == "amd" and g.gfx_target:
                out[g.gfx_target] = sub.get(g.gfx_target, g.gfx_target)
        return out

    def _hip_targets(self) -> str:
        return ";".join(sorted(set(self.hip_target_map().values())))

    def _rocm_path(self) -> str:
        for name in ("hipconfig", "hipcc"):
            t = self.machine.tool(name)
            if t.found and t.path:
                p = Path(t.path)
                if p.parent.name == "bin":
                    return str(p.parent.parent)
        return "/opt/rocm"

    def _rocm_clang(self) -> str:
        return f"{self['rocm_path']}/llvm/bin/clang"

    def _emulated_note(self) -> str:
        """Why the Vulkan devices that are there do not count: CPU-emulated, or slower than the CPU."""
        parts = []
        emu = [g.name for g in self.machine.emulated_gpus()]
        if emu:
            parts.append(f"{', '.join(emu)} is a CPU-emulated Vulkan device, far slower than the CPU backend")
        vk = self.recipes.get("vulkan")
        slow_names = vk.when.get("gpu", {}).get("name_none", []) if vk else []
        slow = [g.name for g in self.machine.usable_gpus() if any(s.lower() in g.name.lower() for s in slow_names)]
        if slow:
            parts.append(f"{', '.join(slow)} has a Vulkan driver, but llama.cpp runs slower on it than on the CPU")
        return f" ({'; '.join(parts)}: never chosen on its own)" if parts else ""


def unmet_reason(r: Recipe, key: str | None, facts: Facts, machine: MachineProfile) -> str:
    """Why recipe ``r`` does not apply: its ``unmet`` sentence for the failed condition ``key``, and
    the installed toolkit that has no device to run on."""
    if key and key in r.unmet:
        text = facts.render(r.unmet[key])
    elif key:
        text = f"its condition '{key} = {r.when.get(key)!r}' does not hold on this machine"
    else:
        text = "it does not apply to this machine"
    if r.toolkit and key in ("gpu_vendor", "gpu_api", "gpu"):
        t = machine.tool(r.toolkit)
        if t.found:
            ver = f" {t.version}" if t.version else ""
            where = f" at {t.path}" if t.path else ""
            text += (
                f" ({r.toolkit}{ver} is installed{where}, but there is no {r.label} device "
                "for what it builds to run on)"
            )
    return text
