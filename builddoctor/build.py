"""BuildPlan -> BuildResult: configure and compile llama.cpp into a cache.

One finished build is one cache entry ``<cache>/builds/<key>/`` (the cmake build folder,
object files dropped, ``bin/`` with the programs and libraries, ``build.log`` and the
``builddoctor-build.json`` marker). The key hashes the source's identity, the plan's
options, the targets, the compilers and this module's recipe, so an identical second
request is answered from the cache at once.

A build runs in ``<cache>/builds/.tmp-<key>-<pid>`` and is renamed into place only when
it succeeded: an interrupted or killed build never leaves a half entry (leftover temp
folders are removed by the next build). Every llama.cpp compile takes the machine-wide
lock ``/tmp/builddoctor-llama-build.lock``, uses ccache when it is installed, and runs
under a time limit with a clean environment (``proc.stream``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import paths, proc
from builddoctor.cmake_bool import is_on
from builddoctor.profiles import BuildPlan, BuildResult
from builddoctor.tomlload import data_file

LOCK_PATH = Path("/tmp/builddoctor-llama-build.lock")  # shared with every llama.cpp compile on this machine


def default_lock_path() -> Path:
    """The machine-wide build lock (BUILDDOCTOR_BUILD_LOCK overrides, e.g. for tests)."""
    return Path(os.environ.get("BUILDDOCTOR_BUILD_LOCK") or LOCK_PATH)


MARKER = "builddoctor-build.json"
LOG_NAME = "build.log"
BUILD_TIMEOUT = 3600.0  # compile; generous, but a limit
CONFIGURE_TIMEOUT = 600.0
TOOL_TIMEOUT = 20.0
#: environment variables a user sets on purpose to choose compilers; passed through and keyed
# Passed from the user's environment to cmake: compilers, and where toolkits live (VULKAN_SDK is
# how the LunarG SDK, or newer headers unpacked by hand, are found).
COMPILER_ENV = (
    "CC",
    "CXX",
    "CUDACXX",
    "CUDAHOSTCXX",
    "CUDAToolkit_ROOT",
    "CCACHE_DIR",
    "CCACHE_MAXSIZE",
    "VULKAN_SDK",
    "CMAKE_PREFIX_PATH",
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NINJA = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)$")


def data() -> dict:
    """builddoctor/data/build.toml (the data layer's cached reader)."""
    return data_file("build.toml")


# --------------------------------------------------------------------------- progress


@dataclass
class ProgressEvent:
    stage: str  # configure, compile, done, failed
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str = ""


ProgressFn = Callable[[ProgressEvent], None]


# --------------------------------------------------------------------------- inputs of the key


def default_cache_root() -> Path:
    return paths.cache_dir() / "builds"


def targets_of(plan: BuildPlan) -> list[str]:
    return list(plan.targets) or list(data()["default_targets"])


def plan_options(plan: BuildPlan) -> dict[str, str]:
    return {o.name: o.value for o in plan.options}


def uses_cuda(plan: BuildPlan) -> bool:
    opts = plan_options(plan)
    return plan.backend.lower() == "cuda" or is_on(opts.get("GGML_CUDA"))


def pin_data() -> tuple[str, int]:
    """(short commit, build number) of the pinned tree, from builddoctor/data/llama_pin.toml."""
    from builddoctor.source import load_pin  # the one reader of the pin

    pin = load_pin()
    return pin.short_commit, pin.build_number


def is_git_checkout(source_dir: Path) -> bool:
    return (source_dir / ".git").exists()


def is_pinned_tree(source_dir: Path) -> bool:
    try:
        return source_dir.resolve() == paths.vendor_dir().resolve()
    except OSError:
        return False


def source_identity(source_dir: Path) -> str:
    """What the sources are: git HEAD + local changes for a checkout, else a walk of the tree.

    The walk hashes each file's path, size and modification time (content hashing of 180 MB
    costs more than the build cache saves on a small change); build folders (those holding a
    CMakeCache.txt), hidden folders and ``models/`` are left out.
    """
    source_dir = source_dir.resolve()
    if is_git_checkout(source_dir):
        head = proc.run(["git", "-C", str(source_dir), "rev-parse", "HEAD"], timeout=TOOL_TIMEOUT)
        if head.ok:
            diff = proc.run(["git", "-C", str(source_dir), "diff", "HEAD", "--no-color", "--no-ext-diff"], timeout=60)
            untracked = proc.run(["git", "-C", str(source_dir), "status", "--porcelain", "-uall"], timeout=60)
            h = hashlib.sha256()
            h.update(head.stdout.strip().encode())
            h.update(diff.stdout.encode())
            h.update(untracked.stdout.encode())
            return f"git:{head.stdout.strip()}:{h.hexdigest()[:16]}"
    h = hashlib.sha256()
    count = 0
    for root, dirs, files in os.walk(source_dir):
        if "CMakeCache.txt" in files and Path(root) != source_dir:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (Path(root) == source_dir and d == "models"))
        for name in sorted(files):
            p = Path(root, name)
            try:
                st = p.lstat()
            except OSError:
                continue
            h.update(f"{p.relative_to(source_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            count += 1
    return f"tree:{count}:{h.hexdigest()}"


def _first_line(argv: list[str], env: dict[str, str]) -> str:
    res = proc.run(argv, timeout=TOOL_TIMEOUT, env=env)
    if not res.ok:
        return f"{argv[0]}: {res.error or res.returncode}"
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    return lines[0].strip() if lines else ""


def compiler_versions(plan: BuildPlan, env: dict[str, str]) -> dict[str, str]:
    cc = env.get("CC", "cc")
    cxx = env.get("CXX", "c++")
    out = {
        "cc": f"{shutil.which(cc, path=env.get('PATH')) or cc}: {_first_line([cc, '--version'], env)}",
        "c++": f"{shutil.which(cxx, path=env.get('PATH')) or cxx}: {_first_line([cxx, '--version'], env)}",
    }
    if uses_cuda(plan):
        nvcc = env.get("CUDACXX", "nvcc")
        res = proc.run([nvcc, "--version"], timeout=TOOL_TIMEOUT, env=env)
        out["nvcc"] = (res.output.strip().splitlines() or [""])[-1] if res.ok else "missing"
    return out


def build_env(plan: BuildPlan, cache_root: Path, base_env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base_env) if base_env is not None else proc.clean_env()
    if base_env is None:
        for name in COMPILER_ENV:
            if name in os.environ:
                env[name] = os.environ[name]
    env.update(plan.env)
    sdk = env.get("VULKAN_SDK")
    if sdk:
        # CMake's FindVulkan reads VULKAN_SDK, but find_package(SPIRV-Headers CONFIG) only looks
        # in prefixes: make the SDK one, as the LunarG SDK's setup-env.sh does through PATH.
        prefixes = [p for p in env.get("CMAKE_PREFIX_PATH", "").split(os.pathsep) if p]
        if sdk not in prefixes:
            env["CMAKE_PREFIX_PATH"] = os.pathsep.join([sdk, *prefixes])
    # ccache: paths under the cache folder are rewritten relative to each compile's working
    # folder, so the temp folder's name does not spoil hits between builds.
    env.setdefault("CCACHE_BASEDIR", str(cache_root.resolve()))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    return env


def environment(
    plan: BuildPlan, source_dir: Path, cache_root: Path, base_env: dict[str, str] | None = None
) -> dict[str, str]:
    """Exactly the environment the build starts cmake with (``--dry-run`` prints it)."""
    env = build_env(plan, cache_root, base_env)
    if not is_git_checkout(source_dir):
        # ggml's CMake asks git for its commit; in the pinned tree (inside builddoctor's own
        # repository) git would answer with builddoctor's commit: stop its search at the tree.
        env["GIT_CEILING_DIRECTORIES"] = str(source_dir)
    return env


def check_policy(plan: BuildPlan, source_dir: Path, env: dict[str, str], allowed_paths=()) -> None:
    """Refuse a plan that asks for more than llama.cpp options (plan_policy), before anything runs;
    compilers named in it are looked up on the PATH the build will use."""
    from builddoctor import plan_policy

    plan_policy.enforce(
        plan.to_dict(),
        where="The build plan",
        source=source_dir,
        allowed_paths=allowed_paths,
        search_path=env.get("PATH"),
    )


def cache_key(plan: BuildPlan, source_dir: Path, env: dict[str, str], *, identity: str | None = None) -> str:
    doc = {
        "recipe": data()["recipe_version"],
        "source": identity or source_identity(source_dir),
        "source_dir": str(source_dir.resolve()),
        "options": sorted(plan_options(plan).items()),
        "targets": sorted(targets_of(plan)),
        "env": sorted(plan.env.items()),
        "compilers": compiler_versions(plan, env),
        "user_env": sorted((k, env[k]) for k in COMPILER_ENV if k in env and not k.startswith("CCACHE")),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- commands


def _has_ccache(env: dict[str, str]) -> bool:
    return shutil.which("ccache", path=env.get("PATH")) is not None


def configure_command(plan: BuildPlan, source_dir: Path, build_dir: Path, env: dict[str, str]) -> list[str]:
    """The cmake configure command, the one builder: ``build`` runs it and ``recipe`` prints it."""
    cfg = data()["cmake"]
    argv = ["cmake", "-S", str(source_dir), "-B", str(build_dir), "-G", cfg["generator"], *plan.cmake_args()]
    have = {a.split("=", 1)[0][2:] for a in argv if a.startswith("-D")}
    extra = list(cfg["args"])
    if "CMAKE_BUILD_TYPE" not in have:
        extra.append(f"-DCMAKE_BUILD_TYPE={cfg['build_type']}")
    if _has_ccache(env):
        extra += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        if uses_cuda(plan):
            extra.append("-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache")
    if not is_git_checkout(source_dir):
        # llama.cpp asks git for its commit; in a tree without .git (the pinned one sits
        # inside another repository) that would find the wrong commit.
        commit, number = pin_data() if is_pinned_tree(source_dir) else ("unknown", 0)
        extra += [f"-DLLAMA_BUILD_COMMIT={commit}", f"-DLLAMA_BUILD_NUMBER={number}"]
    argv += [a for a in extra if a.split("=", 1)[0][2:] not in have]
    return argv


def compile_command(plan: BuildPlan, build_dir: Path, jobs: int) -> list[str]:
    return ["cmake", "--build", str(build_dir), "--target", *targets_of(plan), "-j", str(jobs)]


#: the build folder's name in a dry run: the real key hashes the compilers' --version output and
#: the source tree's state, and a dry run neither runs a compiler nor reads the tree
KEY_PLACEHOLDER = "<key>"


@dataclass
class DryRun:
    """What ``build`` would do, computed without running or writing anything."""

    commands: list[list[str]]
    env: dict[str, str]  # the whole environment cmake would start with
    build_dir: str  # <cache>/<key>


def commands(
    plan: BuildPlan,
    source_dir: Path,
    *,
    cache_root: Path | None = None,
    jobs: int | None = None,
    allowed_paths=(),
    build_dir: Path | None = None,
    policy: bool = True,
) -> DryRun:
    """The commands ``build`` would run (for --dry-run, and what ``recipe`` prints). Checks the plan's
    policy (unless ``policy`` is False: a recipe for another machine is built there); runs nothing
    (no compiler --version, no git), reads no source tree and creates no folder."""
    cache_root = Path(cache_root or default_cache_root()).absolute()
    source_dir = Path(source_dir).absolute()
    env = environment(plan, source_dir, cache_root)
    if policy:
        check_policy(plan, source_dir, env, allowed_paths)
    bdir = build_dir if build_dir is not None else cache_root / KEY_PLACEHOLDER
    return DryRun(
        [configure_command(plan, source_dir, bdir, env), compile_command(plan, bdir, jobs or choose_jobs(plan))],
        env,
        str(bdir),
    )


# --------------------------------------------------------------------------- jobs, tools, space


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_jobs(plan: BuildPlan, *, cores: int | None = None, mem_available: int | None = None) -> int:
    """Parallel compile jobs: one per core, fewer when memory would not hold them.

    A CUDA compile job (nvcc on ggml-cuda's template-heavy files) peaks at several GiB, a
    C++ one at about one: a plan that enables CUDA gets a larger share per job.
    """
    cores = cores or cpu_count()
    mem = mem_available if mem_available is not None else available_memory()
    cfg = data()["jobs"]
    per_job = (cfg["cuda_job_mib"] if uses_cuda(plan) else cfg["cxx_job_mib"]) * 1024 * 1024
    jobs = cores
    if mem:
        jobs = min(jobs, mem // per_job)
    return max(1, int(jobs))


def missing_tools(plan: BuildPlan, env: dict[str, str]) -> list[str]:
    path = env.get("PATH")
    opts = plan_options(plan)
    need = [
        "cmake",
        "ninja",
        opts.get("CMAKE_C_COMPILER") or env.get("CC", "cc"),
        opts.get("CMAKE_CXX_COMPILER") or env.get("CXX", "c++"),
    ]
    if uses_cuda(plan):
        nvcc = env.get("CUDACXX") or "nvcc"
        if shutil.which(nvcc, path=path) is None and not any(Path(p).is_file() for p in ("/usr/local/cuda/bin/nvcc",)):
            return [n for n in need if shutil.which(n, path=path) is None] + ["nvcc"]
    return [n for n in need if shutil.which(n, path=path) is None]


BLOCKING = ("missing", "too-old", "too-new")


def unmet_prerequisites(plan: BuildPlan, exclude: Sequence[str] = ()) -> list:
    """The plan's prerequisites that the resolver found missing or of the wrong version.

    Checked before configuring: a missing glslc or too-old Vulkan headers otherwise cost a
    configure (or a 5-minute compile) before failing. Drivers are not needed to compile, and a
    prerequisite marked ``required = false`` only costs a feature (the recipe's notes say which).
    """
    return [
        p
        for p in plan.prerequisites
        if p.status in BLOCKING and p.required and p.kind != "driver" and p.name not in exclude
    ]


def _install_command(p) -> str:
    """The prerequisite's install command for this system (its recipe's, first one as fallback)."""
    return p.install.get(_distro()) or next(iter(p.install.values()), "install it and put it on PATH")


def prerequisite_hint(p) -> str:
    cmd = _install_command(p)
    if p.status == "missing":
        state = "not found"
    else:
        bound = f"needs {p.min_version} or newer" if p.status == "too-old" else f"needs below {p.max_version}"
        state = f"{p.found_version} found, {bound}"
    why = f"\n      why: {p.reason}" if p.reason else ""
    return f"  {p.name} ({state}): {cmd}{why}"


def install_hint(tools: list[str], plan: BuildPlan | None = None) -> str:
    table = data()["tools"]
    distro = _distro()
    lines = []
    for tool in tools:
        prereq = next((p for p in (plan.prerequisites if plan else []) if p.name == tool and p.install), None)
        if prereq is not None:
            lines.append(f"  {tool}: {_install_command(prereq)}")
            continue
        key = tool if tool in table else Path(tool).name
        info = table.get(key, table.get("cc" if "cc" in key or "gcc" in key or "clang" in key else "", {}))
        cmd = info.get(distro) or info.get("debian") or "install it and put it on PATH"
        lines.append(f"  {tool} ({info.get('why', 'needed to build')}): {cmd}")
    return "\n".join(lines)


def _distro() -> str:
    """This machine's install-command key (platforms.install_keys: the one reading of a distribution)."""
    import sys

    from builddoctor.platforms import install_keys, this_description

    return install_keys(sys.platform, this_description())[0]


def free_space(path: Path) -> int | None:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


# --------------------------------------------------------------------------- the cache


def entry_result(entry: Path) -> BuildResult | None:
    """The marker of a finished cache entry, if it is whole (marker and every binary present)."""
    from builddoctor.errors import InputError
    from builddoctor.readinput import read_json

    try:
        result = BuildResult.from_dict(read_json(entry / MARKER, "build cache marker"))
    except (InputError, ValueError):
        return None
    if not result.binaries or not all(Path(b).is_file() for b in result.binaries):
        return None
    return result


def clean_stale(cache_root: Path) -> list[Path]:
    """Remove temp folders of builds that did not finish.

    Call with the build lock held: then no other build of this cache is running, and every
    ``.tmp-*`` folder is the remains of a killed or crashed one.
    """
    removed: list[Path] = []
    if not cache_root.is_dir():
        return removed
    for p in cache_root.iterdir():
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextmanager
def build_lock(path: Path | None = None, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    with open(path or default_lock_path(), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- errors in logs


def relevant_error_lines(text: str, *, before: int = 2, after: int = 3, limit: int = 40) -> str:
    """The lines of a build log that say what went wrong, with a little context."""
    markers = data()["classify"]["error_markers"]
    lines = [_ANSI.sub("", ln) for ln in text.splitlines()]
    keep: set[int] = set()
    for i, ln in enumerate(lines):
        if any(m in ln for m in markers):
            keep.update(range(max(0, i - before), min(len(lines), i + after + 1)))
    if not keep:
        picked = [ln for ln in lines if ln.strip()][-15:]
    else:
        # ninja's progress lines are noise around an error
        picked = [lines[i] for i in sorted(keep) if not _NINJA.match(lines[i])]
        # the first errors are the cause; later ones are usually consequences
        picked = picked[:limit]
    return "\n".join(ln if len(ln) <= 400 else ln[:400] + " ..." for ln in picked)


def classify_failure(text: str) -> str:
    cls = data()["classify"]
    if any(m in text for m in cls["no_space"]):
        return "no-space"
    if any(m in text for m in cls["missing_toolchain"]):
        return "missing-toolchain"
    return "failed"


# --------------------------------------------------------------------------- build


def build(
    plan: BuildPlan,
    source_dir: Path,
    *,
    jobs: int | None = None,
    progress: ProgressFn | None = None,
    cache_root: Path | None = None,
    timeout: float = BUILD_TIMEOUT,
    min_free_bytes: int | None = None,
    env: dict[str, str] | None = None,
    lock_path: Path | None = None,
    allowed_paths=(),
) -> BuildResult:
    """Build ``plan`` from ``source_dir``; return at once with status "cached" if built before.

    Never raises for a failed build: the status says what happened (ok, cached, failed,
    interrupted, missing-toolchain, no-space), ``error`` the relevant lines, ``log_path``
    the full log. Raises ``PlanRefused`` (before anything runs) for a plan outside the policy:
    ``allowed_paths`` are the absolute compiler/toolkit paths the user confirmed.
    """
    t0 = time.monotonic()
    lock_file = Path(lock_path) if lock_path else default_lock_path()
    source_dir = Path(source_dir).resolve()
    cache_root = Path(cache_root or default_cache_root()).absolute()
    benv = environment(plan, source_dir, cache_root, env)
    check_policy(plan, source_dir, benv, allowed_paths)
    targets = targets_of(plan)

    def result(status: str, **kw) -> BuildResult:
        kw.setdefault("duration_s", round(time.monotonic() - t0, 2))
        return BuildResult(status=status, plan=plan, source_dir=str(source_dir), **kw)

    if not (source_dir / "CMakeLists.txt").is_file():
        from builddoctor.errors import InputError

        raise InputError(f"{source_dir} is not a llama.cpp source tree (no CMakeLists.txt there).")

    missing = missing_tools(plan, benv)
    unmet = unmet_prerequisites(plan, exclude=missing)
    if missing or unmet:
        names = missing + [p.name for p in unmet]
        lines = [install_hint(missing, plan)] if missing else []
        lines += [prerequisite_hint(p) for p in unmet]
        return result(
            "missing-toolchain",
            build_dir="",
            error=f"Missing build prerequisites: {', '.join(names)}. builddoctor installs nothing by "
            "itself; install them, then run the build again:\n" + "\n".join(lines),
        )

    key = cache_key(plan, source_dir, benv)
    entry = cache_root / key
    hit = entry_result(entry)
    if hit is not None:
        hit.status = "cached"
        hit.duration_s = round(time.monotonic() - t0, 2)
        return hit

    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno == 28:
            return result("no-space", build_dir="", cache_key=key, error=f"No space left to create {cache_root}.")
        raise
    need = min_free_bytes if min_free_bytes is not None else data()["jobs"]["min_free_disk_mib"] * 1024 * 1024
    free = free_space(cache_root)
    if free is not None and free < need:
        return result(
            "no-space",
            build_dir="",
            cache_key=key,
            error=f"Only {free / 2**20:.0f} MiB free in {cache_root}; a build needs about "
            f"{need / 2**20:.0f} MiB. Free some space (or set BUILDDOCTOR_CACHE to a "
            "larger disk) and run again.",
        )

    jobs = jobs or choose_jobs(plan)

    def emit(ev: ProgressEvent) -> None:
        if progress is not None:
            progress(ev)

    def waiting() -> None:
        emit(ProgressEvent("waiting", message=f"another llama.cpp build holds {lock_file}; waiting for it"))

    tmp = cache_root / f".tmp-{key}-{os.getpid()}"
    failed_logs = cache_root / "failed"
    log_file = tmp / LOG_NAME
    try:
        with proc.signals_raise(), build_lock(lock_file, on_wait=waiting):
            hit = entry_result(entry)  # built by someone else while we waited
            if hit is not None:
                hit.status = "cached"
                hit.duration_s = round(time.monotonic() - t0, 2)
                return hit
            clean_stale(cache_root)
            if entry.exists():  # an incomplete entry (files deleted by hand): replace it
                shutil.rmtree(entry, ignore_errors=True)
            tmp.mkdir(parents=True)
            status, error = _configure_and_compile(plan, source_dir, tmp, benv, jobs, timeout, log_file, emit, targets)
            if status == "failed" and _disk_full(tmp):
                # cmake does not always say so: a full disk can leave a truncated build.ninja
                # (then ninja reports a "lexing error"), or a compiler dies half-way
                status = "no-space"
                error = (
                    f"The disk holding {cache_root} is full (free: {free_space(tmp) or 0} bytes); "
                    f"the build stopped with:\n{error}"
                )
            if status != "ok":
                kept = _keep_log(log_file, failed_logs, key)
                shutil.rmtree(tmp, ignore_errors=True)
                emit(ProgressEvent("failed", elapsed_s=time.monotonic() - t0, message=status))
                return result(status, build_dir="", cache_key=key, log_path=str(kept) if kept else None, error=error)
            _drop_objects(tmp)
            _omit_variants(tmp / "bin", plan.omit_cpu_variants)
            final = result(
                "ok",
                build_dir=str(entry),
                cache_key=key,
                log_path=str(entry / LOG_NAME),
                binaries=[str(entry / "bin" / t) for t in targets],
            )
            (tmp / MARKER).write_text(final.to_json())
            os.rename(tmp, entry)
            emit(ProgressEvent("done", elapsed_s=time.monotonic() - t0))
            return final
    except KeyboardInterrupt:  # SIGINT, SIGTERM, SIGHUP: proc.Interrupted
        kept = _keep_log(log_file, failed_logs, key)
        shutil.rmtree(tmp, ignore_errors=True)
        return result(
            "interrupted",
            build_dir="",
            cache_key=key,
            log_path=str(kept) if kept else None,
            error="The build was interrupted; nothing was kept in the cache and nothing was installed.",
        )
    except OSError as exc:
        kept = _keep_log(log_file, failed_logs, key)
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == 28:
            return result(
                "no-space",
                build_dir="",
                cache_key=key,
                log_path=str(kept) if kept else None,
                error=f"No space left on device while building in {cache_root}.",
            )
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class _EtaWeights:
    """The ETA of a CUDA build: nvcc steps weigh ``cuda_step_weight`` C/C++ steps (data/build.toml), and
    how many there are is read from build.ninja, so the C++ files that go first do not make it run low."""

    def __init__(self, bdir: Path):
        cfg = data().get("progress", {})
        self.weight = float(cfg.get("cuda_step_weight", 1))
        self.message = cfg.get("cuda_message", "Building CUDA object")
        try:
            text = (bdir / "build.ninja").read_text(errors="replace")
        except OSError:
            text = ""
        self.cuda_total = len(re.findall(r"^build \S+" + cfg.get("cuda_step", r"\.cu\.o: CUDA_COMPILER"), text, re.M))
        self.cuda_done = 0

    def left(self, done: int, total: int, message: str, elapsed: float) -> float | None:
        if self.message in message:
            self.cuda_done += 1
        cuda_total = min(self.cuda_total, total)
        cuda_done = min(self.cuda_done, cuda_total, done)
        units_done = (done - cuda_done) + self.weight * cuda_done
        units_total = (total - cuda_total) + self.weight * cuda_total
        if done <= 1 or units_done <= 1:
            return None
        return elapsed / (units_done - 1) * max(0.0, units_total - units_done)


def _configure_and_compile(plan, source_dir, bdir, env, jobs, timeout, log_file, emit, targets):
    t0 = time.monotonic()
    with open(log_file, "w", encoding="utf-8") as log:

        def write(line: str) -> None:
            log.write(_ANSI.sub("", line) + "\n")

        # configure
        argv = configure_command(plan, source_dir, bdir, env)
        write("$ " + " ".join(argv))
        log.flush()
        emit(ProgressEvent("configure", message="cmake configure"))
        res = proc.stream(argv, timeout=min(timeout, CONFIGURE_TIMEOUT), on_line=write, env=env)
        log.flush()
        bad = _step_failure(res, "configure", timeout)
        if bad:
            return bad
        # compile, with progress from ninja's [N/M] lines
        argv = compile_command(plan, bdir, jobs)
        write("$ " + " ".join(argv))
        started = time.monotonic()
        first_done: list[float] = []

        biggest = [0]
        eta = _EtaWeights(bdir) if uses_cuda(plan) else None

        def on_line(line: str) -> None:
            write(line)
            m = _NINJA.match(_ANSI.sub("", line))
            if not m:
                return
            done, total = int(m.group(1)), int(m.group(2))
            # a nested build (the Vulkan shader generator is an ExternalProject) prints its
            # own [n/total] lines through ours: follow the biggest one, the top level
            if total < biggest[0]:
                return
            if total > biggest[0]:
                biggest[0] = total
                first_done.clear()  # the rate so far was the nested build's
            now = time.monotonic()
            if not first_done:
                first_done.append(now)
            left = None
            if eta is not None:
                left = eta.left(done, total, m.group(3), now - first_done[0])
            elif done > 1:
                rate = (now - first_done[0]) / (done - 1)
                left = rate * (total - done)
            emit(
                ProgressEvent(
                    "compile", done=done, total=total, eta_s=left, elapsed_s=now - started, message=m.group(3)
                )
            )

        res = proc.stream(argv, timeout=max(1.0, timeout - (time.monotonic() - t0)), on_line=on_line, env=env)
        log.flush()
        bad = _step_failure(res, "compile", timeout)
        if bad:
            return bad
        missing = [t for t in targets if not (bdir / "bin" / t).is_file()]
        if missing:
            write(f"builddoctor: error: the build finished but did not produce {', '.join(missing)}")
            return "failed", f"The build finished but {', '.join(missing)} is missing from {bdir / 'bin'}."
    return "ok", None


def _step_failure(res: proc.Completed, step: str, timeout: float) -> tuple[str, str] | None:
    if res.ok:
        return None
    if res.error:
        return "missing-toolchain", f"could not run {res.argv[0]}: {res.error}"
    if res.timed_out:
        return "failed", f"The {step} step ran past its time limit ({timeout:.0f} s) and was stopped."
    status = classify_failure(res.output)
    lines = relevant_error_lines(res.output)
    how = f"died from {res.signal}" if res.signal else f"exit code {res.returncode}"
    return status, f"The {step} step failed ({how}):\n{lines}"


def _disk_full(path: Path, slack: int = 4 << 20) -> bool:
    free = free_space(path)
    return free is not None and free < slack


def _keep_log(log_file: Path, folder: Path, key: str) -> Path | None:
    if not log_file.is_file():
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        shutil.copyfile(log_file, dest)
        return dest
    except OSError:
        return None


def _omit_variants(bin_dir: Path, variants: list[str]) -> None:
    """Remove the CPU variants the plan leaves out (a known-bad row): ggml's loader then picks
    the next best variant on a CPU that would have loaded one of them."""
    for v in variants:
        for pattern in (f"libggml-cpu-{v}.so*", f"libggml-cpu-{v}.dylib", f"ggml-cpu-{v}.dll"):
            for f in bin_dir.glob(pattern):
                f.unlink()


def _drop_objects(build_dir: Path) -> None:
    """Object files are in ccache already; a cache entry keeps what runs and what explains."""
    for root, _dirs, files in os.walk(build_dir):
        for name in files:
            if name.endswith((".o", ".obj")):
                try:
                    os.unlink(os.path.join(root, name))
                except OSError:
                    pass


# --------------------------------------------------------------------------- verify


@dataclass
class Verification:
    ok: bool
    remaining: list  # Finding codes of the old build's problems still present
    findings: list  # the new build's findings (Finding)
    message: str = ""
    builds: list = field(default_factory=list)  # the new build as check read it (BuildProfile)


def problem_codes(report) -> list[str]:
    """Codes of the findings that motivate a rebuild (errors and warnings)."""
    return [f.code for f in report.findings if f.severity in ("error", "warning")]


def verify(result: BuildResult, machine, motivating: list[str] | None = None) -> Verification:
    """Inspect the new build as ``check`` does; it counts only if the old problems are gone."""
    from builddoctor.findings import diagnose

    bin_dir = Path(result.build_dir) / "bin"
    diag = diagnose(machine, [bin_dir], run=True)
    if not diag.builds:
        return Verification(
            False,
            list(motivating or []),
            [],
            f"check found no llama.cpp build in {bin_dir}: " + "; ".join(diag.messages),
        )
    findings = [f for r in diag.builds for f in r.findings]
    left = sorted({f.code for f in findings if f.severity in ("error", "warning")})
    remaining = [c for c in (motivating or []) if c in left]
    errors = [f for f in findings if f.severity == "error"]
    ok = not remaining and not errors
    if ok:
        msg = "the new build is healthy" if not left else f"fixed; still noted: {', '.join(left)}"
    else:
        bad = sorted(set(remaining) | {f.code for f in errors})
        titles = "; ".join(f"{f.code} {f.title}" for f in findings if f.code in bad)
        msg = f"the new build still has: {titles}"
    return Verification(ok, remaining, findings, msg, builds=[r.build for r in diag.builds])
