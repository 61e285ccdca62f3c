"""Work out the ground truth of each corpus case with tools independent of builddoctor.

    .venv/bin/python -m tests.corpus.truth [NAME...]

Writes tests/corpus/truth/<name>.json (committed). Nothing here imports builddoctor: the platform comes from
`file`, the symbols from binutils `nm`/`objdump -p` (ELF, PE) and `llvm-nm` (Mach-O), the linked libraries from
`readelf -d`, `objdump -p` and `llvm-objdump --macho --dylibs-used`, the required symbol versions from
`readelf -V`, the instruction sets from a full disassembly (`objdump -d` for x86-64 ELF, `llvm-objdump -d` for
the rest), the CUDA architectures from the bytes of the fatbin section (offset and size from `readelf -S` /
`objdump -h`), and whether a file loads here from a `dlopen` in a clean child (`ctypes.CDLL`, RTLD_NOW;
`node`'s `process.dlopen` for `.node` addons). Run it on the machine the truth is for (its CPU does not
matter; its glibc/libstdc++ does: the dlopen results are this Debian 12 machine's).
"""

from __future__ import annotations

import json
import mmap
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from tests.corpus import fetch

HOST_OS = {"Linux": "linux", "Darwin": "macos", "Windows": "windows"}[platform.system()]
HOST_ARCH = {"AMD64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())

LLAMA_SYM = re.compile(r"^_?_?(ggml_|llama_|gguf_)")
# backend name <- symbol prefixes (any of: defined, imported, static) and linked libraries
BACKEND_SYMS = [
    ("CUDA", re.compile(r"^_?(ggml_backend_cuda_|ggml_cuda_|ggml_init_cublas)")),
    ("Vulkan", re.compile(r"^_?ggml_backend_vk_")),
    ("Kompute", re.compile(r"ggml_backend_kompute_")),  # gpt4all's (its ggml_vk_ names are Vulkan's too)
    ("Metal", re.compile(r"^_?(ggml_backend_metal_|ggml_metal_)")),
    ("BLAS", re.compile(r"^_?ggml_backend_blas_")),
    ("CPU", re.compile(r"^_?(ggml_backend_cpu_init|ggml_backend_cpu_reg|ggml_vec_dot_|ggml_graph_compute)")),
]
BACKEND_LIBS = [
    ("CUDA", re.compile(r"^(libcudart|libcublas|cudart64|cublas64)", re.I)),
    ("Vulkan", re.compile(r"^(libvulkan\.so|vulkan-1\.dll)", re.I)),
    ("Metal", re.compile(r"Metal\.framework")),
]
HASH = re.compile(r"-[0-9a-f]{8}$")

# x86: AVX1 has no 256-bit integer instructions but these
AVX1_YMM_VP = {"vptest", "vpermilps", "vpermilpd", "vperm2f128"}
X86_LEVELS = ["sse", "avx", "avx2", "avx512"]
ARM_LEVELS = ["neon", "dotprod", "i8mm", "sve"]


def run(argv: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace", **kw)


def tool_versions() -> dict[str, str]:
    out = {}
    for name, argv in (
        ("file", ["file", "--version"]),
        ("objdump", ["objdump", "--version"]),
        ("llvm-objdump", ["llvm-objdump", "--version"]),
        ("node", ["node", "--version"]),
    ):
        if shutil.which(argv[0]):
            lines = [ln.strip() for ln in run(argv).stdout.splitlines() if ln.strip()]
            out[name] = next((ln for ln in lines if re.search(r"\d+\.\d+", ln)), lines[0] if lines else "")
    return out


# ---------------------------------------------------------------- platform (file)
def classify(desc: str) -> dict | None:
    """format/os/arch(s) from `file -b` output; None when not an executable format we know."""
    if desc.startswith("ELF"):
        arch = (
            "x86_64"
            if "x86-64" in desc
            else "aarch64"
            if "aarch64" in desc
            else "arm"
            if ", ARM," in desc
            else "i386"
            if "Intel 80386" in desc
            else desc.split(",")[1].strip()
        )
        return {"format": "ELF", "os": "linux", "arch": [arch]}
    if desc.startswith("Mach-O"):
        archs = re.findall(r"\[(?:\\012- )?(\w+)", desc) if "universal" in desc else [desc.split()[2]]
        archs = ["aarch64" if a.startswith("arm64") else a for a in archs]
        return {"format": "Mach-O", "os": "macos", "arch": sorted(set(archs))}
    if desc.startswith("PE32"):
        arch = "x86_64" if "x86-64" in desc else "aarch64" if "Aarch64" in desc or "ARM64" in desc else "i386"
        return {"format": "PE", "os": "windows", "arch": [arch]}
    return None


# ---------------------------------------------------------------- symbols, libraries
def _nm_names(text: str) -> list[str]:
    """The symbol names of nm's output (its last column), without the per-file/per-arch headers."""
    return [ln.split()[-1] for ln in text.splitlines() if ln.strip() and not ln.endswith(":")]


def symbols(path: Path, fmt: str) -> dict[str, list[str]]:
    """defined (exported), imported and static symbol names."""
    if fmt == "ELF":
        d = run(["nm", "-D", "--defined-only", str(path)]).stdout
        u = run(["nm", "-D", "--undefined-only", str(path)]).stdout
        s = run(["nm", "--defined-only", str(path)]).stdout
        return {"defined": _nm_names(d), "undefined": _nm_names(u), "static": _nm_names(s)}
    if fmt == "Mach-O":
        d = run(["llvm-nm", "-g", "--defined-only", "--arch=all", str(path)]).stdout
        u = run(["llvm-nm", "-u", "--arch=all", str(path)]).stdout
        s = run(["llvm-nm", "--defined-only", "--arch=all", str(path)]).stdout
        return {k: sorted(set(_nm_names(t))) for k, t in (("defined", d), ("undefined", u), ("static", s))}
    # PE (x86-64 and ARM64): the export and import tables (llvm-readobj)
    text = run(["llvm-readobj", "--coff-exports", "--coff-imports", str(path)]).stdout
    exports, imports, block = [], [], None
    for ln in text.splitlines():
        st = ln.strip()
        if st.startswith("Export {"):
            block = "export"
        elif st.startswith("Import {") or st.startswith("DelayImport {"):
            block = "import"
        elif block == "export" and st.startswith("Name: "):
            exports.append(st[6:])
        elif block == "import" and st.startswith("Symbol: "):
            imports.append(st[8:].split(" (")[0])
    return {"defined": exports, "undefined": imports, "static": []}


def needed(path: Path, fmt: str) -> list[str]:
    if fmt == "ELF":
        return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", "-W", str(path)]).stdout)
    if fmt == "PE":
        text = run(["llvm-readobj", "--coff-imports", str(path)]).stdout
        return re.findall(r"^  Name: (\S+)$", text, re.M)
    out = run(["llvm-objdump", "--macho", "--dylibs-used", "--arch=all", str(path)]).stdout
    return sorted(
        {ln.strip().split(" (")[0] for ln in out.splitlines()[1:] if ln.startswith("\t") or ln.startswith(" ")}
    )


def version_needs(path: Path) -> dict[str, str]:
    """highest GLIBC_/GLIBCXX_/CXXABI_ version the file needs (readelf -V)."""
    best: dict[str, tuple] = {}
    for name, ver in re.findall(
        r"Name: (GLIBC|GLIBCXX|CXXABI)_([0-9.]+)", run(["readelf", "-V", "-W", str(path)]).stdout
    ):
        key = tuple(int(x) for x in ver.split("."))
        if name not in best or key > best[name]:
            best[name] = key
    return {k: ".".join(map(str, v)) for k, v in sorted(best.items())}


# ---------------------------------------------------------------- ISA (disassembly)
# llvm-objdump 14 decodes no AArch64 extension it is not told of (`<unknown>`): name them all
ARM_MATTR = "--mattr=+v9.2a,+sve,+sve2,+i8mm,+dotprod,+bf16,+fullfp16,+fp16fml,+sme"


def disassembly(path: Path, fmt: str, arch: str):
    if fmt == "ELF" and arch == "x86_64":
        argv = ["objdump", "-d", "--no-show-raw-insn", "-w", str(path)]
    else:
        argv = ["llvm-objdump", "-d", "--no-show-raw-insn", str(path)]
        if arch == "aarch64":
            argv.insert(1, ARM_MATTR)
        if fmt == "Mach-O":
            argv.insert(1, "--arch=" + ("arm64" if arch == "aarch64" else arch))
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
    try:
        yield from p.stdout
    finally:
        p.stdout.close()
        p.wait(timeout=60)


INSN = re.compile(r"^\s*[0-9a-f]+:\s+([a-z][a-z0-9.]*)\s*(.*)$")


def isa_of(path: Path, fmt: str, archs: list[str]) -> dict[str, dict]:
    """per architecture: the level and the features its code uses, with instruction counts."""
    counts: dict[str, dict[str, int]] = {}
    lines = ((a, line) for a in archs for line in disassembly(path, fmt, a))
    for cur, line in lines:
        m = INSN.match(line)
        if not m:
            continue
        mn, ops = m.group(1), m.group(2)
        c = counts.setdefault(cur, {})
        if cur == "x86_64":
            feats = []
            if "zmm" in ops or re.search(r"%k[1-7]\b|\{k[1-7]\}", ops):
                feats.append("avx512")
            if "ymm" in ops:
                feats.append("avx2" if mn.startswith("vp") and mn not in AVX1_YMM_VP else "avx")
            if mn.startswith("vgather") or mn.startswith("vpgather") or mn.startswith("vpbroadcast"):
                feats.append("avx2")
            if mn.startswith("vfmadd") or mn.startswith("vfnmadd") or mn.startswith("vfmsub"):
                feats.append("fma")
            if mn.startswith("vpdpbusd") or mn.startswith("vpdpwssd"):
                feats.append("vnni")
            if mn in ("vdpbf16ps", "vcvtne2ps2bf16", "vcvtneps2bf16"):
                feats.append("avx512_bf16")
            if mn.startswith("tdp") or mn in ("tileloadd", "tilezero", "ldtilecfg"):
                feats.append("amx")
            if "xmm" in ops and mn.startswith("v"):
                feats.append("avx")  # VEX-encoded 128-bit: AVX at least
            if not feats and ("xmm" in ops):
                feats.append("sse")
            for f in feats:
                c[f] = c.get(f, 0) + 1
        elif cur == "aarch64":
            feats = []
            if re.search(r"\bz\d+\.[bhsdq]\b|\bp\d+/[zm]\b", ops):
                feats.append("sve")
            if mn in ("sdot", "udot", "usdot", "sudot"):
                feats.append("dotprod")
            if mn in ("smmla", "ummla", "usmmla", "bfmmla"):
                feats.append("i8mm")
            if re.search(r"\bv\d+\.(16b|8h|4s|2d|8b|4h|2s)\b", ops):
                feats.append("neon")
            for f in feats:
                c[f] = c.get(f, 0) + 1
    return {a: {"level": level_of(a, c), "counts": dict(sorted(c.items()))} for a, c in counts.items()}


# a feature counts when the code has at least this many of its instructions: one stray decode of data in a
# code section (an SME `mov za0h...` in a Windows ARM64 DLL) is not code that uses the extension
MIN_INSNS = 8


def level_of(arch: str, counts: dict[str, int]) -> str | None:
    lv = None
    for name in X86_LEVELS if arch == "x86_64" else ARM_LEVELS:
        if counts.get(name, 0) >= MIN_INSNS:
            lv = name
    return lv


# ---------------------------------------------------------------- CUDA fatbin bytes
FATBIN_MAGIC = 0xBA55ED50


def section_span(path: Path, fmt: str, names: tuple[str, ...]) -> tuple[int, int] | None:
    if fmt == "ELF":
        for ln in run(["readelf", "-S", "-W", str(path)]).stdout.splitlines():
            m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)", ln)
            if m and m.group(1) in names:
                return int(m.group(2), 16), int(m.group(3), 16)
    elif fmt == "PE":
        text = run(["llvm-readobj", "--sections", str(path)]).stdout
        for m in re.finditer(
            r"Name: (\S+) \([0-9A-F ]+\)\n(?:.*\n){0,6}?\s+RawDataSize: (\d+)\n\s+PointerToRawData: 0x([0-9A-F]+)", text
        ):
            if m.group(1) in names:
                return int(m.group(3), 16), int(m.group(2))
    return None


def cuda_archs(path: Path, fmt: str) -> list[str] | None:
    """sm_XX (cubin) and compute_XX (PTX) of every fatbin entry; None when there is no fatbin section."""
    span = section_span(path, fmt, (".nv_fatbin", ".nv_fatb", "__nv_fatbin"))
    if span is None:
        return None
    off, size = span
    archs = set()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos, end = off, off + size
        while pos + 16 <= end:
            magic, _ver, hsize, fsize = struct.unpack_from("<IHHQ", mm, pos)
            if magic != FATBIN_MAGIC:
                pos += 8  # padding between the fatbins of several translation units
                continue
            e, eend = pos + hsize, pos + hsize + fsize
            while e + 32 <= eend:
                kind, _u, ehsize, esize = struct.unpack_from("<HHIQ", mm, e)
                arch = struct.unpack_from("<I", mm, e + 28)[0]
                if kind == 1:
                    archs.add(f"compute_{arch}")
                elif kind == 2:
                    archs.add(f"sm_{arch}")
                if ehsize == 0:
                    break
                e += ehsize + esize
            pos = eend
    return sorted(archs, key=lambda a: (int(a.split("_")[1]), a))


# ---------------------------------------------------------------- loads here?
DLOPEN_PY = "import ctypes, sys\ntry:\n    ctypes.CDLL(sys.argv[1])\nexcept OSError as e:\n    print(e); sys.exit(3)\n"
DLOPEN_NODE = (
    "try { process.dlopen({exports: {}}, process.argv[1]); } catch (e) { console.log(e.message); process.exit(3); }"
)


def dlopen(path: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C"}
    if path.name.endswith(".node") and shutil.which("node"):
        argv, via = ["node", "-e", DLOPEN_NODE, str(path)], "node process.dlopen"
    else:
        argv, via = [sys.executable, "-I", "-c", DLOPEN_PY, str(path)], "python ctypes.CDLL (RTLD_NOW)"
    try:
        r = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, env=env, cwd=path.parent, errors="replace"
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "via": via, "error": "timed out"}
    if r.returncode == 0:
        return {"ok": True, "via": via}
    err = (r.stdout + r.stderr).strip().splitlines()
    msg = err[-1].replace(str(path.parent) + "/", "")[:400] if err else f"exit {r.returncode}"
    return {"ok": False, "via": via, "error": msg}


# ---------------------------------------------------------------- per file, per case
def cpu_variant(name: str) -> str | None:
    base = re.split(r"\.(so|dll|dylib)\b", name)[0]
    base = HASH.sub("", base)
    m = re.match(r"^(?:lib)?ggml-cpu-(.+)$", base)
    return m.group(1) if m else None


def strings_hint(path: Path) -> bool:
    r = run(["grep", "-c", "-a", "-E", "GGML_ASSERT|ggml_new_tensor|llama_model_load", str(path)])
    return r.returncode == 0 and r.stdout.strip() not in ("", "0")


def file_truth(path: Path, rel: str) -> dict | None:
    desc = run(["file", "-b", str(path)]).stdout.strip()
    plat = classify(desc)
    if plat is None:
        return None
    fmt = plat["format"]
    syms = symbols(path, fmt)
    allsyms = syms["defined"] + syms["undefined"] + syms["static"]
    hits = sorted({s for s in allsyms if LLAMA_SYM.match(s)})
    libs = needed(path, fmt)
    llama = bool(hits) or strings_hint(path)
    t = {
        "path": rel,
        "file": desc,
        **plat,
        "size": path.stat().st_size,
        "llama": llama,
        "llama_symbols": len(hits),
        "needed": libs,
    }
    if not llama:
        return t
    backends = {
        name
        for name, rx in BACKEND_SYMS
        if any(rx.search(s) if name == "Kompute" else rx.match(s) for s in syms["defined"] + syms["static"])
    }
    backends |= {name for name, rx in BACKEND_LIBS if any(rx.search(lib) for lib in libs)}
    if not backends and not hits:  # stripped/static (a .pyd exporting PyInit only): the names in its strings
        found = set(
            run(
                [
                    "grep",
                    "-a",
                    "-o",
                    "-E",
                    "ggml_(compute_forward|graph_compute|vec_dot|cuda|metal|vk)[a-z_]*",
                    str(path),
                ]
            ).stdout.split()
        )
        for name, pre in (
            ("CPU", ("ggml_compute_forward", "ggml_graph_compute", "ggml_vec_dot")),
            ("CUDA", ("ggml_cuda",)),
            ("Metal", ("ggml_metal",)),
            ("Vulkan", ("ggml_vk",)),
        ):
            if any(f.startswith(pre) for f in found):
                backends.add(name)
        if not backends:
            backends.add("CPU")  # ggml from before its backend API: the CPU code is always linked in
        t["backends_from"] = "strings"
    t["backends"] = sorted(backends)
    t["cpu_variant"] = cpu_variant(path.name)
    if fmt == "ELF":
        t["version_needs"] = version_needs(path)
    if "CPU" in backends or t["cpu_variant"]:
        t["isa"] = isa_of(path, fmt, plat["arch"])
    ca = cuda_archs(path, fmt)
    if ca is not None:
        t["cuda_archs"] = ca
    t["dlopen_here"] = dlopen(path)
    return t


def files_of(folder: Path) -> list[Path]:
    out = []
    for dp, dns, fns in os.walk(folder):
        dns[:] = sorted(d for d in dns if d not in ("__pycache__",))
        for fn in sorted(fns):
            p = Path(dp, fn)
            if p.is_symlink() or not p.is_file() or p.stat().st_size < 4096:
                continue
            with open(p, "rb") as f:
                head = f.read(4)
            if head[:4] in (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe") or head[:2] == b"MZ":
                out.append(p)
    return out


def summarize(files: list[dict]) -> dict:
    ll = [f for f in files if f.get("llama")]
    plats = sorted({(f["os"], a, f["format"]) for f in ll for a in f["arch"]})
    native = [f for f in ll if f["os"] == HOST_OS and HOST_ARCH in f["arch"]]
    levels = {}
    for f in ll:
        for a, v in f.get("isa", {}).items():
            if v["level"]:
                levels.setdefault(a, set()).add(v["level"])

    def top(a, s):
        order = X86_LEVELS if a == "x86_64" else ARM_LEVELS
        return max(s, key=order.index)

    return {
        "platforms": [{"os": o, "arch": a, "format": fm} for o, a, fm in plats],
        "foreign": not native,
        "llama_files": [f["path"] for f in ll],
        "native_llama_files": [f["path"] for f in native],
        "loads_here": bool(native) and all(f["dlopen_here"]["ok"] for f in native),
        "unloadable_here": [f["path"] for f in native if not f["dlopen_here"]["ok"]],
        "backends": sorted({b for f in ll for b in f.get("backends", [])}),
        "cpu_variants": sorted({f["cpu_variant"] for f in ll if f.get("cpu_variant")}),
        "isa_level": {a: top(a, s) for a, s in sorted(levels.items())},
        "isa_levels_seen": {
            a: sorted(s, key=(X86_LEVELS if a == "x86_64" else ARM_LEVELS).index) for a, s in sorted(levels.items())
        },
        "cuda_archs": sorted({c for f in ll for c in f.get("cuda_archs", [])}, key=lambda a: (int(a.split("_")[1]), a)),
    }


def version_hints(folder: Path) -> dict:
    out = {}
    for meta in folder.rglob("_nlcBuildMetadata.json"):
        data = json.loads(meta.read_text())
        out["llama_cpp_release"] = data.get("buildOptions", {}).get("llamaCpp", {}).get("release")
    names = [p.name for p in folder.rglob("*") if p.is_file()]
    vs = sorted({m.group(1) for n in names for m in [re.search(r"llama[.\w-]*?\.v(\d+\.\d+\.\d+)\.", n)] if m})
    if vs:
        out["libllama_name_version"] = vs
    bs = sorted({m.group(1) for n in names for m in [re.search(r"\bb(\d{4,5})\b", n)] if m})
    if bs:
        out["build_number_in_names"] = bs
    return out


def case_truth(case: fetch.Case) -> dict:
    root = fetch.case_root(case)
    target = fetch.check_path(case)
    files = [t for p in files_of(target) if (t := file_truth(p, str(p.relative_to(target))))]
    return {
        "case": case.name,
        "registry": case.registry,
        "package": case.package,
        "version": case.version,
        "file": case.file,
        "sha256": case.sha256,
        "check": case.check,
        "what": case.what,
        "truth_host": {"os": HOST_OS, "arch": HOST_ARCH, "libc": "glibc " + platform.libc_ver()[1]},
        "tools": tool_versions(),
        "version_hints": version_hints(root),
        **summarize(files),
        "files": files,
    }


def shape_truth(shape: fetch.Shape, cases: dict[str, fetch.Case]) -> dict:
    """Where each member case's llama files lie inside the assembled shape."""
    members = []
    for n in shape.cases:
        t = json.loads((fetch.TRUTH_DIR / f"{n}.json").read_text())
        c = cases[n]
        if shape.kind == "venv":
            prefix = "lib/python3.11/site-packages/" + (c.check + "/" if c.check else "")
        else:
            prefix = f"node_modules/{c.package}/" + (
                c.check.removeprefix("package").strip("/") + "/" if c.check.removeprefix("package").strip("/") else ""
            )
        members.append(
            {
                "case": n,
                "package": c.package,
                "version": c.version,
                "native_llama_files": [prefix + p for p in t["native_llama_files"]],
                "llama_files": [prefix + p for p in t["llama_files"]],
                "foreign": t["foreign"],
            }
        )
    return {"shape": shape.name, "kind": shape.kind, "members": members}


def relevel() -> None:
    """recompute the levels and the summary of every truth file from its recorded instruction counts."""
    for p in sorted(fetch.TRUTH_DIR.glob("*.json")):
        t = json.loads(p.read_text())
        if "files" not in t:
            continue
        for f in t["files"]:
            for a, v in f.get("isa", {}).items():
                v["level"] = level_of(a, v["counts"])
        t.update(summarize(t["files"]))
        files = t.pop("files")
        t["files"] = files
        p.write_text(json.dumps(t, indent=1) + "\n")


def main(argv: list[str]) -> int:
    if argv == ["--relevel"]:
        relevel()
        return 0
    cases, shapes = fetch.load()
    by = {c.name: c for c in cases}
    want = set(argv) or None
    fetch.TRUTH_DIR.mkdir(exist_ok=True)
    for c in cases:
        if want and c.name not in want:
            continue
        fetch.fetch_case(c)
        t = case_truth(c)
        (fetch.TRUTH_DIR / f"{c.name}.json").write_text(json.dumps(t, indent=1) + "\n")
        print(
            f"{c.name}: {t['platforms']} backends={t['backends']} isa={t['isa_level']} "
            f"cuda={t['cuda_archs']} loads_here={t['loads_here']} {t['unloadable_here']}",
            flush=True,
        )
    for s in shapes:
        if want and s.name not in want:
            continue
        fetch.build_shape(s, by)
        (fetch.TRUTH_DIR / f"{s.name}.json").write_text(json.dumps(shape_truth(s, by), indent=1) + "\n")
        print(f"{s.name}: written", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
