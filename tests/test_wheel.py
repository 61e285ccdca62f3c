"""The builddoctor wheel: pure-Python with BUILDDOCTOR_BINARY=skip (fast), and with the compiled,
relocatable llama.cpp (slow: one real build, reused through the build-dir cache and ccache).

The slow test builds from this checkout with `pip wheel .` (build folder build/<wheel tag>, the
same one `pip install .` uses), installs the wheel into a fresh venv in another folder, and runs
the bundled tools from there; then it rebuilds with CMAKE_ARGS="-DGGML_NATIVE=OFF" (honoured and
recorded) and once more without (the override does not stick to the build folder).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest

from builddoctor import proc

REPO = Path(__file__).resolve().parent.parent
LOCK_PATH = Path("/tmp/builddoctor-llama-build.lock")
PIN_COMMIT = "0c1e570"
TOOLS = ("llama-server", "llama-cli", "llama-bench", "llama-quantize")


def _env(**extra: str) -> dict[str, str]:
    """pip needs the user's environment (index, proxy, certificates); drop what would leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "CMAKE_ARGS",
            "BUILDDOCTOR_BINARY",
            "BUILDDOCTOR_GOAL",
            "BUILDDOCTOR_BACKEND",
            "BUILDDOCTOR_BUNDLED_DIR",
            "PYTHONPATH",
            "VIRTUAL_ENV",
        )
    }
    env.update(extra)
    return env


def _pip_wheel(out: Path, *args: str, env: dict[str, str], timeout: float) -> tuple[Path, float, str]:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    done = proc.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), *args, str(REPO)],
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    took = time.monotonic() - t0
    assert done.ok, f"pip wheel failed ({done.returncode}, timed out: {done.timed_out}):\n{done.output[-6000:]}"
    wheels = list(out.glob("builddoctor-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], took, done.output


# --------------------------------------------------------------------------- fast


@pytest.mark.parametrize("how", ["env", "config-setting"])
def test_binary_skip_gives_a_pure_python_wheel_quickly(tmp_path, how):
    if how == "env":
        wheel, took, _ = _pip_wheel(tmp_path, env=_env(BUILDDOCTOR_BINARY="skip"), timeout=300)
    else:
        wheel, took, _ = _pip_wheel(tmp_path, "--config-settings=builddoctor.binary=skip", env=_env(), timeout=300)
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert not [n for n in names if "/_llama/" in n]
    assert "builddoctor/recipes/cpu.toml" in names and "builddoctor/bundled.py" in names
    assert "builddoctor-server = builddoctor.bundled:server_main" in entry_points
    # every module ships: an unanchored "build/" exclude once left builddoctor/build/ out of the wheel
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "builddoctor").rglob("*.py")}
    assert sorted(modules - set(names)) == []
    assert took < 120, f"a binary-less wheel took {took:.0f} s"


# --------------------------------------------------------------------------- slow


class _BuildLock:
    def __enter__(self):
        self.fh = open(LOCK_PATH, "a+")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _venv(path: Path) -> Path:
    done = proc.run([sys.executable, "-m", "venv", str(path)], timeout=300)
    assert done.ok, done.output
    return path / "bin"


def _wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {
            n: z.read(n)
            for n in z.namelist()
            if "/_llama/" in n and not n.endswith("/bin/") and (n.endswith((".json", ".txt")))
        }


def _runpath(path: Path) -> list[str]:
    import lief

    binary = lief.parse(str(path))
    out = []
    for entry in binary.dynamic_entries:
        if entry.tag in (lief.ELF.DynamicEntry.TAG.RUNPATH, lief.ELF.DynamicEntry.TAG.RPATH):
            out.extend(entry.paths)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the relocation check reads ELF files")
@pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("c++") is None, reason="needs cmake and a C++ compiler"
)
def test_wheel_with_the_bundled_llama_cpp(tmp_path):
    with _BuildLock():
        wheel, took, log = _pip_wheel(tmp_path / "wheels", env=_env(), timeout=3600)
    print(f"pip wheel (native): {took:.0f} s")
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl") or "-py3-none-" in wheel.name
    assert "builddoctor: plan: goal native" in log, log[-3000:]
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for tool in TOOLS:
        assert f"builddoctor/_llama/bin/{tool}" in names
    assert "builddoctor/_llama/bin/libllama.so" in names and "builddoctor/_llama/plan.json" in names
    assert not [n for n in names if n.startswith(("bin/", "lib/", "include/", "builddoctor/_llama/include"))]

    # A fresh venv in another folder: the binaries run from there (relocatable).
    bindir = _venv(tmp_path / "elsewhere" / "venv")
    done = proc.run([str(bindir / "pip"), "install", "-q", str(wheel)], timeout=900, env=_env())
    assert done.ok, done.output[-4000:]
    venv_env = _env(PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    done = proc.run([str(bindir / "builddoctor"), "which", "--json"], timeout=120, env=venv_env)
    assert done.ok, done.output
    which = json.loads(done.stdout)
    site = Path(which["dir"])
    assert str(tmp_path / "elsewhere") in which["dir"]
    assert sorted(which["binaries"]) == sorted(TOOLS)
    assert which["info"]["llama_commit"] == PIN_COMMIT and which["plan"]["goal"] == "native"
    planned = _planned_native()
    native = {o["name"]: o for o in which["plan"]["options"]}["GGML_NATIVE"]
    assert (native["value"], native["recipe"]) == (planned, "cpu-x86")
    # the compute gate ran a real inference with the bundled llama-bench before it was installed
    gate = json.loads(_wheel_files(wheel)["builddoctor/_llama/compute.json"])
    assert gate["kind"] == "inference" and gate["ok"] is True and gate["tg_tps"] > 0, gate
    done = proc.run([str(bindir / "builddoctor"), "which"], timeout=120, env=venv_env)
    assert done.ok and "llama-server" in done.stdout, done.output
    for argv in (
        [str(bindir / "builddoctor"), "run", "llama-bench", "--version"],
        [str(bindir / "builddoctor-bench"), "--version"],
    ):
        done = proc.run(argv, timeout=120, env=venv_env)
        assert done.ok, done.output
        assert f"commit {PIN_COMMIT}" in done.output, done.output
    for exe in site.iterdir():
        if exe.is_file() and not exe.name.endswith(".json"):
            assert _runpath(exe) in ([], ["$ORIGIN"]), (exe, _runpath(exe))
    # `builddoctor check` finds the bundled build by itself and finds it healthy on the machine it was built on.
    bundled = _check_bundled(bindir, venv_env, site)
    assert [f for f in bundled["findings"] if f["severity"] in ("error", "warning")] == [], bundled["findings"]
    assert bundled["build"]["isa_level"] == _best_level(), bundled["build"]

    # Moved once more, without the venv: still runs (the libraries are found beside it).
    moved = tmp_path / "moved-bin"
    shutil.copytree(site, moved)
    done = proc.run([str(moved / "llama-bench"), "--version"], timeout=60)
    assert done.ok and f"commit {PIN_COMMIT}" in done.output, done.output

    # CMAKE_ARGS overrides the plan, and says so in the installed records. The override is a worse
    # choice than the plan: -march=native turned off where the plan has it; where the plan spells the
    # ISA out (a known-bad row, AMX hosts), AVX-512 turned off.
    key = "GGML_NATIVE" if planned == "ON" else "GGML_AVX512"
    with _BuildLock():
        wheel2, took2, log2 = _pip_wheel(tmp_path / "wheels-off", env=_env(CMAKE_ARGS=f"-D{key}=OFF"), timeout=3600)
        print(f"pip wheel (CMAKE_ARGS=-D{key}=OFF, build dir reused): {took2:.0f} s")
        files = _wheel_files(wheel2)
        plan = json.loads(files["builddoctor/_llama/plan.json"])
        over = {o["name"]: o for o in plan["options"]}[key]
        assert (over["value"], over["recipe"]) == ("OFF", "user")
        info = json.loads(files["builddoctor/_llama/bundle.json"])
        assert [(o["name"], o["value"], o["planned"], o["source"]) for o in info["overrides"]] == [
            (key, "OFF", "ON", "CMAKE_ARGS")
        ]
        cache = files["builddoctor/_llama/CMakeCache.txt"].decode()
        assert f"{key}:UNINITIALIZED=OFF" in cache or f"{key}:BOOL=OFF" in cache, cache[:2000]
        assert "GGML_AVX2:BOOL=ON" in cache  # the CPU options of this build, not the first build's leftovers
        assert f"override: {key}=OFF set by CMAKE_ARGS (the plan had ON)" in log2
        # ...and the tool catches its own suboptimal install.
        done = proc.run(
            [str(bindir / "pip"), "install", "-q", "--force-reinstall", "--no-deps", str(wheel2)],
            timeout=900,
            env=_env(),
        )
        assert done.ok, done.output[-4000:]
        off = _check_bundled(bindir, venv_env, site)
        (warn,) = [f for f in off["findings"] if f["code"] == "BD161"]
        assert f"{key}=OFF" in warn["title"] and warn["severity"] == "warning"

        # Without CMAKE_ARGS again: back to the plan (the override did not stay in the build folder).
        wheel3, took3, log3 = _pip_wheel(tmp_path / "wheels-again", env=_env(), timeout=3600)
        print(f"pip wheel (native again, build dir + ccache): {took3:.0f} s")
        # And once more with the same plan: the build folder is up to date, nothing is compiled.
        _wheel4, took4, log4 = _pip_wheel(tmp_path / "wheels-same", env=_env(), timeout=3600)
        print(f"pip wheel (same plan, build dir reused): {took4:.0f} s")
    files = _wheel_files(wheel3)
    native = {o["name"]: o for o in json.loads(files["builddoctor/_llama/plan.json"])["options"]}["GGML_NATIVE"]
    assert (native["value"], native["recipe"]) == (planned, "cpu-x86")
    assert json.loads(files["builddoctor/_llama/bundle.json"])["overrides"] == []
    assert _compiles(log2) > 0  # the override changed the CPU backend's flags
    assert _compiles(log3) > 0  # switching back rebuilt the CPU backend with the plan's flags (ccache serves it)
    assert _compiles(log4) == 0, log4[-3000:]


def _planned_native() -> str:
    """GGML_NATIVE in builddoctor's plan for this host: OFF where a known-bad row spells the ISA out."""
    from builddoctor.probe import machine_profile
    from builddoctor.resolve import resolve

    return next(o.value for o in resolve(machine_profile()).options if o.name == "GGML_NATIVE")


def _check_bundled(bindir: Path, env: dict, site: Path) -> dict:
    """The report `builddoctor check` (no argument) gives for the bundled build in ``site``."""
    done = proc.run([str(bindir / "builddoctor"), "check", "--json"], timeout=300, env=env)
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.output[-4000:]
    reports = [r for r in json.loads(done.stdout)["builds"] if r["build"]["root"].startswith(str(site.parent))]
    assert len(reports) == 1, [r["build"]["root"] for r in json.loads(done.stdout)["builds"]]
    return reports[0]


def _best_level() -> str:
    from builddoctor.probe import machine_profile

    features = machine_profile().cpu.features
    return "avx512" if "AVX512" in features else "avx2" if "AVX2" in features else "avx" if "AVX" in features else "sse"


def _compiles(log: str) -> int:
    return sum(1 for line in log.splitlines() if "] Building C" in line)
