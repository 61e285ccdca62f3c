"""Build tools and their versions (data/toolchains.toml): cmake, ninja, compilers, ccache, nvcc...

Each version query is a short, time-limited child (builddoctor.proc.run); they run at once in
threads. A missing or broken tool is a ``ToolInfo(found=False)`` with the reason in ``detail``.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

from builddoctor import proc
from builddoctor.probe import _data
from builddoctor.profiles import ToolInfo

TIMEOUT = 3.0


def specs(system: str) -> dict[str, dict[str, Any]]:
    table = _data.load("toolchains")
    return {name: spec for name, spec in table.items() if name != "kinds" and system in spec.get("os", [system])}


def _version_key(path: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", path)]


def locate(spec: dict[str, Any]) -> str | None:
    if "files" in spec:
        return _first_file(spec["files"])
    for name in spec["names"]:
        found = shutil.which(name)
        if found:
            return found
    for pattern in spec.get("dirs", []):
        for d in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            for name in spec["names"]:
                cand = os.path.join(d, name)
                if os.path.isfile(cand) and os.access(cand, os.X_OK):
                    return cand
    return None


def _first_file(patterns: list[str]) -> str | None:
    for pattern in patterns:
        pattern = os.path.expandvars(os.path.expanduser(pattern))
        for cand in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            if os.path.isfile(cand):
                return cand
    return None


def file_fact(name: str, spec: dict[str, Any], path: str) -> ToolInfo:
    """A header, library or CMake package found on disk; its version read from the file's text
    (``content_regex``, groups joined in ``groups`` order) or from its resolved name (``name_regex``)."""
    version = None
    if "content_regex" in spec:
        try:
            with open(path, "rb") as f:
                text = f.read(1 << 20).decode("utf-8", errors="replace")
        except OSError as exc:
            return ToolInfo(name=name, found=False, path=path, detail=f"unreadable: {exc.strerror}")
        m = re.search(spec["content_regex"], text, re.S | re.M)
        if m:
            version = ".".join(m.group(i) for i in spec.get("groups", [1]))
    elif "name_regex" in spec:
        m = re.search(spec["name_regex"], os.path.basename(os.path.realpath(path)))
        version = m.group(1) if m else None
    return ToolInfo(name=name, found=True, path=path, version=version, detail=spec.get("detail", ""))


def compiler_kind(output: str) -> str:
    for row in _data.load("toolchains").get("kinds", []):
        if re.search(row["regex"], output):
            return row["kind"]
    return ""


def query(name: str, spec: dict[str, Any], path: str | None = None) -> ToolInfo:
    path = path or locate(spec)
    if path is None:
        return ToolInfo(name=name, found=False, detail="not found")
    return interpret(name, spec, path, proc.run([path, *spec["args"]], timeout=TIMEOUT))


def interpret(name: str, spec: dict[str, Any], path: str, done) -> ToolInfo:
    """A version query's result (builddoctor.proc.Completed) -> ToolInfo."""
    output = done.stdout + done.stderr
    if done.timed_out:
        return ToolInfo(name=name, found=True, path=path, detail=f"`{name} {' '.join(spec['args'])}` timed out")
    if done.error:
        return ToolInfo(name=name, found=False, path=path, detail=f"cannot run: {done.error}")
    m = re.search(spec["regex"], output, re.M)
    if spec.get("version_is_path"):
        return ToolInfo(
            name=name, found=done.ok, path=path, detail=m.group(1).strip() if m and done.ok else output.strip()[:200]
        )
    version = m.group(1) if m else None
    detail = ""
    if spec.get("compiler"):
        detail = compiler_kind(output)
        real = os.path.realpath(path)
        if real != path:
            detail = f"{detail} -> {real}".strip()
    elif not done.ok:
        detail = f"exit status {done.returncode}: {output.strip()[:200]}"
    elif version is None:
        detail = output.strip().splitlines()[0][:200] if output.strip() else "no version printed"
    return ToolInfo(name=name, found=True, path=path, version=version, detail=detail)


Pending: TypeAlias = "ToolInfo | tuple[dict[str, Any], str, Future[ToolInfo]]"


def submit_all(system: str, pool: Executor) -> dict[str, Pending]:
    """Start every version query in ``pool``; collect with ``collect``.

    Names that are the same program (cc -> gcc-12, gcc -> gcc-12) share one query.
    """
    out: dict[str, Pending] = {}
    by_program: dict[tuple[str, tuple[str, ...]], Future] = {}
    for name, spec in specs(system).items():
        path = locate(spec)
        if path is None:
            out[name] = ToolInfo(name=name, found=False, detail="not found")
            continue
        if "files" in spec:
            out[name] = file_fact(name, spec, path)
            continue
        key = (os.path.realpath(path), tuple(spec["args"]))
        if key not in by_program:
            by_program[key] = pool.submit(_run_version, path, spec)
        out[name] = (spec, path, by_program[key])
    return out


def collect(pending: dict[str, Pending]) -> dict[str, ToolInfo]:
    out = {}
    for name, item in pending.items():
        if isinstance(item, ToolInfo):
            out[name] = item
            continue
        spec, path, fut = item
        try:
            out[name] = interpret(name, spec, path, fut.result())
        except Exception as exc:  # noqa: BLE001 - a probe never fails the command
            out[name] = ToolInfo(name=name, found=False, detail=f"probe failed: {type(exc).__name__}: {exc}")
    return out


def _run_version(path: str, spec: dict[str, Any]):
    return proc.run([path, *spec["args"]], timeout=TIMEOUT)


@functools.lru_cache(maxsize=32)
def toolkit_root(nvcc_path: str) -> Path:
    """The toolkit an nvcc belongs to: the folder above its bin/ (symlinks resolved), or, for an nvcc
    that is a wrapper script elsewhere (/usr/local/bin/nvcc -> exec .../cuda-13.0/bin/nvcc), the TOP
    that nvcc itself reports in a dry run."""
    real = Path(os.path.realpath(nvcc_path))
    if real.parent.name == "bin" and (real.parent.parent / "include" / "cuda_runtime.h").is_file():
        return real.parent.parent
    done = proc.run([nvcc_path, "--dryrun", "-E", "-x", "cu", os.devnull], timeout=10.0)  # lists, runs nothing
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("#$ TOP="):
            return Path(os.path.realpath(line[len("#$ TOP=") :].strip()))
    return real.parent.parent


def find_cublas(root: Path) -> tuple[Path, Path] | None:
    """(cublas_v2.h, libcublas.so*) in a toolkit root, or None: what ggml-cuda includes and links."""
    header = next(
        (
            p
            for p in (root / "include" / "cublas_v2.h", root / "targets" / "x86_64-linux" / "include" / "cublas_v2.h")
            if p.is_file()
        ),
        None,
    )
    if header is None:
        return None
    for lib in ("lib64", "lib", "targets/x86_64-linux/lib"):
        for name in ("libcublas.so", "libcublas.so.13", "libcublas.so.12"):
            if (root / lib / name).is_file():
                return header, root / lib / name
    return None


def cublas_fact(nvcc: ToolInfo) -> ToolInfo:
    """cuBLAS beside an nvcc (ggml-cuda links CUDA::cublas): header and library in its toolkit root,
    the version from cublas_api.h. The toolkit root is the folder above nvcc's bin/ as named (not
    resolved), so a merged toolkit (cuda_pip.py) is read as itself."""
    if not nvcc.found or not nvcc.path:
        return ToolInfo(name="cublas", found=False, detail="no nvcc")
    roots = [Path(nvcc.path).parent.parent]
    if not (roots[0] / "include" / "cuda_runtime.h").is_file():
        roots.append(toolkit_root(nvcc.path))  # a wrapper script: the toolkit nvcc runs from
    found = next((f for f in map(find_cublas, roots) if f), None)
    root = roots[-1]
    if found is None:
        return ToolInfo(name="cublas", found=False, detail=f"no cublas_v2.h and libcublas.so in {root}")
    header, lib = found
    spec = {
        "content_regex": r"CUBLAS_VER_MAJOR\s+(\d+).*?CUBLAS_VER_MINOR\s+(\d+).*?CUBLAS_VER_PATCH\s+(\d+)",
        "groups": [1, 2, 3],
        "detail": str(lib),
    }
    api = header.with_name("cublas_api.h")
    info = file_fact("cublas", spec, str(api if api.is_file() else header))
    info.path = str(header)
    return info


def libcuda_fact(nvcc: ToolInfo) -> ToolInfo:
    """The driver library ggml-cuda's VMM pool links (CUDA::cuda_driver): the toolkit's lib/stubs/libcuda.so
    or an installed driver's libcuda.so. A toolkit put together from pip wheels has neither."""
    if not nvcc.found or not nvcc.path:
        return ToolInfo(name="libcuda", found=False, detail="no nvcc")
    roots = [Path(nvcc.path).parent.parent, toolkit_root(nvcc.path)]
    cands = [
        r / sub / "libcuda.so" for r in roots for sub in ("lib64/stubs", "lib/stubs", "targets/x86_64-linux/lib/stubs")
    ]
    cands += [
        Path(d) / "libcuda.so"
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu", "/usr/lib/wsl/lib")
    ]
    hit = next((c for c in cands if c.is_file()), None)
    if hit is None:
        return ToolInfo(
            name="libcuda", found=False, detail=f"no lib/stubs/libcuda.so in {roots[-1]} and no driver library"
        )
    return ToolInfo(name="libcuda", found=True, path=str(hit))


def probe_all(system: str) -> dict[str, ToolInfo]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return collect(submit_all(system, pool))
