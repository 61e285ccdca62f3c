"""Real llama.cpp builds for the tests, built once from vendor/llama.cpp and reused.

``ensure_build(name)`` returns the ``bin`` folder of a finished build under
``<repo>/.cache/test-builds/<name>`` (git-ignored). A build is reused when it finished
before with the same cmake arguments; otherwise it is configured and built (llama-bench
and the shared libraries it loads) under an exclusive lock on
``/tmp/builddoctor-llama-build.lock``, with ccache, so that parallel test sessions and
other compiles on this 2-core machine do not fight.

Builds:
- ``native``: Release, GGML_NATIVE=ON (the best ISA of the CPU that runs the tests).
- ``sse``: Release, GGML_NATIVE=OFF with AVX, AVX2, FMA, F16C, BMI2 off (AVX-512 and
  AMX default to OFF when GGML_NATIVE is OFF, so SSE 4.2 is the highest level left).
- ``debug``: CMAKE_BUILD_TYPE=Debug (native ISA, -O0 -g).
- ``planned``: Release with the CPU options of builddoctor's own plan for this host: on most CPUs
  the same as ``native``; where a known-bad row applies (the pinned llama.cpp's AMX kernels on an
  AMX CPU) the ISA spelled out without it. The build for tests that need one that computes.

``native`` stays plain ``GGML_NATIVE=ON`` on every host: on an AMX host it is the real crashing
build that the compute probe must catch.

Run ``python -m tests.llama_builds [name...]`` to build them ahead of a test session.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILDS_DIR = REPO / ".cache" / "test-builds"
LOCK_PATH = Path("/tmp/builddoctor-llama-build.lock")
TARGETS = ["llama-bench"]
MARKER = "builddoctor-test-build.json"
BUILD_TIMEOUT = 3 * 3600  # cold builds on a busy 2-core machine take a while

COMMON_ARGS = [
    "-G",
    "Ninja",
    "-DCMAKE_C_COMPILER_LAUNCHER=ccache",
    "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
    "-DLLAMA_BUILD_COMMIT=0c1e570",
    "-DLLAMA_BUILD_NUMBER=1",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
]

BUILDS: dict[str, list[str]] = {
    "native": ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON"],
    "sse": [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_NATIVE=OFF",
        "-DGGML_AVX=OFF",
        "-DGGML_AVX2=OFF",
        "-DGGML_FMA=OFF",
        "-DGGML_F16C=OFF",
        "-DGGML_BMI2=OFF",
        "-DGGML_AVX512=OFF",
        "-DGGML_AVX_VNNI=OFF",
    ],
    "debug": ["-DCMAKE_BUILD_TYPE=Debug", "-DGGML_NATIVE=ON"],
    # AVX-512 forced on: built only on CPUs without it (it must die there with SIGILL)
    "avx512": [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_NATIVE=OFF",
        "-DGGML_AVX=ON",
        "-DGGML_AVX2=ON",
        "-DGGML_FMA=ON",
        "-DGGML_F16C=ON",
        "-DGGML_BMI2=ON",
        "-DGGML_AVX512=ON",
    ],
}


_PLANNED: list[str] | None = None


def planned_args() -> list[str]:
    """The CPU options of builddoctor's plan for this machine (GGML_NATIVE and the ISA options)."""
    global _PLANNED
    if _PLANNED is None:
        from builddoctor.llama_options import isa_table
        from builddoctor.probe import machine_profile
        from builddoctor.resolve import resolve

        cpu = {"GGML_NATIVE", *isa_table()}
        plan = resolve(machine_profile())
        _PLANNED = ["-DCMAKE_BUILD_TYPE=Release"] + [f"-D{o.name}={o.value}" for o in plan.options if o.name in cpu]
    return _PLANNED


def build_args(name: str) -> list[str]:
    return planned_args() if name == "planned" else BUILDS[name]


class BuildUnavailable(RuntimeError):
    """This machine lacks the tools to build at all (cmake, ninja, a C++ compiler): tests skip."""


class BuildFailed(RuntimeError):
    """The source could not be fetched or the build failed: a test error, never a skip."""


def build_dir(name: str) -> Path:
    return BUILDS_DIR / name


def _source_dir() -> Path:
    from builddoctor.paths import vendor_dir

    src = vendor_dir()
    if (src / "CMakeLists.txt").is_file():
        return src
    try:
        from builddoctor import source  # written by the lead
    except ImportError:
        raise BuildFailed(
            f"the pinned llama.cpp source is not at {src} and builddoctor.source is not available to fetch it"
        ) from None
    try:
        got = source.ensure_source()
    except Exception as exc:  # noqa: BLE001 - reported as the test error it is
        raise BuildFailed(f"could not fetch the pinned llama.cpp source: {exc}") from exc
    got = Path(got) if got else src
    if not (got / "CMakeLists.txt").is_file():
        raise BuildFailed(f"the pinned llama.cpp source is not at {got}")
    return got


def _args(name: str, src: Path, out: Path) -> list[str]:
    return ["cmake", "-S", str(src), "-B", str(out), *COMMON_ARGS, *build_args(name)]


def is_complete(name: str) -> bool:
    out = build_dir(name)
    marker = out / MARKER
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    want = build_args(name) + COMMON_ARGS + TARGETS
    return saved.get("args") == want and (out / "bin" / "llama-bench").is_file()


def ensure_build(name: str) -> Path:
    """The bin folder of test build ``name``, building it first when needed."""
    if name not in BUILDS and name != "planned":
        raise KeyError(f"unknown test build {name!r}; known: {', '.join(BUILDS)}, planned")
    out = build_dir(name)
    if is_complete(name):
        return out / "bin"
    missing = [tool for tool in ("cmake", "ninja", "c++") if shutil.which(tool) is None]
    if missing:
        raise BuildUnavailable(f"cannot build llama.cpp here: {', '.join(missing)} not installed")
    from builddoctor import proc

    src = _source_dir()
    BUILDS_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_complete(name):  # built by someone else while we waited
                return out / "bin"
            (out / MARKER).unlink(missing_ok=True)
            log = out.parent / f"{name}.log"
            env = proc.clean_env({"CCACHE_DIR": os.environ.get("CCACHE_DIR", str(Path.home() / ".cache" / "ccache"))})
            t0 = time.monotonic()
            steps = [
                _args(name, src, out),
                ["cmake", "--build", str(out), "--target", *TARGETS, "-j", str(os.cpu_count() or 2)],
            ]
            with open(log, "w") as fh:
                for argv in steps:
                    res = proc.run(argv, timeout=BUILD_TIMEOUT, env=env)
                    fh.write(f"$ {' '.join(argv)}\n{res.stdout}\n{res.stderr}\n")
                    if not res.ok:
                        raise BuildFailed(
                            f"building test build {name!r} failed ({res.error or res.signal or res.returncode}"
                            f"{', timed out' if res.timed_out else ''}); see {log}"
                        )
            (out / MARKER).write_text(
                json.dumps(
                    {
                        "args": build_args(name) + COMMON_ARGS + TARGETS,
                        "seconds": round(time.monotonic() - t0, 1),
                    },
                    indent=1,
                )
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out / "bin"


def main(argv: list[str]) -> int:
    names = argv or ["native", "sse", "debug", "planned"]
    for name in names:
        t0 = time.monotonic()
        print(f"{name}: {ensure_build(name)} ({time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
