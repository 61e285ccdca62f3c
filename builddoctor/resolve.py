"""Compose the recipes into one BuildPlan for a machine: options with reasons, prerequisites,
what was not chosen and why.

The rules live in ``recipes/*.toml``; this module only evaluates them. The few facts that need
arithmetic (CUDA architectures from compute capabilities, which CUDA toolkit can build for
which GPU, driver vs toolkit) are named ``checks`` in a recipe and implemented here, reading
their tables from that recipe's ``[data]``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builddoctor import errors
from builddoctor.cmake_bool import same_value
from builddoctor.platforms import install_keys
from builddoctor.profiles import BuildPlan, GpuProfile, MachineProfile, PlanOption, Prerequisite, Skipped
from builddoctor.recipes import (
    GOALS,
    PLACEHOLDERS,
    Context,
    Recipe,
    RecipeError,
    cpu_features,
    evaluate,
    load_recipes,
    norm_arch,
)
from builddoctor.tomlload import data_file
from builddoctor.versions import version_tuple  # noqa: F401 - resolve.version_tuple: the name callers use

DEFAULT_TARGETS = ["llama-cli", "llama-server", "llama-bench", "llama-quantize"]
OS_NAMES = {"linux": "Linux", "darwin": "macOS", "windows": "Windows"}

# --------------------------------------------------------------------------- versions


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a = a + (0,) * (n - len(a))
    b = b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def version_at_least(found: str | None, wanted: str) -> bool:
    f, w = version_tuple(found), version_tuple(wanted)
    return f is not None and w is not None and _cmp(f, w) >= 0


def version_below(found: str | None, limit: str) -> bool:
    f, w = version_tuple(found), version_tuple(limit)
    return f is not None and w is not None and _cmp(f[: len(w)], w) < 0


def _short(v: str | None) -> str:
    t = version_tuple(v)
    return ".".join(str(x) for x in t[:2]) if t else (v or "?")


# --------------------------------------------------------------------------- placeholders


def _cc_int(cc: str | None) -> int | None:
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
        ccs = sorted({c for c in (_cc_int(g.compute_capability) for g in self.nvidia()) if c})
        return ";".join(f"{c}-real" for c in ccs)

    def _cuda_arch_detail(self) -> str:
        parts = []
        for g in self.nvidia():
            c = _cc_int(g.compute_capability)
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


# --------------------------------------------------------------------------- resolution


@dataclass
class _Opt:
    value: str
    reason: str
    recipe: Recipe


def is_this_machine(machine: MachineProfile) -> bool:
    """Whether ``machine`` was probed here and now (not loaded from --profile, its CPU not from --cpuinfo)."""
    return machine.source == "live" and machine.cpu.source == "live"


def source_version(source: Path | None) -> str | None:
    """LLAMA_VERSION of the tree to build: the pin's for the pinned tree (or none given); None
    (unknown) for another checkout, which every known-bad row then counts as affected."""
    from builddoctor import paths
    from builddoctor.source import load_pin

    if source is None or Path(source).resolve() == paths.vendor_dir().resolve():
        return load_pin().llama_version
    return None


def resolve(
    machine: MachineProfile,
    *,
    goal: str = "native",
    backend: str = "auto",
    source: Path | None = None,
    recipes: list[Recipe] | None = None,
    host: bool | None = None,
    avoid: tuple[str, ...] = (),
) -> BuildPlan:
    """The build plan for ``machine``: which recipes apply, and the options they set, with reasons.

    ``host``: the plan is for the machine that builds it (default: ``machine`` was probed here),
    so -march=native is right; otherwise the CPU code's ISA is spelled out. The known-bad rows
    that apply to the source's llama.cpp version take their features away (``avoid`` adds more:
    what `fix` learned from a crash)."""
    from builddoctor import known_bad

    if goal not in GOALS:
        raise errors.InputError(f"Unknown goal '{goal}': use one of {', '.join(GOALS)}.")
    recipes = load_recipes() if recipes is None else recipes
    by_name = {r.name: r for r in recipes}
    host = is_this_machine(machine) if host is None else host
    version = source_version(source)
    rows = known_bad.applying(cpu_features(machine), version)
    avoided = frozenset({f for r in rows for f in r.avoid} | set(avoid))
    facts = Facts(machine, by_name, host=host, known_bad=rows, llama_version=version)
    backends = sorted((r for r in recipes if r.kind == "backend"), key=lambda r: (-r.priority, r.name))
    known = {r.backend: r for r in backends}
    if backend != "auto" and backend not in known:
        raise errors.InputError(
            f"Unknown backend '{backend}': use auto or one of {', '.join(sorted(str(k) for k in known))}."
        )
    ctx = Context(machine, goal=goal, host=host, avoided=avoided)
    verdicts = {r.name: evaluate(r.when, ctx) for r in backends}
    notes: list[str] = []

    if backend == "auto":
        chosen = next((r for r in backends if verdicts[r.name][0]), None)
        if chosen is None:
            raise RecipeError(
                "No backend recipe applies to this machine, not even the CPU one: the recipe folder "
                "lacks a backend recipe without conditions (recipes/cpu.toml)."
            )
    else:
        chosen = known[backend]
        ok, key = verdicts[chosen.name]
        if not ok:
            notes.append(
                f"--backend {backend} was asked for although {_unmet(chosen, key, facts, machine)}: "
                "the build is planned, but it may not run on this machine."
            )

    skipped: list[Skipped] = []
    for r in backends:
        if r is chosen or not r.report_skip:
            continue
        ok, key = verdicts[r.name]
        if ok:
            if backend == "auto":
                why = (
                    facts.render(chosen.preferred_because)
                    if chosen.preferred_because
                    else f"{chosen.label} is preferred on this machine"
                )
            else:
                why = f"--backend {backend} was asked for"
            skipped.append(Skipped(r.label, f"skipped, {why}"))
        else:
            skipped.append(Skipped(r.label, f"skipped, {_unmet(r, key, facts, machine)}"))

    ctx.backend = chosen.backend
    active: list[Recipe] = []
    for r in recipes:
        if r.kind == "concern" and evaluate(r.when, ctx)[0]:
            active.append(r)
    active.sort(key=lambda r: (-r.priority, r.name))  # the recipes' own order (release, no-network, ...)
    active.append(chosen)
    names = {r.name for r in active}
    for r in active:
        for other in r.conflicts:
            if other in names:
                o = by_name[other]
                raise RecipeError(
                    f"Recipes '{r.name}' ({r.path}) and '{other}' ({o.path}) both apply to this machine, "
                    f"but {r.path.name} says they conflict. Fix the 'when' of one of them."
                )

    options: dict[str, _Opt] = {}
    dropped: list[str] = []
    for r in active:
        for spec in r.options:
            if not evaluate(spec.when, ctx)[0]:
                continue
            value = facts.render(spec.value)
            reason = facts.render(spec.reason)
            if value == "":
                dropped.append(spec.name)
                continue
            prev = options.get(spec.name)
            if prev is not None:
                if prev.value != value:
                    raise RecipeError(
                        f"Contradicting recipes: {spec.name} is set to {prev.value} by '{prev.recipe.name}' "
                        f"({prev.recipe.path}) and to {value} by '{r.name}' ({r.path}); both apply to this machine. "
                        "Recipes are not merged silently: narrow the 'when' of one of them."
                    )
                continue
            options[spec.name] = _Opt(value, reason, r)

    prereqs: dict[str, Prerequisite] = {}
    tools: dict[str, list[str]] = {}  # prerequisite -> the tools that stand for it (alternatives)
    platforms = platform_key(machine)
    for r in active:
        for pre in r.prerequisites:
            if not evaluate(pre.when, ctx)[0]:
                continue
            install = {k: v for k, v in pre.install.items() if k in platforms}
            p = prereqs.get(pre.name)
            if p is None:
                p = Prerequisite(
                    name=pre.name,
                    kind=pre.kind,
                    status="missing",
                    min_version=pre.min_version,
                    max_version=pre.max_version,
                    recipe=r.name,
                    install=install,
                    reason=facts.render(pre.reason),
                    required=pre.required,
                )
                tools[pre.name] = list(pre.tools)
                prereqs[pre.name] = p
            else:
                if pre.min_version and (not p.min_version or version_at_least(pre.min_version, p.min_version)):
                    p.min_version = pre.min_version
                if pre.max_version and (not p.max_version or version_below(pre.max_version, p.max_version)):
                    p.max_version = pre.max_version
                p.recipe += f"+{r.name}"
                p.required = p.required or pre.required
                if pre.reason:
                    p.reason = (p.reason + "; " if p.reason else "") + facts.render(pre.reason)
                for k, v in install.items():
                    p.install.setdefault(k, v)
    for name, p in prereqs.items():
        _locate(p, machine, tools[name])
        grade(p)

    plan = BuildPlan(
        goal=goal,
        backend=chosen.backend or "cpu",
        machine=machine,
        targets=list(DEFAULT_TARGETS),
        recipes=[r.name for r in active],
        skipped=skipped,
        notes=notes,
    )
    plan.options = [PlanOption(n, o.value, o.reason, o.recipe.name) for n, o in options.items()]
    plan.options.sort(key=lambda o: o.name != "CMAKE_BUILD_TYPE")
    plan.prerequisites = list(prereqs.values())
    if same_value(next((o.value for o in plan.options if o.name == "GGML_CPU_ALL_VARIANTS"), "OFF"), "ON"):
        # binaries that travel: leave out the variants a known-bad row says crash wherever they load
        for row in known_bad.rows():
            if row.avoid_variants and row.affects_version(version):
                plan.omit_cpu_variants += [v for v in row.avoid_variants if v not in plan.omit_cpu_variants]
                plan.notes.append(
                    f"The CPU variant(s) {', '.join(row.avoid_variants)} are built but not kept: "
                    f"{row.title} (known-bad row {row.id}; {row.source_text}). Machines that would "
                    "load them take the next best variant."
                )
    for r in active:
        for k, v in r.env.items():
            plan.env[k] = facts.render(v)
        plan.notes.extend(facts.render(n) for n in r.notes)
    for r in active:
        for check in r.checks:
            fn = CHECKS.get(check)
            if fn is None:
                raise RecipeError(
                    f"{r.path}: check '{check}' is not known to this builddoctor (known: {', '.join(sorted(CHECKS))})."
                )
            fn(plan, r, facts, ctx)
    for name in dropped:
        if not any(o.name == name for o in plan.options):
            plan.notes.append(
                f"{name} is not set: this machine gives nothing to set it from, so llama.cpp's default applies."
            )
    if source is not None and (Path(source) / "CMakeLists.txt").is_file():
        from builddoctor.llama_options import scan_source

        declared = scan_source(Path(source))
        for po in plan.options:
            if po.name.startswith(("GGML_", "LLAMA_")) and po.name not in declared.options:
                plan.notes.append(
                    f"{po.name} (recipe {po.recipe}) is not an option of the llama.cpp in {source}: "
                    "that tree is older or newer than the pinned one, and CMake will ignore it."
                )
    return plan


def _unmet(r: Recipe, key: str | None, facts: Facts, machine: MachineProfile) -> str:
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


def _locate(p: Prerequisite, machine: MachineProfile, tools: list[str]) -> None:
    """found_version / whether it is there, from the machine profile (the first of ``tools`` found)."""
    if p.kind == "driver":
        return  # decided by a check (cuda_toolkit)
    if p.name == "cublas" and "cublas" not in machine.toolchains:
        p.status = "unchecked"  # a profile recorded before builddoctor looked for cuBLAS: not known missing
        return
    if p.kind == "library" and p.name == "libvulkan" and machine.vulkan_loader:
        p.status = "found"
        p.found_version = machine.vulkan_loader if version_tuple(machine.vulkan_loader) else None
        return
    for t in tools:
        info = machine.tool(t)
        if info.found:
            p.status = "found"
            p.found_version = info.version
            if len(tools) > 1:
                p.name = f"{p.name} ({t})" if t not in p.name else p.name
            return
    p.status = "missing"


def recheck_prerequisites(plan: BuildPlan, machine: MachineProfile, recipes: list[Recipe] | None = None) -> None:
    """Find a loaded plan's prerequisites again on ``machine``, the one about to build it.

    A plan saved with `recipe --save` (perhaps for another machine, with --profile) records
    where its tools were found *there*; what counts for compiling is this machine's toolchain.
    Bounds, reasons and install commands stay the plan's; drivers stay as recorded (compiling
    needs none)."""
    recipes = load_recipes() if recipes is None else recipes
    specs = {spec.name: spec for r in recipes if r.name in plan.recipes for spec in r.prerequisites}
    for p in plan.prerequisites:
        if p.kind == "driver":
            continue
        base = p.name.split(" (", 1)[0]
        spec = specs.get(base)
        p.name = base
        p.found_version = None
        p.status = "missing"
        _locate(p, machine, list(spec.tools) if spec is not None and spec.tools else [base])
        grade(p)


def grade(p: Prerequisite) -> None:
    """found / too-old / too-new from found_version and the bounds (missing stays missing)."""
    if p.status in ("missing", "unchecked"):
        return
    if p.found_version and p.min_version and not version_at_least(p.found_version, p.min_version):
        p.status = "too-old"
    elif p.found_version and p.max_version and not version_below(p.found_version, p.max_version):
        p.status = "too-new"
    else:
        p.status = "found"


# --------------------------------------------------------------------------- checks


def _prereq(plan: BuildPlan, name: str) -> Prerequisite | None:
    return next((p for p in plan.prerequisites if p.name == name), None)


def _check_cuda(plan: BuildPlan, recipe: Recipe, facts: Facts, ctx: Context) -> None:
    machine = facts.machine
    table = sorted(recipe.data.get("nvcc_support", []), key=lambda row: version_tuple(row["since"]) or ())
    nvcc = _prereq(plan, "nvcc")
    gpus = [g for g in facts.nvidia() if _cc_int(g.compute_capability)]
    lo: str | None = None  # lowest toolkit that builds for every GPU
    hi: str | None = None  # first toolkit that no longer builds for one of them (exclusive)
    why_hi = why_lo = ""
    for g in gpus:
        cc = _cc_int(g.compute_capability)
        supported = [row for row in table if row["min_cc"] <= cc <= row["max_cc"]]
        if not supported:
            plan.notes.append(
                f"{g.name} (compute capability {g.compute_capability}) is not supported by any CUDA "
                "toolkit that llama.cpp builds with: use the Vulkan or CPU backend."
            )
            continue
        first = supported[0]["since"]
        if lo is None or _cmp(version_tuple(first) or (), version_tuple(lo) or ()) > 0:
            lo, why_lo = first, f"{g.name} (compute capability {g.compute_capability}) needs CUDA {first} or newer"
        later = [
            row for row in table if (version_tuple(row["since"]) or ()) > (version_tuple(supported[-1]["since"]) or ())
        ]
        if later:
            cut = later[0]["since"]
            if hi is None or version_below(cut, hi):
                hi = cut
                why_hi = (
                    f"CUDA {_short(cut)} cannot build for compute capability {g.compute_capability} "
                    f"({g.name}): it dropped GPUs below {later[0]['min_cc'] / 10:.1f}"
                )
    if nvcc is not None:
        if lo and version_at_least(lo, nvcc.min_version or "0"):
            nvcc.min_version = lo
            nvcc.reason += f"; {why_lo}"
        if hi:
            nvcc.max_version = _short(hi)
        grade(nvcc)
        if nvcc.status == "too-new":
            last = [row["since"] for row in table if version_below(row["since"], hi)][-1] if hi else "12"
            last_major = (version_tuple(last) or (12,))[0]
            nvcc.reason = (
                f"{why_hi}. Install a CUDA {last_major} toolkit (e.g. {_short(last)}) beside "
                f"it and configure with -DCMAKE_CUDA_COMPILER=<its bin/nvcc>"
            )
            plan.notes.append(
                f"The installed nvcc ({facts['nvcc_version']}) cannot build for this GPU: "
                f"{why_hi}. A CUDA {last_major} toolkit is required."
            )
        elif nvcc.status == "too-old":
            nvcc.reason = f"{facts['nvcc_version']} is too old: " + (
                why_lo if lo and nvcc.min_version == lo else f"llama.cpp needs CUDA {nvcc.min_version}+"
            )
        if nvcc.status != "found":
            plan.options = [o for o in plan.options if o.name != "CMAKE_CUDA_COMPILER"]

    _cublas_install(plan, machine)
    lib = machine.toolchains.get("libcuda")
    nolib = recipe.data.get("without_libcuda")
    if nolib and lib is not None and not lib.found and nvcc is not None and nvcc.status == "found":
        plan.options = [o for o in plan.options if o.name != nolib["option"]]
        plan.options.append(
            PlanOption(
                nolib["option"], nolib["value"], nolib["reason"].replace("{libcuda_detail}", lib.detail), recipe.name
            )
        )
    drv = _prereq(plan, "nvidia-driver")
    if drv is None:
        return
    os_key = "windows" if machine.os.lower() == "windows" else "linux"
    mins = recipe.data.get("driver_min", {}).get(os_key, {})
    if nvcc is not None and nvcc.status == "found" and nvcc.found_version:
        toolkit = nvcc.found_version
    else:
        toolkit = nvcc.min_version if nvcc is not None and nvcc.min_version else "12.0"
    major = str((version_tuple(toolkit) or (12,))[0])
    drv.min_version = mins.get(major)
    with_driver = [g for g in facts.nvidia() if g.driver_version]
    if not with_driver:
        drv.status = "missing"
        drv.reason = "no NVIDIA driver was found: the build can be made, but it cannot run here"
        return
    g = with_driver[0]
    drv.found_version = g.driver_version
    drv.status = "found"
    cuda = version_tuple(g.cuda_version)
    if cuda is not None and cuda[0] < int(major):
        drv.status = "too-old"
        drv.reason = (
            f"driver {g.driver_version} supports CUDA up to {g.cuda_version}, but a build with CUDA "
            f"{_short(toolkit)} needs a driver for CUDA {major}.x (>= {drv.min_version or '?'}): "
            "update the driver, or build with an older toolkit that this driver supports"
        )
    elif drv.min_version and not version_at_least(g.driver_version, drv.min_version):
        drv.status = "too-old"
        drv.reason = (
            f"driver {g.driver_version} is older than {drv.min_version}, the lowest for CUDA {major}.x "
            "on this OS: update the driver"
        )
    elif g.cuda_version and version_below(g.cuda_version, _short(toolkit)):
        plan.notes.append(
            f"The driver supports CUDA {g.cuda_version}, older than the toolkit ({_short(toolkit)}): "
            "it runs through CUDA minor-version compatibility because the plan builds real GPU code "
            "(SASS) for these GPUs; PTX from this toolkit could not be JIT-compiled by this driver."
        )


def _cublas_install(plan: BuildPlan, machine: MachineProfile) -> None:
    """The cuBLAS install commands for this nvcc's CUDA version: the distro package named for it,
    and the pinned PyPI wheels (cuda_pip.py) that `build --cuda-from-pip` places itself."""
    from builddoctor import cuda_pip

    p = _prereq(plan, "cublas")
    if p is None:
        return
    nvcc = machine.tool("nvcc")
    v = version_tuple(nvcc.version) if nvcc.found else None
    dash = f"{v[0]}-{v[1]}" if v and len(v) >= 2 else "<major>-<minor>"
    pip = cuda_pip.install_hint(nvcc.version if nvcc.found else None) or (
        "the nvidia-cublas wheel from PyPI for this CUDA version, with -DCUDAToolkit_ROOT pointed at a toolkit "
        "folder that holds its include/ and lib/ beside cudart's"
    )
    p.install = {k: t.replace("{cuda_dash}", dash).replace("{cublas_pip}", pip) for k, t in p.install.items()}
    fact = machine.tool("cublas")
    if p.status == "missing" and nvcc.found and fact.detail:
        p.reason += f" ({fact.detail}, the toolkit of {nvcc.path})"


def _check_hip(plan: BuildPlan, recipe: Recipe, facts: Facts, ctx: Context) -> None:
    hipcc = _prereq(plan, "hipcc")
    if hipcc is not None and hipcc.status == "found" and not hipcc.found_version and facts.machine.rocm_version:
        hipcc.found_version = facts.machine.rocm_version
        grade(hipcc)
    for real, used in facts.hip_target_map().items():
        if real != used:
            digits = used[3:]
            override = f"{digits[:-2]}.{int(digits[-2], 16)}.{int(digits[-1], 16)}" if len(digits) >= 3 else "?"
            plan.notes.append(
                f"{real} is not a target ROCm ships kernels for: the plan builds for {used}; run with "
                f"HSA_OVERRIDE_GFX_VERSION={override}."
            )
    if not facts.hip_target_map() and ctx.goal == "native":
        plan.notes.append("No AMD GPU architecture (gfx target) is known: GPU_TARGETS is left to ROCm's default list.")


def _check_vulkan(plan: BuildPlan, recipe: Recipe, facts: Facts, ctx: Context) -> None:
    machine = facts.machine
    real = [g for g in machine.usable_gpus() if "vulkan" in [a.lower() for a in g.apis]]
    emulated = machine.emulated_gpus()
    if not real and emulated:
        plan.notes.append(
            f"The only Vulkan device here, {emulated[0].name}, is CPU-emulated: the build proves the "
            "Vulkan path works, but it runs far slower than the CPU backend. ggml lists it only with "
            "GGML_VK_VISIBLE_DEVICES=0."
        )


CHECKS: dict[str, Callable[[BuildPlan, Recipe, Facts, Context], None]] = {
    "cuda_toolkit": _check_cuda,
    "hip_targets": _check_hip,
    "vulkan_devices": _check_vulkan,
}


# --------------------------------------------------------------------------- command lines


def shell_line(argv: list[str], env: dict[str, str] | None = None, *, exact: bool = False) -> str:
    """A line to paste into a POSIX shell. ``exact``: ``env -i`` first, so the command sees only
    ``env`` (what a build's --dry-run prints: the whole environment builddoctor would start it with)."""
    if exact:
        return shlex.join(["env", "-i", *(f"{k}={v}" for k, v in sorted((env or {}).items())), *argv])
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = shlex.join(argv)
    return f"{prefix} {line}" if prefix else line


def describe(plan: BuildPlan) -> dict[str, Any]:
    """A short summary used by the CLI."""
    m = plan.machine
    return {"goal": plan.goal, "backend": plan.backend, "cpu": m.cpu.model if m else "", "ready": plan.ready}
