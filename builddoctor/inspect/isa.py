"""Which CPU instruction sets a build's CPU code uses, read from its machine code.

Two sources, both static:

* ``ggml_cpu_has_<x>()`` in the ggml CPU backend returns a compile-time constant
  (``#if defined(__AVX2__) return 1``), so decoding those few tiny functions tells what
  the backend was compiled for. Their prologue also tells optimised code from -O0 code.
* The instructions really used: the backend's hot functions (found by symbol:
  ``ggml_vec_dot_*``, ``ggml_gemv_*``, ``quantize_row_*``...) are decoded with iced-x86 and
  each instruction is classified by the CPUID feature it needs. A file without such
  symbols is decoded whole when small, or in evenly spaced samples within a byte budget.

Features are named as llama.cpp names them (the GGML_<X> options): SSE42, AVX, F16C,
FMA, AVX2, BMI2, AVX512, AVX512_VBMI, AVX512_VNNI, AVX512_BF16, AVX_VNNI, AMX_INT8...
Measured here: iced-x86 decodes about 4 million instructions a second, so the 1.4 MB
.text of libc takes ~75 ms; a llama.cpp CPU backend's hot functions take a few ms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from builddoctor.inspect.data import load
from builddoctor.inspect.image import Image
from builddoctor.inspect.symbols import mentions_strings

X86 = ("x86_64", "i386")
_NOT_ISA = {"LLAMAFILE", "WASM_SIMD"}  # ggml_cpu_has_* answers that are not CPU features


@dataclass
class IsaResult:
    features: set[str] = field(default_factory=set)  # llama.cpp vocabulary
    detail: set[str] = field(default_factory=set)  # AVX512F, AVX512BW... (finer AVX-512 subsets)
    compiled_for: dict[str, bool] = field(default_factory=dict)  # from ggml_cpu_has_*()
    unoptimized: bool | None = None  # -O0 code seen (frame set up in trivial functions)
    decoded_bytes: int = 0
    how: str = ""

    @property
    def level(self) -> str | None:
        return level_of(self.features)


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return load("inspect_isa.toml")


def level_of(features: set[str] | list[str]) -> str | None:
    feats = set(features)
    for feat, level in _data()["levels"]["order"]:
        if feat in feats:
            return level
    return None


@lru_cache(maxsize=1)
def _feature_names() -> dict[int, str]:
    import iced_x86  # noqa: PLC0415 (iced-x86 is heavy: loaded when code is decoded)

    return {v: k for k, v in vars(iced_x86.CpuidFeature).items() if not k.startswith("_") and isinstance(v, int)}


_CODE_FEATURES: dict[int, tuple[str, ...]] = {}


def _features_of_code(code: int) -> tuple[str, ...]:
    got = _CODE_FEATURES.get(code)
    if got is None:
        import iced_x86  # noqa: PLC0415 (iced-x86 is heavy: loaded when code is decoded)

        ins = iced_x86.Instruction()
        ins.code = code  # type: ignore[assignment]  # the stub says IntEnum; iced_x86.Code holds plain ints
        names = _feature_names()
        got = tuple(names.get(f, str(f)) for f in ins.cpuid_features())
        _CODE_FEATURES[code] = got
    return got


def classify_codes(codes: set[int]) -> tuple[set[str], set[str]]:
    table = _data()["x86_features"]
    detail_table = _data()["x86_detail"]
    feats: set[str] = set()
    detail: set[str] = set()
    for code in codes:
        if code == 0:  # INVALID
            continue
        for f in _features_of_code(code):
            if f in table:
                feats.add(table[f])
            if f in detail_table:
                detail.add(detail_table[f])
    return feats, detail


def decode_codes(code: bytes, ip: int, bitness: int = 64) -> set[int]:
    import iced_x86  # noqa: PLC0415 (iced-x86 is heavy: loaded when code is decoded)

    return {ins.code for ins in iced_x86.Decoder(bitness, code, ip=ip)}


def features_of_bytes(code: bytes, ip: int = 0, bitness: int = 64) -> tuple[set[str], set[str]]:
    return classify_codes(decode_codes(code, ip, bitness))


# --------------------------------------------------------------------------- constant functions


def x86_constant_return(code: bytes, ip: int) -> tuple[int | None, bool]:
    """(value, frame) of a function that returns a constant in eax: ``mov eax, 1; ret``,
    ``xor eax, eax; ret``, or their -O0 forms with ``push rbp; mov rbp, rsp``.
    value is None when the function does something else."""
    import iced_x86  # noqa: PLC0415 (iced-x86 is heavy: loaded when code is decoded)

    Code = iced_x86.Code
    Reg = iced_x86.Register
    value: int | None = None
    frame = False
    for n, ins in enumerate(iced_x86.Decoder(64, code[:64], ip=ip)):
        if n > 8:
            break
        c = ins.code
        if c == Code.ENDBR64 or ins.mnemonic == iced_x86.Mnemonic.NOP:
            continue
        if c == Code.PUSH_R64 and ins.op0_register == Reg.RBP:
            frame = True
            continue
        if c in (Code.MOV_R64_RM64, Code.MOV_RM64_R64) and ins.op0_register == Reg.RBP:
            continue
        if c == Code.POP_R64 and ins.op0_register == Reg.RBP:
            continue
        if c == Code.LEAVEQ:
            continue
        if c == Code.MOV_R32_IMM32 and ins.op0_register == Reg.EAX:
            value = ins.immediate32
            continue
        if c in (Code.XOR_R32_RM32, Code.XOR_RM32_R32) and ins.op0_register == Reg.EAX and ins.op1_register == Reg.EAX:
            value = 0
            continue
        if c in (Code.RETNQ,):
            return value, frame
        return None, frame
    return None, frame


def arm64_constant_return(code: bytes) -> tuple[int | None, bool]:
    value: int | None = None
    frame = False
    for i in range(0, min(len(code), 48) - 3, 4):
        w = int.from_bytes(code[i : i + 4], "little")
        if (w & 0xFFE0001F) == 0x52800000:  # movz w0, #imm
            value = (w >> 5) & 0xFFFF
        elif w in (0x2A1F03E0,):  # mov w0, wzr
            value = 0
        elif w == 0xD65F03C0:  # ret
            return value, frame
        elif (w & 0xFFC003E0) == 0xA98003E0 or w == 0x910003FD or (w & 0xFF8003FF) == 0xD10003FF:
            frame = True  # stp x29, x30, [sp, #-n]! / mov x29, sp / sub sp, sp, #n
        elif (w & 0xFFC003E0) == 0xA8C003E0 or (w & 0xFF8003FF) == 0x910003FF:
            continue  # ldp ..., [sp], #n / add sp, sp, #n
        elif (w & 0xFFC003FF) == 0xB90003E0 or (w & 0xFFC003FF) == 0xB94003E0:
            frame = True  # str/ldr w0, [sp, #n]: -O0 spills
        else:
            return None, frame
    return None, frame


def symbols_anywhere(img: Image, names: list[str], local: bool = True) -> dict[str, tuple[int, int]]:
    """(address, size) of each name defined in the file, local symbols included: a library's named
    look-ups read only .dynsym, but a module that links llama.cpp in statically and exports only
    its init function keeps ggml's functions in .symtab alone."""
    out = {n: got for n in names if (got := img.symbol(n))}
    todo = [n for n in names if n not in out]
    if todo and local and img.exported_only:
        for tab in img.symtabs:
            if not tab.is_dynsym:
                for n, v in tab.defined_values(todo).items():
                    out.setdefault(n, v)
    return out


def compiled_for(img: Image, arch: str, local: bool = True) -> tuple[dict[str, bool], bool | None]:
    """Features the CPU backend was compiled for, from its ggml_cpu_has_* constants (``local``: in
    .symtab too, for a file that carries the CPU backend without exporting it)."""
    table = _data()["cpu_has"]
    out: dict[str, bool] = {}
    frames: list[bool] = []
    syms = symbols_anywhere(img, [f"ggml_cpu_has_{suffix}" for suffix in table], local)
    for suffix, feat in table.items():
        sym = syms.get(f"ggml_cpu_has_{suffix}")
        if not sym:
            continue
        addr, size = sym
        code = img.read(addr, max(16, min(size or 64, 64)))
        if arch == "x86_64":
            value, frame = x86_constant_return(code, addr)
        elif arch == "aarch64":
            value, frame = arm64_constant_return(code)
        else:
            continue
        if value is None:
            continue  # a run-time check, not a constant
        out[feat] = bool(value)
        frames.append(frame)
    unoptimized = (sum(frames) > len(frames) / 2) if frames else None
    return out, unoptimized


# --------------------------------------------------------------------------- whole analysis


@lru_cache(maxsize=1)
def _hot_patterns() -> list[tuple[bytes, re.Pattern[bytes] | None]]:
    """Each [hot] pattern as (a literal every matching name contains, the regex for the whole name,
    None when the literal is the name's prefix)."""

    out: list[tuple[bytes, re.Pattern[bytes] | None]] = []
    for pat in _data()["hot"]["patterns"]:
        body = pat.lstrip("^")
        pieces = body.split(".*")
        if re.escape(body) == body:  # a plain prefix
            out.append(((b"\x00" + body.encode()), None))
        else:
            anchor = max(pieces, key=len)
            out.append((anchor.encode(), re.compile(body.replace(".*", "[^\\x00]*").encode())))
    return out


def hot_functions(img: Image) -> dict[str, tuple[int, int]]:
    """(address, size) of the CPU backend's hot functions ([hot] patterns), from every symbol table.

    Found with bytes.find on a literal of each pattern (memchr speed over a string table of tens
    of MB), then the name it sits in is checked: a regex over the whole table (with ``.*``
    crossing names, or anchored with a look-behind) took seconds on a big C++ library."""
    out: dict[str, tuple[int, int]] = {}
    full = [t for t in img.symtabs if not t.is_dynsym]
    for tab in full or img.symtabs:  # .symtab holds what .dynsym does, and the local functions
        strtab = tab.strtab
        starts: set[int] = set()
        order: list[int] = []  # pattern order: the decode budget goes to the first patterns first
        for literal, rx in _hot_patterns():
            pos = 0
            while True:
                i = strtab.find(literal, pos)
                if i < 0:
                    break
                pos = i + 1
                start = i + 1 if rx is None else strtab.rfind(b"\x00", 0, i) + 1
                if start in starts:
                    continue
                if rx is not None:
                    end = strtab.find(b"\x00", start)
                    if not rx.match(strtab, start, end if end >= 0 else len(strtab)):
                        continue
                starts.add(start)
                order.append(start)
        for off, info, shndx, value, size in tab.rows_at(order):
            if shndx == 0 or not value or (info & 0xF) not in (2, 10):  # defined FUNC / GNU_IFUNC
                continue
            end = strtab.find(b"\x00", off)
            out.setdefault(bytes(strtab[off:end]).decode("utf-8", "replace"), (value, size))
    return out


def carries_cpu_backend(img: Image, name: str = "", needed: tuple[str, ...] | list[str] = ()) -> bool:
    """Whether the ggml CPU backend is compiled into this file, whatever its name (a monolithic
    libllama.so, an extension module): one of its symbols in any symbol table, local ones
    included, or for a stripped file the source path its assertions leave in .rodata. Files of a
    split build (``name`` or ``needed`` is ggml-base / ggml-cpu) are not searched."""
    cfg = _data()["cpu_backend"]
    split = tuple(cfg["split"])
    if name.startswith(split) or any(n.startswith(split) for n in needed):
        return False
    for tab in img.symtabs:
        if tab.defined_values(list(cfg["symbols"])):  # one pass over the string table for all names
            return True
        if any(tab.has_prefix(prefix.encode()) for prefix in cfg["prefixes"]):
            return True
    if any(not t.is_dynsym for t in img.symtabs):
        return False  # a full symbol table was searched: no need to look at strings
    return any(img.find_in(".rodata", needle.encode(), limit=int(cfg["rodata_limit"])) >= 0 for needle in cfg["rodata"])


def names_carry_cpu_backend(symbols: set[str], name: str = "", needed: tuple[str, ...] | list[str] = ()) -> bool:
    """carries_cpu_backend for a file read through LIEF (Mach-O, PE): from its symbol names
    (Mach-O's leading underscore ignored)."""
    cfg = _data()["cpu_backend"]
    split = tuple(cfg["split"])
    if name.startswith(split) or any(n.startswith(split) for n in needed):
        return False
    want = set(cfg["symbols"])
    prefixes = tuple(cfg["prefixes"])
    return any(s[1:] in want or s in want or s.lstrip("_").startswith(prefixes) for s in symbols)


def module_carries_cpu_backend(path, name: str = "", needed: tuple[str, ...] | list[str] = ()) -> bool:
    """For a Mach-O/PE module whose symbols say nothing (llama.cpp linked in statically, only the
    module's init exported): the ggml source paths its assertions leave in the file."""
    cfg = _data()["cpu_backend"]
    split = tuple(cfg["split"])
    if name.startswith(split) or any(n.startswith(split) for n in needed):
        return False
    return mentions_strings(path, cfg.get("module_strings", []), int(cfg["rodata_limit"]))


def analyze(img: Image, arch: str, *, text: tuple[int, int, int] | None = None, cpu_code: bool = True) -> IsaResult:
    """ISA facts of one file. ``text``: (vaddr, file offset, size) of its code section.

    ``cpu_code`` False: only the cheap constant functions are read (a file whose CPU code
    does not matter, e.g. an executable next to a shared CPU backend)."""
    res = IsaResult()
    if arch not in ("x86_64", "aarch64"):
        return res
    res.compiled_for, res.unoptimized = compiled_for(img, arch, local=cpu_code)
    for feat, on in res.compiled_for.items():
        if on and feat not in _NOT_ISA:
            res.features.add(feat)
    if arch != "x86_64":
        res.how = "ggml_cpu_has_* constants" if res.compiled_for else ""
        return res
    if not cpu_code:
        res.how = "ggml_cpu_has_* constants" if res.compiled_for else "not decoded"
        return res
    cfg = _data()["hot"]
    budget = int(cfg["max_hot_bytes"])
    hot = hot_functions(img)
    codes: set[int] = set()
    nfuncs = 0
    for addr, size in hot.values():  # in [hot] order: the matrix kernels first, until the budget
        if size <= 0 or size > 1 << 20:
            continue
        if res.decoded_bytes + size > budget:
            continue
        code = img.read(addr, size)
        if not code:
            continue
        codes |= decode_codes(code, addr)
        res.decoded_bytes += len(code)
        nfuncs += 1
    if nfuncs:
        res.how = f"decoded {nfuncs} hot functions ({res.decoded_bytes // 1024} KiB)"
    elif text is not None:
        vaddr, off, size = text
        limit = int(cfg["max_text_bytes"])
        chunk = int(cfg["sample_chunk"])
        data = img.data
        if size <= limit:
            codes |= decode_codes(bytes(data[off : off + size]), vaddr)
            res.decoded_bytes = size
            res.how = f"decoded all code ({size // 1024} KiB)"
        else:
            n = max(1, limit // chunk)
            step = size // n
            for i in range(n):
                start = i * step
                codes |= decode_codes(bytes(data[off + start : off + start + chunk]), vaddr + start)
                res.decoded_bytes += chunk
            res.how = f"decoded {n} samples of {chunk // 1024} KiB spread over {size // (1 << 20)} MiB of code"
    feats, detail = classify_codes(codes)
    res.features |= feats
    res.detail |= detail
    if res.compiled_for:
        res.how += ("; " if res.how else "") + "ggml_cpu_has_* constants"
    return res
