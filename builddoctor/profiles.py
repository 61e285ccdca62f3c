"""The typed values that flow between builddoctor's stages.

probe -> MachineProfile; inspect -> BuildProfile; findings -> Diagnosis;
resolve -> BuildPlan; build -> BuildResult; bench -> BenchResult.

Every value serializes to JSON and back exactly (``to_json`` / ``from_json``), so a
profile recorded on one machine can be fed to the next stage on another, and every
stage can be run and tested alone.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from builddoctor.readinput import JsonInputError, loads

SCHEMA_VERSION = 1

T = TypeVar("T", bound="Serializable")


class SchemaError(ValueError):
    """A JSON document does not have the shape of the value it claims to be."""


class Serializable:
    """Mixin: dataclass <-> plain JSON-able dict, recursively and strictly."""

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls: type[T], data: Any) -> T:
        return _from_plain(cls, data, cls.__name__)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        try:
            data = loads(text)  # bounded depth and numbers: no document reaches a RecursionError below
        except JsonInputError as exc:
            raise SchemaError(str(exc)) from None
        return cls.from_dict(data)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_plain(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_plain(arg, data, where)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError("; ".join(errors) or f"{where}: unexpected null")
    if origin is list:
        if not isinstance(data, list):
            raise SchemaError(f"{where}: expected a list, got {type(data).__name__}")
        (item,) = typing.get_args(tp)
        return [_from_plain(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
        _, vt = typing.get_args(tp)
        return {str(k): _from_plain(vt, v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {}
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(data) - names
        if unknown:
            raise SchemaError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _from_plain(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(f"{where}: missing field '{f.name}'")
        return tp(**kwargs)
    if tp is Any:
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise SchemaError(f"{where}: expected a number, got {type(data).__name__}")
        return float(data)
    if tp in (int, str, bool):
        if type(data) is not tp:
            raise SchemaError(f"{where}: expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise SchemaError(f"{where}: unsupported type {tp!r}")


def check_schema(data: Any, kind: str) -> None:
    """Refuse a document written by a newer builddoctor, or one that is not ``kind``."""
    if not isinstance(data, dict):
        raise SchemaError(f"expected a JSON object for a {kind}")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise SchemaError(f"no schema_version: this is not a builddoctor {kind}")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"schema_version {version} is newer than this builddoctor understands ({SCHEMA_VERSION})")


# --------------------------------------------------------------------------- machine


@dataclass
class CpuProfile(Serializable):
    """The CPU, with its ISA features named as llama.cpp names them (AVX2, AVX512_VNNI, DOTPROD...)."""

    arch: str  # x86_64, aarch64, riscv64, ppc64le, s390x
    vendor: str = ""  # GenuineIntel, AuthenticAMD, ARM, Apple...
    model: str = ""  # brand string
    microarch: str = ""  # e.g. zen4, sapphirerapids, neoverse_v2, m2
    cores: int | None = None  # physical cores
    threads: int | None = None  # logical CPUs
    features: list[str] = field(default_factory=list)  # llama.cpp vocabulary, sorted
    flags: list[str] = field(default_factory=list)  # raw OS flags, sorted
    variant: str | None = None  # best llama.cpp CPU backend variant (GGML_CPU_ALL_VARIANTS names)
    variants: list[str] = field(default_factory=list)  # every variant this CPU can run, best last
    l3_cache_bytes: int | None = None
    source: str = "live"  # live, cpuinfo:FILE, sysctl:FILE


@dataclass
class GpuProfile(Serializable):
    vendor: str  # nvidia, amd, intel, apple, other
    name: str
    memory_mib: int | None = None
    compute_capability: str | None = None  # NVIDIA, e.g. "8.9"
    gfx_target: str | None = None  # AMD, e.g. "gfx1100"
    driver_version: str | None = None
    cuda_version: str | None = None  # highest CUDA the NVIDIA driver supports
    apis: list[str] = field(default_factory=list)  # cuda, hip, metal, vulkan, sycl, opencl
    cpu_emulated: bool = False  # llvmpipe/lavapipe/SwiftShader: never a device to choose
    source: str = ""  # nvidia-smi, /proc/driver/nvidia, rocminfo, vulkaninfo, sysctl...


@dataclass
class ToolInfo(Serializable):
    name: str
    found: bool
    path: str | None = None
    version: str | None = None
    detail: str = ""


@dataclass
class MachineProfile(Serializable):
    os: str  # linux, darwin, windows
    arch: str
    cpu: CpuProfile
    schema_version: int = SCHEMA_VERSION
    os_version: str = ""  # "Debian GNU/Linux 12 (bookworm)", "macOS 14.5"
    kernel: str = ""
    libc: str | None = None  # glibc, musl
    libc_version: str | None = None
    libstdcxx_version: str | None = None  # highest GLIBCXX_ symbol version of this machine
    memory_bytes: int | None = None
    gpus: list[GpuProfile] = field(default_factory=list)
    vulkan_loader: str | None = None  # version or path of libvulkan, None when absent
    rocm_version: str | None = None
    toolchains: dict[str, ToolInfo] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a probe could not learn, as facts
    source: str = "live"

    @classmethod
    def from_dict(cls, data: Any) -> MachineProfile:
        check_schema(data, "machine profile")
        return _from_plain(cls, data, "profile")

    def tool(self, name: str) -> ToolInfo:
        return self.toolchains.get(name) or ToolInfo(name=name, found=False)

    def usable_gpus(self) -> list[GpuProfile]:
        return [g for g in self.gpus if not g.cpu_emulated]

    def emulated_gpus(self) -> list[GpuProfile]:
        """CPU-emulated devices (llvmpipe...): listed, never chosen, built for only when asked."""
        return [g for g in self.gpus if g.cpu_emulated]


# --------------------------------------------------------------------------- a build


@dataclass
class RuntimeResult(Serializable):
    """What running ``--version`` / ``--list-devices`` under a time limit told us."""

    argv: list[str]
    returncode: int | None = None
    signal: str | None = None  # SIGILL, SIGSEGV...
    timed_out: bool = False
    error: str | None = None  # could not start: permission, exec format...
    output: str = ""  # first few KiB of stdout+stderr


@dataclass
class ComputeResult(Serializable):
    """What a real inference on the probe model did (or, for a library-only build, a dlopen):
    a verdict that rests on computing, not on a program printing its version."""

    kind: str  # inference (a program ran the probe model), dlopen (a library was loaded in a child),
    # not-run (a GPU build where that GPU's driver is absent: ``problem`` says why)
    argv: list[str]
    ok: bool = False
    returncode: int | None = None
    signal: str | None = None  # SIGILL, SIGSEGV, SIGBUS, SIGABRT...
    timed_out: bool = False
    timeout_s: float = 0.0
    error: str | None = None  # could not start; or the library's load error (dlerror)
    problem: str = ""  # ran, but gave no valid result (garbage, no numbers): what was wrong
    backend: str = ""  # what the program says it ran on: CPU, CUDA, Vulkan...
    device: str = ""
    threads: int = 0
    pp_tps: float | None = None  # prompt tokens/s on the probe model (information, not a benchmark)
    tg_tps: float | None = None
    seconds: float = 0.0
    output: str = ""  # the last few KiB of output


@dataclass
class LoadProblem(Serializable):
    """Why the dynamic loader would refuse a file here, found statically (inspect.libs.load_problems)."""

    kind: str  # "version": a symbol version the library found lacks; "symbol": names no library defines
    lib: str  # the NEEDED library (version) or the libraries searched (symbol)
    need: str  # GLIBCXX_3.4.99, or the first symbol names
    have: str = ""  # the library's newest version of that kind (GLIBCXX_3.4.30), when known
    count: int = 1  # how many symbols (kind "symbol")


@dataclass
class BinaryFile(Serializable):
    """One file of a build, read statically (never executed)."""

    path: str
    role: str  # executable, library, backend, unknown
    format: str | None = None  # ELF, Mach-O, PE; None when not a binary
    arch: str | None = None
    size: int = 0
    needed: list[str] = field(default_factory=list)
    missing_needed: list[str] = field(default_factory=list)
    symbol_versions: dict[str, str] = field(default_factory=dict)  # GLIBC -> 2.38, GLIBCXX -> 3.4.32
    isa: list[str] = field(default_factory=list)  # features its code uses, llama.cpp vocabulary
    isa_level: str | None = None  # sse, avx, avx2, avx512...
    cuda_archs: list[str] = field(default_factory=list)  # sm_86 (SASS), compute_89 (PTX)
    backends: list[str] = field(default_factory=list)  # backends this file carries
    debug_info: bool = False
    error: str | None = None  # why it could not be read
    missing_versions: list[str] = field(default_factory=list)  # "GLIBC_2.99 (libc.so.6)": required, not defined here
    isa_detail: list[str] = field(default_factory=list)  # finer CPUID names seen: AVX512F, AVX512BW, AVX512VL...
    os: str | None = None  # linux, darwin, windows, android, freebsd (builddoctor.platforms names)
    archs: list[str] = field(default_factory=list)  # every architecture it holds (a fat Mach-O: one per slice)
    load_problems: list[LoadProblem] = field(default_factory=list)  # why ld.so would refuse it here


@dataclass
class BuildProfile(Serializable):
    """One llama.cpp build: an executable with its libraries and backends, or a lib folder."""

    root: str
    schema_version: int = SCHEMA_VERSION
    name: str = ""
    files: list[BinaryFile] = field(default_factory=list)
    is_llama_cpp: bool = True
    origin: str = ""  # path, build-folder, pip:llama_cpp, install-prefix, bundled
    backends: list[str] = field(default_factory=list)  # CPU, CUDA, Metal, Vulkan, HIP, SYCL, BLAS, RPC...
    cpu_variants: list[str] = field(default_factory=list)  # libggml-cpu-<variant> found
    isa: list[str] = field(default_factory=list)  # union over the CPU code
    isa_level: str | None = None
    cuda_archs: list[str] = field(default_factory=list)
    flash_attn_kernels: bool | None = None  # None: not a CUDA build / unknown
    version: str | None = None
    build_number: int | None = None
    commit: str | None = None
    compiler: str | None = None
    target: str | None = None
    build_type: str | None = None  # Release, Debug, RelWithDebInfo...
    cmake_cache: str | None = None
    cmake_options: dict[str, str] = field(default_factory=dict)
    runtime: list[RuntimeResult] = field(default_factory=list)
    compute: ComputeResult | None = None  # the compute probe (None: not run)
    devices: list[str] = field(default_factory=list)  # from --list-devices
    errors: list[str] = field(default_factory=list)
    isa_detail: list[str] = field(default_factory=list)  # AVX512F, AVX512BW... seen in the CPU code
    openmp: bool | None = None  # CPU backend links an OpenMP runtime (libgomp, libomp)
    ggml_version: str | None = None
    ggml_commit: str | None = None
    evidence: dict[str, str] = field(default_factory=dict)  # field -> how it was learned, for findings


# --------------------------------------------------------------------------- findings


@dataclass
class Finding(Serializable):
    code: str  # stable, e.g. BD101
    severity: str  # error, warning, info, ok
    title: str
    evidence: str = ""
    fix: str = ""  # a command, or what to do
    speedup: str = ""  # expected class of gain, when known
    area: str = ""  # the report line it belongs to: load, cpu, gpu, build, options, version, runtime
    trace: str = ""  # a check that raised: its traceback (shown under -v)


@dataclass
class Hit:
    """A rule's evidence: the values its check's templates are filled with.

    ``code``: which of the checks that name this rule fired (default: the rule's only check);
    ``variant``: a [check.variants.NAME] table whose words (and severity) replace the check's own.
    Rules return it and findings/catalogue.py renders it into a Finding, so that a rule outside
    findings/ (flagcheck's option checks) needs nothing from findings/.
    """

    values: dict[str, Any] = field(default_factory=dict)
    code: str = ""
    variant: str = ""


@dataclass
class BuildReport(Serializable):
    build: BuildProfile
    findings: list[Finding] = field(default_factory=list)

    @property
    def worst(self) -> str:
        order = {"error": 3, "warning": 2, "info": 1, "ok": 0}
        return max((f.severity for f in self.findings), key=lambda s: order.get(s, 0), default="ok")


@dataclass
class Diagnosis(Serializable):
    machine: MachineProfile
    schema_version: int = SCHEMA_VERSION
    builds: list[BuildReport] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # paths skipped and why

    @property
    def healthy(self) -> bool:
        return all(r.worst in ("ok", "info") for r in self.builds)


# --------------------------------------------------------------------------- plans and results


@dataclass
class PlanOption(Serializable):
    name: str
    value: str
    reason: str
    recipe: str


@dataclass
class Prerequisite(Serializable):
    name: str  # tool or library
    kind: str  # tool, library, header
    status: str  # found, missing, too-old, too-new, unchecked (a recorded profile that did not look)
    min_version: str | None = None
    found_version: str | None = None
    recipe: str = ""
    install: dict[str, str] = field(default_factory=dict)  # debian, fedora, arch, macos, windows -> command
    reason: str = ""  # why it is needed, and why it is missing / too old / too new
    max_version: str | None = None  # exclusive upper bound (CUDA 13 cannot build for Pascal: "13")
    required: bool = True  # False: the build goes ahead without it (it only loses what it brings)


@dataclass
class Skipped(Serializable):
    what: str
    reason: str


@dataclass
class BuildPlan(Serializable):
    goal: str  # native, portable
    backend: str  # cpu, cuda, vulkan, hip, metal, sycl...
    schema_version: int = SCHEMA_VERSION
    options: list[PlanOption] = field(default_factory=list)
    prerequisites: list[Prerequisite] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    machine: MachineProfile | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know (forced backend, driver...)
    omit_cpu_variants: list[str] = field(default_factory=list)  # GGML_CPU_ALL_VARIANTS variants not kept (known-bad)

    @classmethod
    def from_dict(cls, data: Any) -> BuildPlan:
        check_schema(data, "build plan")
        return _from_plain(cls, data, "plan")

    def cmake_args(self) -> list[str]:
        return [f"-D{o.name}={o.value}" for o in self.options]

    @property
    def ready(self) -> bool:
        return all(p.status in ("found", "unchecked") for p in self.prerequisites)


@dataclass
class BuildResult(Serializable):
    status: str  # ok, cached, failed, interrupted, missing-toolchain, no-space
    plan: BuildPlan
    source_dir: str
    build_dir: str
    schema_version: int = SCHEMA_VERSION
    cache_key: str = ""
    duration_s: float = 0.0
    log_path: str | None = None
    binaries: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Stat(Serializable):
    mean: float
    stddev: float = 0.0
    n: int = 1


@dataclass
class BenchResult(Serializable):
    binary: str
    schema_version: int = SCHEMA_VERSION
    model: str = ""
    model_bytes: int = 0
    bytes_per_token: int = 0  # weights one generated token reads (the embedding: one row); 0 = model_bytes
    threads: int = 0
    n_gpu_layers: int = 0
    pp_tokens: int = 0
    tg_tokens: int = 0
    pp: Stat | None = None  # tokens/s
    tg: Stat | None = None
    bandwidth_gbs: float | None = None
    roofline_fraction: float | None = None  # tg * bytes/token / bandwidth
    error: str | None = None
    backends: str = ""  # what llama-bench says it ran with: "CPU", "Vulkan", "CUDA"...
    gpu_info: str = ""  # the GPU(s) it ran on, in llama-bench's words ("" on the CPU)
