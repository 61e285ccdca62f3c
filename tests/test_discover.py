"""Discovery finds what people have: package layouts (a wheel root, an npm package, node_modules,
a venv), auditwheel-renamed libraries, extension modules that carry llama.cpp, with bounded
recursion; and says where it looked when it finds nothing.

The layouts are built from the real test build (tests/llama_builds.py, the ``native`` one):
its files copied under the names a package gives them, RUNPATH set to ``$ORIGIN`` (with LIEF)
so that the copies load each other and not the build tree. The auditwheel case runs the real
``auditwheel repair`` on a wheel made here from a C extension linked against that build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from builddoctor import errors
from builddoctor.inspect import discover, inspect_paths
from builddoctor.inspect.binary import analyze
from tests import elf_fixtures as fx

REPO = Path(__file__).resolve().parents[1]
# the files of the test build, by the name the others load them as (NEEDED)
LIBS = [
    "libggml-base.so.0",
    "libggml-cpu.so.0",
    "libggml.so.0",
    "libllama.so.0",
    "libllama-common.so.0",
    "libllama-bench-impl.so",
]


def _set_runpath(
    path: Path, runpath: str | None, *, needed: dict[str, str] | None = None, soname: str | None = None
) -> None:
    """Rewrite an ELF file's RUNPATH (None: remove it), NEEDED names and SONAME, as patchelf would."""
    import lief

    lief.logging.disable()
    b = lief.ELF.parse(str(path))
    tags = lief.ELF.DynamicEntry.TAG
    if runpath is None:
        b.remove(tags.RUNPATH)
    else:
        for e in b.dynamic_entries:
            if e.tag == tags.RUNPATH:
                e.runpath = runpath
    for old, new in (needed or {}).items():
        b.get_library(old).name = new
    if soname is not None:
        for e in b.dynamic_entries:
            if e.tag == tags.SONAME:
                e.name = soname
    b.write(str(path))


@pytest.fixture(scope="session")
def packaged(native_build, tmp_path_factory) -> Path:
    """<root>/lib: the build's libraries (RUNPATH $ORIGIN); <root>/bin/llama-bench ($ORIGIN/../lib)."""
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    root = tmp_path_factory.mktemp("packaged")
    (root / "lib").mkdir()
    (root / "bin").mkdir()
    for name in LIBS:
        shutil.copy(native_build / name, root / "lib" / name)
        _set_runpath(root / "lib" / name, "$ORIGIN")
    shutil.copy(native_build / "llama-bench", root / "bin" / "llama-bench")
    _set_runpath(root / "bin" / "llama-bench", "$ORIGIN/../lib")
    return root


def _place(packaged: Path, dest: Path, *, bin_too: bool = True) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(packaged / "lib", dest / "lib")
    if bin_too:
        shutil.copytree(packaged / "bin", dest / "bin")
    return dest


def _compile_so(out: Path, source: str, *, libdir: Path | None = None, rpath: str | None = None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    c = out.parent / (out.name.split(".")[0] + "-src.c")
    c.write_text(source)
    argv = [fx.GCC, "-shared", "-fPIC", "-O1", "-o", str(out), str(c)]
    if libdir is not None:
        argv += [f"-L{libdir}", "-l:libllama.so.0", "-l:libggml-base.so.0"]
    if rpath is not None:
        argv.append(f"-Wl,-rpath,{rpath}")
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    c.unlink()
    return out


# an extension module that calls into llama.cpp (its symbols undefined, from libllama)
EXT_IMPORTS = """
#include <string.h>
void llama_backend_init(void);
long long ggml_time_us(void);
int ext_entry(const char *s) { llama_backend_init(); return (int)ggml_time_us() + (int)strlen(s); }
"""
# one that carries llama.cpp inside (statically linked: the symbols defined here)
EXT_CARRIES = """
void *ggml_init(void *params) { return params; }
void llama_backend_init(void) {}
"""
EXT_OTHER = """
int plain_init(void) { return 1; }
"""


def _ours(builds, root: Path):
    root = root.resolve()
    return [b for b in builds if Path(b.root) == root or root in Path(b.root).parents]


def _names(build) -> set[str]:
    return {Path(f.path).name for f in build.files}


def check(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", "check", "--no-run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env=full,
    )


def _isolated_env(tmp_path: Path) -> dict:
    """No-argument discovery that sees only what the test puts there (and the system's own places)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "VIRTUAL_ENV": "", "CONDA_PREFIX": "", "PYTHONNOUSERSITE": "1"}


# --------------------------------------------------------------------------- package layouts


def test_wheel_root_found(packaged, tmp_path):
    """An unpacked wheel: <pkg>/lib/ libraries and <pkg>/bin/ programs, one build, rooted at <pkg>."""
    wheel = tmp_path / "wheelroot"
    pkg = _place(packaged, wheel / "somepkg")
    (wheel / "somepkg-1.0.dist-info").mkdir()
    (wheel / "somepkg-1.0.dist-info" / "METADATA").write_text("Name: somepkg\nVersion: 1.0\n")
    builds, messages = inspect_paths([wheel], run=False)
    assert len(builds) == 1, ([b.root for b in builds], messages)
    (b,) = builds
    assert Path(b.root) == pkg.resolve()
    assert b.origin == "pip:somepkg" and b.name == "somepkg (pip package)"  # beside its .dist-info
    assert {"llama-bench", "libllama.so.0", "libggml-cpu.so.0"} <= _names(b)
    assert b.is_llama_cpp and b.backends == ["CPU"] and b.cpu_variants == []
    assert b.isa_level


def test_npm_package_node_modules_and_bins_folder(packaged, tmp_path):
    """node-llama-cpp's layout: node_modules/@scope/<pkg>/bins/<platform>/ with a .node addon
    (found by its imports, not its name) and the libraries beside it; found from the package
    root, from node_modules, from the bins/ folder and, with no argument, from the project."""
    project = tmp_path / "app"
    pkg = project / "node_modules" / "@acme" / "llama-linux-x64"
    bins = pkg / "bins" / "linux-x64"
    bins.mkdir(parents=True)
    for f in (packaged / "lib").iterdir():
        shutil.copy(f, bins / f.name)
    addon = _compile_so(bins / "llama-addon.node", EXT_IMPORTS, libdir=bins, rpath="$ORIGIN")
    (pkg / "package.json").write_text(json.dumps({"name": "@acme/llama-linux-x64", "version": "1.0.0"}))
    (project / "package.json").write_text(json.dumps({"name": "app", "dependencies": {}}))
    (project / "src").mkdir()
    for where in (pkg, project / "node_modules", pkg / "bins", bins):
        builds, messages = inspect_paths([where], run=False)
        assert len(builds) == 1, (where, [b.root for b in builds], messages)
        assert Path(builds[0].root) == bins.resolve()
        assert {"llama-addon.node", "libllama.so.0"} <= _names(builds[0])
        assert builds[0].origin == "npm:@acme/llama-linux-x64"
        assert builds[0].name == "@acme/llama-linux-x64 (npm package)"
    assert analyze(addon).is_llama
    # no argument, from a sub-folder of the project: its parents' node_modules are searched
    done = check("--json", cwd=project / "src", env=_isolated_env(tmp_path))
    assert done.returncode in (0, 1), done.stderr
    roots = [Path(r["build"]["root"]) for r in json.loads(done.stdout)["builds"]]
    assert bins.resolve() in roots, roots


def test_venv_site_packages_found_with_virtual_env(packaged, tmp_path):
    """A real venv with a package carrying llama.cpp in its site-packages: found with no
    argument when it is the active environment (VIRTUAL_ENV), not otherwise."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site,) = venv.glob("lib/python3*/site-packages")
    pkg = _place(packaged, site / "llamapkg", bin_too=False)
    work = tmp_path / "work"
    work.mkdir()
    env = _isolated_env(tmp_path)
    without = check("--json", cwd=work, env=env)
    assert "Traceback" not in without.stderr
    roots_without = (
        []
        if without.returncode == errors.NOT_FOUND
        else [Path(r["build"]["root"]) for r in json.loads(without.stdout)["builds"]]
    )
    assert (pkg / "lib").resolve() not in roots_without
    done = check("--json", cwd=work, env={**env, "VIRTUAL_ENV": str(venv)})
    assert done.returncode in (0, 1), done.stderr
    mine = [
        r["build"] for r in json.loads(done.stdout)["builds"] if Path(r["build"]["root"]) == (pkg / "lib").resolve()
    ]
    assert len(mine) == 1 and mine[0]["origin"] == "pip:llamapkg" and mine[0]["backends"] == ["CPU"]
    assert mine[0]["name"] == "llamapkg (pip package)"


def test_bin_and_lib_one_build_without_needed_resolution(packaged, tmp_path):
    """prefix/bin + prefix/lib are one build even when NEEDED does not link them (a program
    that relies on LD_LIBRARY_PATH here, as Mach-O/PE files never resolve on Linux)."""
    prefix = _place(packaged, tmp_path / "prefix")
    _set_runpath(prefix / "bin" / "llama-bench", None)
    builds, messages = inspect_paths([prefix], run=False)
    assert len(builds) == 1, ([b.root for b in builds], messages)
    assert Path(builds[0].root) == prefix.resolve()
    assert {"llama-bench", "libggml-cpu.so.0"} <= _names(builds[0])


# --------------------------------------------------------------------------- renamed libraries


@pytest.fixture(scope="session")
def repaired_wheel(packaged, tmp_path_factory) -> Path:
    """The real auditwheel: a wheel with a C extension linked against the test build,
    repaired (libraries copied into <dist>.libs as lib<name>-<8 hex>.so.N), then unpacked."""
    auditwheel = Path(sys.executable).parent / "auditwheel"
    if not auditwheel.is_file():
        pytest.skip("auditwheel is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("auditwheel")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    ext_name = f"_llamaext.cpython-{sys.version_info.major}{sys.version_info.minor}-x86_64-linux-gnu.so"
    ext = _compile_so(
        root / "src" / "llamaext" / ext_name, EXT_IMPORTS, libdir=packaged / "lib", rpath=str(packaged / "lib")
    )
    whl = root / f"llamaext-0.1-{tag}-{tag}-linux_x86_64.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("llamaext/__init__.py", "")
        z.write(ext, f"llamaext/{ext_name}")
        z.writestr("llamaext-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: llamaext\nVersion: 0.1\n")
        z.writestr(
            "llamaext-0.1.dist-info/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}-{tag}-linux_x86_64\n",
        )
        z.writestr(
            "llamaext-0.1.dist-info/RECORD",  # auditwheel reads the file list from it
            "".join(
                f"{n},,\n"
                for n in (
                    "llamaext/__init__.py",
                    f"llamaext/{ext_name}",
                    "llamaext-0.1.dist-info/METADATA",
                    "llamaext-0.1.dist-info/WHEEL",
                    "llamaext-0.1.dist-info/RECORD",
                )
            ),
        )
    env = {**os.environ, "PATH": f"{auditwheel.parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(auditwheel), "repair", "-w", str(root / "out"), str(whl)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (fixed,) = (root / "out").glob("*.whl")
    unpacked = root / "unpacked"
    with zipfile.ZipFile(fixed) as z:
        z.extractall(unpacked)
    for p in unpacked.rglob("*.so*"):
        p.chmod(0o755)
    return unpacked


def test_auditwheel_repaired_wheel(repaired_wheel):
    libs = sorted(p.name for p in (repaired_wheel / "llamaext.libs").iterdir())
    assert any(n.startswith("libggml-cpu-") for n in libs), libs  # the real renaming happened
    builds, messages = inspect_paths([repaired_wheel], run=False)
    assert len(builds) == 1, ([b.root for b in builds], messages)
    (b,) = builds
    names = _names(b)
    assert any(n.startswith("_llamaext.") for n in names), names  # the extension, found by content
    assert any(n.startswith("libllama-") for n in names) and any(n.startswith("libggml-cpu-") for n in names)
    assert b.backends == ["CPU"] and b.cpu_variants == [], b.cpu_variants  # no variant named after a hash
    assert b.isa_level and b.is_llama_cpp
    assert b.origin == "pip:llamaext"  # llamaext/ and llamaext.libs/: one package
    cpu = [f for f in b.files if Path(f.path).name.startswith("libggml-cpu-")]
    assert cpu[0].role == "backend" and cpu[0].backends == ["CPU"]
    assert not any(f.missing_needed for f in b.files)


def test_hash_suffixes_stripped_from_variant_names(native_build, tmp_path):
    """An all-variants build renamed by auditwheel: the variants keep their names."""
    d = tmp_path / "pkg.libs"
    d.mkdir()
    shutil.copy(native_build / "libggml-cpu.so.0", d / "libggml-cpu-haswell-0a1b2c3d.so")
    shutil.copy(native_build / "libggml-cpu.so.0", d / "libggml-cpu-sse42-89abcdef.so")
    shutil.copy(native_build / "libggml-base.so.0", d / "libggml-base-12345678.so.0")
    builds, _ = inspect_paths([d], run=False)
    assert len(builds) == 1
    assert builds[0].cpu_variants == ["haswell", "sse42"]
    assert discover.canonical_name("libllama-1a2b3c4d.so.0.0.1") == "libllama.so.0.0.1"
    assert discover.canonical_name("ggml-cpu-haswell-0123456789abcdef0123456789abcdef.dll") == "ggml-cpu-haswell.dll"
    assert discover.canonical_name("libggml-cpu-haswell.so") == "libggml-cpu-haswell.so"


def test_loose_wheel_files_and_their_libs_folder_one_build(packaged, tmp_path):
    """pywhispercpp's layout: a wheel that puts its libraries loose in site-packages (RUNPATH
    $ORIGIN/<dist>.libs) and auditwheel's renamed copies in <dist>.libs/ below is one build;
    another wheel's loose module in the same folder is another (each wheel's RECORD says which)."""
    site = tmp_path / "site-packages"
    libs = site / "whisperish.libs"
    libs.mkdir(parents=True)
    names = ["libggml-base.so.0", "libggml-cpu.so.0", "libggml.so.0"]
    hashed = {n: n.replace(".so", f"-{i}a1b2c3d.so") for i, n in enumerate(names)}
    for n in names:
        needed = {x: hashed[x] for x in analyze(packaged / "lib" / n).file.needed if x in hashed}
        shutil.copy(packaged / "lib" / n, libs / hashed[n])
        _set_runpath(libs / hashed[n], "$ORIGIN", needed=needed, soname=hashed[n])
        shutil.copy(packaged / "lib" / n, site / n)
        _set_runpath(site / n, "$ORIGIN/whisperish.libs", needed=needed)
    carrier = _compile_so(site / "_other.abi3.so", EXT_CARRIES)
    for dist, files in (
        ("whisperish-1.0", names + [f"whisperish.libs/{hashed[n]}" for n in names]),
        ("other_pkg-2.0", ["_other.abi3.so"]),
    ):
        (site / f"{dist}.dist-info").mkdir()
        (site / f"{dist}.dist-info" / "RECORD").write_text("".join(f"{f},sha256=x,1\n" for f in files))
    builds, messages = inspect_paths([site], run=False)
    by_origin = {b.origin: b for b in builds}
    assert sorted(by_origin) == ["pip:other_pkg", "pip:whisperish"], (
        [(b.origin, sorted(_names(b))) for b in builds],
        messages,
    )
    assert _names(by_origin["pip:whisperish"]) == set(names) | set(hashed.values())
    assert Path(by_origin["pip:whisperish"].root) == site.resolve()
    assert _names(by_origin["pip:other_pkg"]) == {carrier.name}
    assert not any(f.missing_needed for f in by_origin["pip:whisperish"].files)


# --------------------------------------------------------------------------- extension modules


def test_extension_module_carrying_llama_found_by_content(tmp_path):
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    pkg = tmp_path / "site" / "carrier"
    carrier = _compile_so(pkg / "_carrier.abi3.so", EXT_CARRIES)
    _compile_so(pkg / "_plain.cpython-311-x86_64-linux-gnu.so", EXT_OTHER)
    builds, messages = inspect_paths([tmp_path / "site"], run=False)
    assert len(builds) == 1, messages
    assert [f.path for f in builds[0].files] == [str(carrier.resolve())]
    assert builds[0].is_llama_cpp
    # a folder of extension modules without llama.cpp: nothing, said with where it looked
    other = tmp_path / "other"
    _compile_so(other / "_plain.abi3.so", EXT_OTHER)
    builds, messages = inspect_paths([other], run=False)
    assert builds == []
    assert any(m.startswith(discover.NOTHING_FOUND) and str(other) in m for m in messages), messages


# --------------------------------------------------------------------------- nothing found


def test_nothing_found_exit_code_and_where_it_looked(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub" / "deeper").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    done = check(empty)
    assert done.returncode == errors.NOT_FOUND == 12, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert f"looked in {empty}" in done.stderr and "3 folders" in done.stderr
    # no argument, in an empty place: the same code, and the places it searched are named
    done = check(cwd=empty, env={**_isolated_env(tmp_path), "VIRTUAL_ENV": str(empty)})
    assert "Traceback" not in done.stderr
    if done.returncode != errors.NOT_FOUND:
        pytest.skip(f"this machine has llama.cpp builds in its default places: {done.stdout[:300]}")
    assert "no llama.cpp build found; looked in PATH" in done.stderr and "site-packages" in done.stderr


# --------------------------------------------------------------------------- bounds


def test_bounded_depth(packaged, tmp_path):
    depth = discover._data()["search"]["max_depth"]
    shallow = _place(packaged, tmp_path / "a" / "b", bin_too=False)  # lib/ at depth 3
    deep = tmp_path / "x"
    for i in range(depth + 1):
        deep = deep / f"d{i}"
    _place(packaged, deep, bin_too=False)  # lib/ below max_depth
    builds, _ = inspect_paths([tmp_path], run=False)
    assert [Path(b.root) for b in builds] == [(shallow / "lib").resolve()]


def test_symlink_loop_and_proc_not_crossed(packaged, tmp_path):
    pkg = _place(packaged, tmp_path / "pkg", bin_too=False)
    (pkg / "lib" / "again").symlink_to(pkg)  # a loop back to the package
    (pkg / "proc").symlink_to("/proc")
    (pkg / "sys").symlink_to("/sys")
    search = discover.Search.start()
    t0 = time.monotonic()
    found = discover.expand(tmp_path, [], search)
    assert time.monotonic() - t0 < 10
    assert not any(v == "/proc" or v.startswith(("/proc/", "/sys")) for v in search.visited)
    assert {"/proc (kernel file system)", "/sys (kernel file system)"} <= set(search.not_entered)
    assert len({c.path for c in found}) == len(LIBS)
    builds, msgs = inspect_paths([tmp_path], run=False)
    assert len(builds) == 1 and len(builds[0].files) == len(LIBS)
    builds, msgs = inspect_paths(["/proc"], run=False)
    assert builds == [] and "kernel or network file system" in msgs[0]


def test_bounded_entries_and_time(packaged, tmp_path, monkeypatch):
    many = tmp_path / "many"
    for i in range(50):
        (many / f"f{i:02d}").mkdir(parents=True)
        for j in range(20):
            (many / f"f{i:02d}" / f"x{j}.txt").write_bytes(b"")
    _place(packaged, many / "zz", bin_too=False)
    conf = discover._data()["search"]
    monkeypatch.setitem(conf, "max_entries", 300)
    builds, msgs = inspect_paths([many], run=False)
    assert builds == [] and any("stopped after 300 entries" in m for m in msgs), msgs
    # each folder given has its own budget: a huge first one does not hide the next
    other = _place(packaged, tmp_path / "other", bin_too=False)
    builds, msgs = inspect_paths([many, other], run=False)
    assert [Path(b.root) for b in builds] == [(other / "lib").resolve()], msgs
    monkeypatch.setitem(conf, "max_entries", 200000)
    monkeypatch.setitem(conf, "max_seconds", 0.0)
    t0 = time.monotonic()
    builds, msgs = inspect_paths([many], run=False)
    assert time.monotonic() - t0 < 5 and builds == []
    assert any("stopped after 0 s" in m for m in msgs), msgs
    monkeypatch.setitem(conf, "max_seconds", 15.0)
    builds, _ = inspect_paths([many], run=False)
    assert len(builds) == 1
    # files taken are bounded too (each is read in full afterwards)
    _place(packaged, many / "zz2", bin_too=False)
    monkeypatch.setitem(conf, "max_found", 3)
    search = discover.Search.start()
    msgs: list[str] = []
    found = discover.expand(many, msgs, search)
    assert {c.path.parent.parent.name for c in found} == {"zz"} and len(found) == len(LIBS)  # one folder, whole
    assert any("stopped after finding 3 llama.cpp files" in m for m in msgs), msgs


# --------------------------------------------------------------------------- other platforms' layouts

MINGW = shutil.which("x86_64-w64-mingw32-gcc")
AARCH64 = shutil.which("aarch64-linux-gnu-gcc")


def _cross(cc: str, out: Path, source: str, *args: str, shared: bool = True) -> Path:
    c = out.parent / (out.name.replace(".", "_") + ".c")
    c.write_text(source)
    argv = [
        cc,
        *(["-shared"] if shared else []),
        *([] if cc == MINGW else ["-fPIC"]),
        "-O1",
        "-o",
        str(out),
        str(c),
        *args,
    ]
    subprocess.run(argv, check=True, capture_output=True, timeout=120, cwd=out.parent)
    c.unlink()
    return out


@pytest.mark.skipif(MINGW is None, reason="mingw-w64 is not installed")
def test_windows_npm_package(tmp_path):
    """A Windows npm package (PE files, made with mingw-w64): ggml-cpu-<variant>.dll, llama.dll,
    llama-cli.exe and a .node addon found by its imports; one build with its variants named."""
    bins = tmp_path / "node_modules" / "@acme" / "llama-win-x64" / "bins" / "win-x64"
    bins.mkdir(parents=True)
    _cross(MINGW, bins / "ggml-base.dll", "void *ggml_init(void *p) { return p; }\n")
    _cross(
        MINGW,
        bins / "ggml.dll",
        "void *ggml_init(void *p);\nvoid *ggml_backend_load_best(const char *n) { return ggml_init((void *)n); }\n",
        "ggml-base.dll",
    )
    for variant in ("haswell", "sandybridge"):
        _cross(MINGW, bins / f"ggml-cpu-{variant}.dll", "void *ggml_backend_cpu_reg(void) { return 0; }\n")
    _cross(
        MINGW,
        bins / "llama.dll",
        "void *ggml_backend_load_best(const char *n);\n"
        'void llama_backend_init(void) { ggml_backend_load_best("cpu"); }\n',
        "ggml.dll",
    )
    _cross(
        MINGW,
        bins / "llama-cli.exe",
        "void llama_backend_init(void);\nint main(void) { llama_backend_init(); return 0; }\n",
        "llama.dll",
        shared=False,
    )
    _cross(
        MINGW,
        bins / "llama-addon.node",
        "void llama_backend_init(void);\nint napi_register(void) { llama_backend_init(); return 0; }\n",
        "llama.dll",
    )
    builds, messages = inspect_paths([tmp_path / "node_modules"], run=False)
    assert len(builds) == 1, ([b.root for b in builds], messages)
    (b,) = builds
    assert _names(b) == {
        "ggml-base.dll",
        "ggml.dll",
        "ggml-cpu-haswell.dll",
        "ggml-cpu-sandybridge.dll",
        "llama.dll",
        "llama-cli.exe",
        "llama-addon.node",
    }
    assert b.cpu_variants == ["haswell", "sandybridge"] and "CPU" in b.backends
    assert b.origin == "npm:@acme/llama-win-x64"
    assert {f.format for f in b.files} == {"PE"}


@pytest.mark.skipif(AARCH64 is None, reason="the aarch64 cross compiler is not installed")
def test_aarch64_package_one_build(tmp_path):
    """Another CPU's ELF files are not resolved here: bin/, lib/ and the extension module in the
    package folder are still one build, and the module is found by its symbols."""
    pkg = tmp_path / "wheel" / "armpkg"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "bin").mkdir()
    _cross(AARCH64, pkg / "lib" / "libggml-cpu.so", "void *ggml_backend_cpu_reg(void) { return 0; }\n")
    _cross(AARCH64, pkg / "lib" / "libllama.so", "void llama_backend_init(void) {}\n")
    _cross(
        AARCH64,
        pkg / "bin" / "llama-cli",
        "void llama_backend_init(void);\nint main(void) { llama_backend_init(); return 0; }\n",
        f"-L{pkg / 'lib'}",
        "-lllama",
        "-Wl,-rpath,$ORIGIN/../lib",
        shared=False,
    )
    _cross(
        AARCH64,
        pkg / "_armpkg.cpython-311-aarch64-linux-gnu.so",
        "void llama_backend_init(void);\nint entry(void) { llama_backend_init(); return 0; }\n",
        f"-L{pkg / 'lib'}",
        "-lllama",
        "-Wl,-rpath,$ORIGIN/lib",
    )
    builds, messages = inspect_paths([tmp_path / "wheel"], run=False)
    assert len(builds) == 1, ([(b.root, _names(b)) for b in builds], messages)
    assert _names(builds[0]) == {
        "libggml-cpu.so",
        "libllama.so",
        "llama-cli",
        "_armpkg.cpython-311-aarch64-linux-gnu.so",
    }
    assert {f.arch for f in builds[0].files} == {"aarch64"}
