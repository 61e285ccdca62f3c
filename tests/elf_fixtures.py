"""Small real ELF files compiled with gcc (and nvcc, when present) at test time.

Each ``make_*`` function compiles into the folder it is given and returns the path(s).
The C sources mimic the llama.cpp symbols the inspector looks for (ggml_backend_*_reg,
ggml_cpu_has_*, ggml_vec_dot_*), so they go through the same code paths as a real build,
in milliseconds instead of minutes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from builddoctor import proc

GCC = shutil.which("gcc")
NVCC = shutil.which("nvcc") or (
    "/usr/local/cuda-13.0/bin/nvcc" if Path("/usr/local/cuda-13.0/bin/nvcc").exists() else None
)

# A CPU backend in miniature: the vector kernel takes the widest path the compiler flags
# allow, and ggml_cpu_has_* answer like ggml-cpu.c does (compile-time constants).
CPU_BACKEND_C = r"""
#include <immintrin.h>
int ggml_backend_cpu_reg(void) { return 1; }
float ggml_vec_dot_f32(int n, const float *x, const float *y) {
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc);
    return _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
#else
    __m128 acc = _mm_setzero_ps();
    for (int i = 0; i + 4 <= n; i += 4)
        acc = _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(y + i)));
    acc = _mm_hadd_ps(acc, acc); acc = _mm_hadd_ps(acc, acc);
    return _mm_cvtss_f32(acc);
#endif
}
int ggml_cpu_has_avx(void) {
#if defined(__AVX__)
    return 1;
#else
    return 0;
#endif
}
int ggml_cpu_has_avx2(void) {
#if defined(__AVX2__)
    return 1;
#else
    return 0;
#endif
}
int ggml_cpu_has_avx512(void) {
#if defined(__AVX512F__)
    return 1;
#else
    return 0;
#endif
}
int ggml_cpu_has_fma(void) {
#if defined(__FMA__)
    return 1;
#else
    return 0;
#endif
}
"""

ISA_FLAGS = {
    "avx512": ["-mavx512f", "-mfma", "-mavx2"],
    "avx2": ["-mavx2", "-mfma"],
    "sse": ["-msse4.2", "-mno-avx"],
}


def _cc(args: list[str], cwd: Path) -> None:
    if GCC is None:
        raise RuntimeError("gcc is not installed")
    res = proc.run([GCC, *args], cwd=cwd, timeout=120)
    if not res.ok:
        raise RuntimeError(f"gcc {' '.join(args)} failed:\n{res.stderr}")


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def make_cpu_backend(d: Path, level: str, *, opt: str = "-O2", debug: bool = False) -> Path:
    """<d>/<level>/libggml-cpu.so compiled for ``level`` (avx512, avx2, sse)."""
    out = d / level
    out.mkdir(parents=True, exist_ok=True)
    src = _write(out, "cpu.c", CPU_BACKEND_C)
    lib = out / "libggml-cpu.so"
    _cc(["-shared", "-fPIC", opt, *(["-g"] if debug else []), *ISA_FLAGS[level], str(src), "-o", str(lib)], out)
    return lib


def make_fake_cuda(d: Path) -> Path:
    """<d>/libggml-cuda.so that NEEDs libcudart.so.99, which exists nowhere once built."""
    stub = d / "stub"
    stub.mkdir(parents=True, exist_ok=True)
    _write(stub, "cudart.c", "int cudaGetDeviceCount(int *n) { *n = 0; return 0; }\n")
    _cc(["-shared", "-fPIC", "-Wl,-soname,libcudart.so.99", "cudart.c", "-o", "libcudart.so.99"], stub)
    _write(
        d,
        "cuda.c",
        "#include <stdio.h>\nint cudaGetDeviceCount(int *n);\n"
        'int ggml_backend_cuda_reg(void) { int n; puts("cuda"); return cudaGetDeviceCount(&n); }\n'
        'const char *ggml_cuda_kernel = "flash_attn_ext_f16";\n',
    )
    lib = d / "libggml-cuda.so"
    _cc(["-shared", "-fPIC", "cuda.c", "-o", str(lib), str(stub / "libcudart.so.99")], d)
    shutil.rmtree(stub)
    return lib


def make_new_glibc_lib(d: Path, version: str = "GLIBC_2.99") -> Path:
    """<d>/libggml-base.so whose VERNEED asks libc.so.6 for ``version`` (GLIBC_2.99).

    Linked against a stub libc.so.6 that defines a symbol at version GLIBC_2.99 (a version
    script), then the stub is removed: the result needs a glibc that does not exist yet."""
    stub = d / "stubc"
    stub.mkdir(parents=True, exist_ok=True)
    _write(stub, "c.c", "int gnu_future_call(void) { return 0; }\n")
    _write(stub, "c.map", f"{version} {{ global: gnu_future_call; local: *; }};\n")
    _cc(
        [
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-Wl,-soname,libc.so.6",
            "-Wl,--version-script=c.map",
            "c.c",
            "-o",
            "libc.so.6",
        ],
        stub,
    )
    _write(d, "base.c", "int gnu_future_call(void);\nint ggml_init(void) { return gnu_future_call(); }\n")
    lib = d / "libggml-base.so"
    _cc(["-shared", "-fPIC", "-nostdlib", "base.c", "-o", str(lib), str(stub / "libc.so.6")], d)
    shutil.rmtree(stub)
    return lib


def make_program(d: Path, name: str, body: str, *, flags: list[str] | None = None, llama: bool = True) -> Path:
    """<d>/<name>: an executable whose main() is ``body``; with llama.cpp symbols when asked."""
    d.mkdir(parents=True, exist_ok=True)
    head = "#include <unistd.h>\n#include <stdio.h>\n#include <signal.h>\n#include <immintrin.h>\n"
    if llama:
        head += "int llama_backend_init(void) { return 0; }\nint ggml_backend_load_all(void) { return 0; }\n"
    src = _write(d, name + ".c", head + "int main(int argc, char **argv) {\n" + body + "\n}\n")
    exe = d / name
    _cc(["-O1", *(flags or []), str(src), "-o", str(exe)], d)
    return exe


def make_sleeper(d: Path) -> Path:
    return make_program(d / "sleeper", "llama-cli", "for (;;) pause(); return 0;")


def make_sigill(d: Path) -> Path:
    """A llama-cli that dies from SIGILL at once (ud2, what __builtin_trap emits on x86)."""
    return make_program(d / "sigill", "llama-cli", "__builtin_trap(); return 0;")


def make_avx512_runner(d: Path) -> Path:
    """A llama-cli that executes an AVX-512 instruction: SIGILL on a CPU without AVX-512F."""
    return make_program(
        d / "avx512run",
        "llama-cli",
        "volatile float a = argc; __m512 v = _mm512_set1_ps(a);\n"
        'v = _mm512_add_ps(v, v); printf("%f\\n", _mm512_reduce_add_ps(v)); return 0;',
        flags=["-mavx512f"],
    )


def make_version_printer(d: Path) -> Path:
    """A llama-cli that answers --version and --list-devices like llama.cpp's do."""
    return make_program(
        d / "printer",
        "llama-cli",
        r"""
    if (argc > 1 && argv[1][2] == 'v') {
        fprintf(stderr, "version: 4242 (abc1234)\nbuilt with cc (Debian 12.2.0-14) 12.2.0 for x86_64-linux-gnu\n");
        return 0;
    }
    printf("Available devices:\n  CUDA0: NVIDIA GeForce RTX 4090 (24080 MiB, 23500 MiB free)\n  Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (32000 MiB, 32000 MiB free)\n");
    return 0;""",
    )


def make_not_llama(d: Path) -> Path:
    return make_program(d / "plain", "hello", 'puts("hello"); return 0;', llama=False)


def make_truncated(d: Path, source: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    out = d / "llama-cli"
    out.write_bytes(data[: len(data) // 3])
    out.chmod(0o755)
    return out


def make_cuda_fatbin(d: Path) -> Path:
    """<d>/libggml-cuda.so built by nvcc: SASS for sm_86, PTX for compute_89, NEEDs libcudart.so.13."""
    if NVCC is None:
        raise RuntimeError("nvcc is not installed")
    d.mkdir(parents=True, exist_ok=True)
    _write(
        d,
        "k.cu",
        "__global__ void flash_attn_ext_f16(float *x) { x[threadIdx.x] *= 2.0f; }\n"
        'extern "C" int ggml_backend_cuda_reg(void) { float *p = 0; '
        "flash_attn_ext_f16<<<1, 1>>>(p); return 0; }\n",
    )
    lib = d / "libggml-cuda.so"
    res = proc.run(
        [
            NVCC,
            "-shared",
            "-Xcompiler",
            "-fPIC",
            "-cudart",
            "shared",
            "-gencode",
            "arch=compute_86,code=sm_86",
            "-gencode",
            "arch=compute_89,code=compute_89",
            "k.cu",
            "-o",
            str(lib),
        ],
        cwd=d,
        timeout=300,
    )
    if not res.ok:
        raise RuntimeError(f"nvcc failed:\n{res.stderr}")
    return lib


GXX = shutil.which("g++")


def make_monolithic(
    d: Path,
    build_root: Path,
    name: str = "_llama.cpython-311-x86_64-linux-gnu.so",
    *,
    export: str = "PyInit__llama",
    strip: bool = False,
) -> Path:
    """<d>/<name>: the object files of a real llama.cpp test build (ggml, ggml-cpu, llama) linked into one
    shared object, the way a Python extension module carries llama.cpp: the CPU backend inside, only
    ``export`` in .dynsym (a version script hides the rest), optionally stripped of .symtab too.
    Links in well under a second (no compile)."""
    if GXX is None:
        raise RuntimeError("g++ is not installed")
    objs = sorted(str(p) for sub in ("ggml/src/CMakeFiles", "src/CMakeFiles") for p in (build_root / sub).rglob("*.o"))
    if not objs:
        raise RuntimeError(f"no object files under {build_root}")
    d.mkdir(parents=True, exist_ok=True)
    _write(d, "init.c", f"void *{export}(void) {{ return 0; }}\n")
    _write(d, "exports.map", f"{{ global: {export}; local: *; }};\n")
    out = d / name
    res = proc.run(
        [
            GXX,
            "-shared",
            "-fPIC",
            "-o",
            str(out),
            str(d / "init.c"),
            *objs,
            "-fopenmp",
            f"-Wl,--version-script={d / 'exports.map'}",
            *(["-s"] if strip else []),
        ],
        cwd=d,
        timeout=120,
    )
    if not res.ok:
        raise RuntimeError(f"linking {out} failed:\n{res.stderr[-2000:]}")
    for junk in ("init.c", "exports.map"):
        (d / junk).unlink()
    return out


def make_future_abi_module(d: Path, version: str = "GLIBCXX_3.4.99", *, name: str = "libllama.so") -> Path:
    """<d>/<name>: a C++ shared object whose undefined C++ runtime symbol asks libstdc++.so.6 for
    ``version`` (GLIBCXX_3.4.99, CXXABI_1.3.99: versions no libstdc++ defines yet).

    Linked against a stub libstdc++.so.6 that defines the symbol at that version (a version script), then
    the stub is removed: at run time the NEEDED libstdc++.so.6 is this machine's, and dlopen fails with
    "version `GLIBCXX_3.4.99' not found"."""
    if GXX is None:
        raise RuntimeError("g++ is not installed")
    stub = d / "stubcxx"
    stub.mkdir(parents=True, exist_ok=True)
    sym = "_ZSt15__future_hook99v"
    _write(stub, "s.c", f"void {sym}(void) {{}}\n")
    _write(stub, "s.map", f"{version} {{ global: {sym}; local: *; }};\n")
    _cc(
        [
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-Wl,-soname,libstdc++.so.6",
            "-Wl,--version-script=s.map",
            "s.c",
            "-o",
            "libstdc++.so.6",
        ],
        stub,
    )
    _write(
        d,
        "m.cpp",
        "namespace std { void __future_hook99(); }\n"
        'extern "C" int llama_backend_init(void) { std::__future_hook99(); return 0; }\n',
    )
    out = d / name
    res = proc.run(
        [GXX, "-shared", "-fPIC", "-nostdlib", "m.cpp", "-o", str(out), str(stub / "libstdc++.so.6")],
        cwd=d,
        timeout=120,
    )
    if not res.ok:
        raise RuntimeError(f"g++ failed:\n{res.stderr}")
    shutil.rmtree(stub)
    (d / "m.cpp").unlink()
    return out


def make_missing_symbol_lib(d: Path) -> Path:
    """<d>/libllama.so that calls ggml_future_op() from its NEEDED libggml-base.so, and beside it a
    libggml-base.so (same soname) that does not define it: an unversioned symbol no library here has,
    the "undefined symbol" a library built against a newer ggml than the one found gets."""
    d.mkdir(parents=True, exist_ok=True)
    newer = d / "newer"
    newer.mkdir(exist_ok=True)
    _write(newer, "b.c", "int ggml_future_op(void) { return 1; }\nint ggml_init(void) { return 0; }\n")
    _cc(["-shared", "-fPIC", "-Wl,-soname,libggml-base.so", "b.c", "-o", "libggml-base.so"], newer)
    _write(
        d,
        "l.c",
        "int ggml_future_op(void);\nint ggml_init(void);\n"
        "int llama_backend_init(void) { return ggml_init() + ggml_future_op(); }\n",
    )
    _cc(["-shared", "-fPIC", "l.c", "-o", "libllama.so", "-Wl,-rpath,$ORIGIN", str(newer / "libggml-base.so")], d)
    shutil.rmtree(newer)
    _write(d, "b.c", "int ggml_init(void) { return 0; }\n")  # the older libggml-base.so found here
    _cc(["-shared", "-fPIC", "-Wl,-soname,libggml-base.so", "b.c", "-o", "libggml-base.so"], d)
    for junk in ("l.c", "b.c"):
        (d / junk).unlink()
    return d / "libllama.so"


MINGW = shutil.which("x86_64-w64-mingw32-gcc")


def make_cuda_dll(d: Path) -> Path:
    """<d>/ggml-cuda.dll: a Windows x64 DLL (mingw-w64) exporting ggml_backend_cuda_reg, with the real fatbin
    nvcc writes (make_cuda_fatbin: sm_86 SASS, compute_89 PTX) in a ".nv_fatb" section, the 8-character name
    a PE gives nvcc's .nv_fatbin."""
    if MINGW is None:
        raise RuntimeError("x86_64-w64-mingw32-gcc is not installed")
    elf = make_cuda_fatbin(d / "elf")
    blob = d / "fatbin.bin"
    res = proc.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", str(elf), str(blob)], timeout=60)
    if not res.ok:
        raise RuntimeError(res.stderr)
    _write(d, "cuda.c", "__declspec(dllexport) int ggml_backend_cuda_reg(void) { return 1; }\n")
    dll = d / "ggml-cuda.dll"
    for argv in (
        [MINGW, "-shared", "-O1", "cuda.c", "-o", str(dll)],
        [
            "objcopy",
            "--add-section",
            f".nv_fatb={blob}",
            "--set-section-flags",
            ".nv_fatb=contents,alloc,load,readonly,data",
            str(dll),
        ],
    ):
        res = proc.run(argv, cwd=d, timeout=120)
        if not res.ok:
            raise RuntimeError(f"{argv[0]} failed:\n{res.stderr}")
    shutil.rmtree(d / "elf")
    blob.unlink()
    (d / "cuda.c").unlink()
    return dll
