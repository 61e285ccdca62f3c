"""builddoctor.build: cache, progress, failures and kills, with the real cmake + ninja + gcc.

Most tests build tests/fixtures/build/miniproj (a tiny project with llama.cpp's target
names and bin/ layout) so that the mechanics are tested in seconds; the tests marked slow
build the pinned llama.cpp itself.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from builddoctor import build, paths, proc
from builddoctor.profiles import BuildPlan, PlanOption
from builddoctor.source import ensure_source  # the pinned tree, fetched once if missing
from tests.toolpath import only_tools

MINI = Path(__file__).parent / "fixtures" / "build" / "miniproj"
REPO = Path(__file__).resolve().parent.parent


def mini_plan(**opts: str) -> BuildPlan:
    return BuildPlan(goal="native", backend="cpu", options=[PlanOption(k, v, "test", "test") for k, v in opts.items()])


@pytest.fixture
def mini(tmp_path):
    """A private copy of the mini project (its tree state is part of the cache key)."""
    src = tmp_path / "src"
    shutil.copytree(MINI, src)
    return src


@pytest.fixture
def lock(tmp_path):
    # the mini project is not llama.cpp: it need not queue behind llama.cpp compiles
    return tmp_path / "mini.lock"


def test_build_runs_caches_and_relocates(mini, tmp_path, lock):
    events = []
    cache = tmp_path / "cache"
    res = build.build(mini_plan(), mini, cache_root=cache, progress=events.append, lock_path=lock)
    assert res.status == "ok", res.error
    entry = Path(res.build_dir)
    assert entry.parent == cache and entry.name == res.cache_key
    assert sorted(Path(b).name for b in res.binaries) == sorted(build.data()["default_targets"])
    # the build was renamed from its temp folder: the programs still find their library ($ORIGIN)
    out = proc.run([res.binaries[0]], timeout=10)
    assert out.ok and "miniproj 43" in out.stdout, out.output
    assert Path(res.log_path).is_file() and "$ cmake" in Path(res.log_path).read_text()
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]
    assert not list(entry.rglob("*.o")), "object files are dropped from cache entries"
    compile_events = [e for e in events if e.stage == "compile"]
    assert compile_events and compile_events[-1].done == compile_events[-1].total > 5
    assert events[-1].stage == "done"

    t0 = time.monotonic()
    again = build.build(mini_plan(), mini, cache_root=cache, lock_path=lock)
    assert again.status == "cached" and again.build_dir == res.build_dir
    assert time.monotonic() - t0 < 3

    other = build.build(mini_plan(MINI_SLOW="0.1"), mini, cache_root=cache, lock_path=lock)
    assert other.status == "ok" and other.cache_key != res.cache_key


def test_source_change_changes_key(mini, tmp_path):
    env = build.build_env(mini_plan(), tmp_path)
    k1 = build.cache_key(mini_plan(), mini, env)
    assert build.cache_key(mini_plan(), mini, env) == k1
    (mini / "tool.c").write_text((mini / "tool.c").read_text() + "\n/* edited */\n")
    assert build.cache_key(mini_plan(), mini, env) != k1


def test_compile_error_reports_lines_and_keeps_log(mini, tmp_path, lock):
    cache = tmp_path / "cache"
    res = build.build(mini_plan(MINI_FAIL="ON"), mini, cache_root=cache, lock_path=lock)
    assert res.status == "failed"
    assert "injected failure (MINI_FAIL)" in res.error and "error" in res.error
    assert res.log_path and Path(res.log_path).is_file()
    assert "injected failure" in Path(res.log_path).read_text()
    assert not [p for p in cache.iterdir() if p.name not in ("failed",)], "no cache entry, no temp folder"


def test_missing_toolchain_says_what_to_install(mini, tmp_path, lock):
    tools = only_tools(tmp_path / "tools", ("cc", "c++", "gcc", "g++"))  # a compiler, but no cmake and no ninja
    env = proc.clean_env({"PATH": str(tools)})
    res = build.build(mini_plan(), mini, cache_root=tmp_path / "cache", env=env, lock_path=lock)
    assert res.status == "missing-toolchain"
    assert "cmake" in res.error and "ninja" in res.error and "install" in res.error


def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, timeout=10
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    return path


@pytest.fixture
def tiny_disk(tmp_path):
    mounts = []

    def make(size: str) -> Path:
        p = _tmpfs(tmp_path / f"disk{len(mounts)}", size)
        mounts.append(p)
        return p

    yield make
    for p in mounts:
        subprocess.run(["umount", "-l", str(p)], timeout=10)


def test_no_space_before_starting(mini, tiny_disk, lock):
    disk = tiny_disk("1m")
    res = build.build(mini_plan(), mini, cache_root=disk / "cache", lock_path=lock)
    assert res.status == "no-space"
    assert "free" in res.error and "BUILDDOCTOR_CACHE" in res.error


def test_no_space_during_the_build(mini, tiny_disk, lock):
    # enough room to start, not enough to finish: the real ENOSPC from cmake/the compiler
    disk = tiny_disk("160k")
    res = build.build(mini_plan(), mini, cache_root=disk / "cache", lock_path=lock, min_free_bytes=0)
    assert res.status == "no-space", (res.status, res.error)
    assert not [p for p in (disk / "cache").iterdir() if p.name.startswith(".tmp-") or len(p.name) == 20]


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from builddoctor import build
    from builddoctor.profiles import BuildPlan, PlanOption
    plan = BuildPlan(goal="native", backend="cpu", options=[PlanOption("MINI_SLOW", "3", "t", "t")])
    def show(ev):
        print(ev.stage, ev.done, ev.total, flush=True)
    res = build.build(plan, Path(sys.argv[1]), cache_root=Path(sys.argv[2]), lock_path=Path(sys.argv[3]),
                      progress=show, jobs=1)
    print("STATUS", res.status, flush=True)
""")


def _start_build(mini, cache, lock):
    return subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(mini), str(cache), str(lock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


def _wait_compiling(p: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    for line in p.stdout:
        if line.startswith("compile"):
            return
        assert time.monotonic() < deadline
    raise AssertionError("the build never started compiling")


def _children_of_tmp(cache: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, timeout=10).stdout
    return [ln for ln in out.splitlines() if str(cache) in ln and "ps -eo" not in ln]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_build_leaves_no_entry(mini, tmp_path, lock, sig):
    cache = tmp_path / "cache"
    p = _start_build(mini, cache, lock)
    _wait_compiling(p)
    p.send_signal(sig)
    rest = p.communicate(timeout=60)[0]
    if sig == signal.SIGTERM:
        assert "STATUS interrupted" in rest
        assert not [x for x in cache.iterdir() if x.name.startswith(".tmp-")], "temp folder removed"
    else:
        time.sleep(1)  # the parent-death signal reaches cmake/ninja
        assert not _children_of_tmp(cache), "no orphaned compile keeps running"
    assert not [x for x in cache.iterdir() if len(x.name) == 20], "no cache entry"
    # the next build cleans what the killed one left and succeeds
    res = build.build(mini_plan(), mini, cache_root=cache, lock_path=lock)
    assert res.status == "ok", res.error
    assert not [x for x in cache.iterdir() if x.name.startswith(".tmp-")]


def test_choose_jobs_from_cores_and_memory():
    gib = 1 << 30
    cpu, cuda = mini_plan(), BuildPlan(goal="native", backend="cuda", options=[PlanOption("GGML_CUDA", "ON", "t", "t")])
    assert build.choose_jobs(cpu, cores=16, mem_available=64 * gib) == 16
    assert build.choose_jobs(cpu, cores=16, mem_available=6 * gib) == 6
    assert build.choose_jobs(cuda, cores=16, mem_available=64 * gib) == 16
    assert build.choose_jobs(cuda, cores=16, mem_available=12 * gib) == 3
    assert build.choose_jobs(cuda, cores=16, mem_available=1 * gib) == 1


def test_configure_command_has_the_fixed_arguments(tmp_path):
    vendor = paths.vendor_dir()  # the command is made without reading the tree: a fresh clone has none
    env = build.build_env(mini_plan(), tmp_path)
    argv = build.configure_command(mini_plan(GGML_NATIVE="ON"), vendor, tmp_path / "b", env)
    assert argv[:1] == ["cmake"] and "-G" in argv and "Ninja" in argv
    assert "-DLLAMA_BUILD_COMMIT=0c1e570" in argv and "-DLLAMA_BUILD_NUMBER=1" in argv
    assert "-DGGML_NATIVE=ON" in argv and "-DCMAKE_BUILD_TYPE=Release" in argv
    if shutil.which("ccache"):
        assert "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache" in argv
    # a plan's own build type wins over the default
    argv = build.configure_command(mini_plan(CMAKE_BUILD_TYPE="Debug"), vendor, tmp_path / "b", env)
    assert "-DCMAKE_BUILD_TYPE=Debug" in argv and "-DCMAKE_BUILD_TYPE=Release" not in argv


GCC_LOG = """\
[12/96] Building CXX object src/CMakeFiles/llama.dir/llama-model.cpp.o
[13/96] Building C object ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o
FAILED: ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o
ccache /usr/bin/cc -DGGML_BUILD -O3 -c /src/ggml/src/ggml.c
/src/ggml/src/ggml.c: In function 'ggml_init':
/src/ggml/src/ggml.c:1520:5: error: unknown type name 'ggml_bogus_t'
 1520 |     ggml_bogus_t x;
      |     ^~~~~~~~~~~~
ninja: build stopped: subcommand failed.
"""


def test_relevant_error_lines():
    text = build.relevant_error_lines(GCC_LOG)
    assert "error: unknown type name 'ggml_bogus_t'" in text
    assert "FAILED: ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o" in text
    assert "[12/96]" not in text
    assert build.classify_failure(GCC_LOG) == "failed"
    assert build.classify_failure("foo: No space left on device") == "no-space"
    assert build.classify_failure("CMake Error: No CMAKE_CUDA_COMPILER could be found.") == "missing-toolchain"


# --------------------------------------------------------------------------- the real llama.cpp


def _vendor() -> Path:
    vendor = ensure_source()
    return vendor


@pytest.mark.slow
def test_llama_cpp_compiler_error_from_a_bad_option(tmp_path):
    # CMAKE_C_FLAGS_RELEASE is not used by cmake's compiler checks, so configure passes and
    # the first real compile fails: a compiler error, as a bad flag in a recipe would give (a flag the
    # plan policy lets through: -include, which names a file, is refused before the build)
    plan = mini_plan(GGML_NATIVE="ON", CMAKE_C_FLAGS_RELEASE="-O3 -mbuilddoctor-no-such-option")
    plan.targets = ["llama-bench"]
    res = build.build(plan, _vendor(), cache_root=tmp_path / "cache")
    assert res.status == "failed"
    assert "builddoctor-no-such-option" in res.error and "error" in res.error
    assert Path(res.log_path).is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name != "failed"]


@pytest.mark.slow
def test_llama_cpp_native_build_and_cache(tmp_path):
    plan = mini_plan(GGML_NATIVE="ON")
    plan.targets = ["llama-bench"]
    cache = REPO / ".cache" / "builder-tests"
    res = build.build(plan, _vendor(), cache_root=cache)
    assert res.status in ("ok", "cached"), res.error
    out = proc.run([res.binaries[0], "--version"], timeout=30)
    assert "0c1e570" in out.output and "build 1" in out.output
    t0 = time.monotonic()
    again = build.build(plan, _vendor(), cache_root=cache)
    assert again.status == "cached" and time.monotonic() - t0 < 5


def test_progress_follows_the_top_level_build_not_a_nested_one(mini, tmp_path, lock):
    """ggml-vulkan's shader generator is an ExternalProject whose [n/2] lines come through ours."""
    events = []
    res = build.build(
        mini_plan(MINI_NESTED="ON"), mini, cache_root=tmp_path / "cache", progress=events.append, lock_path=lock
    )
    assert res.status == "ok", res.error
    log = Path(res.log_path).read_text()
    totals = [int(m.group(2)) for m in map(build._NINJA.match, log.splitlines()) if m]
    assert len(set(totals)) > 1, "the nested build printed its own progress lines"
    shown = [e.total for e in events if e.stage == "compile"]
    assert shown and shown == sorted(shown), "the bar never jumps back to the nested build's count"
    assert shown[-1] == max(totals) and events[-2].done == events[-2].total


def test_omitted_cpu_variants_are_not_kept(tmp_path):
    """A portable plan leaves out the variants a known-bad row names: their libraries leave the build."""
    for name in ("libggml-cpu-sapphirerapids.so", "libggml-cpu-zen4.so", "libggml-cpu-haswell.so", "llama-bench"):
        (tmp_path / name).write_bytes(b"x")
    build._omit_variants(tmp_path, ["sapphirerapids"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "libggml-cpu-haswell.so",
        "libggml-cpu-zen4.so",
        "llama-bench",
    ]
