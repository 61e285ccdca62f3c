"""A small random-weight llama model (GGUF, Q4_0) for smoke-speed benchmarks.

The weights are random (speed does not depend on their values); the tokenizer is the
real one shipped in the pinned tree (``models/ggml-vocab-llama-spm.gguf``), so every
llama.cpp tool loads the file as an ordinary llama model. Models are cached under
``<cache>/models`` keyed by shape and seed, and written atomically (a temp file renamed
into place), so an interrupted generation never leaves a truncated model behind.

``gguf`` and ``numpy`` are imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from builddoctor import errors, paths
from builddoctor.resources import available_memory, free_space

DEFAULT_BYTES = 100 * 1000 * 1000  # ~100 MB
#: the largest model roofline_bytes asks for: the reported cache size is no guide (a VM reports its
#: host's 480 MiB L3, and 4x that made a 2 GB model that took minutes per build); `bench` measures
#: the knee instead (bandwidth.py) and keeps to the same cap
ROOFLINE_MAX = 600 * 1000**2
ROWS_PER_CHUNK = 1024  # weight rows generated and written at a time: memory stays bounded at any size
VOCAB_FILE = "models/ggml-vocab-llama-spm.gguf"
Q4_0_BYTES_PER_WEIGHT = 18 / 32  # 32 weights -> 2-byte scale + 16 bytes of nibbles

#: (largest target size in bytes, n_embd, n_head): wider models for larger targets, so that
#: a big model is a few wide layers rather than hundreds of thin ones (as real models are).
_WIDTHS = (
    (8 * 1000**2, 256, 4),
    (40 * 1000**2, 512, 8),
    (160 * 1000**2, 768, 12),
    (600 * 1000**2, 1024, 16),
    (2500 * 1000**2, 2048, 16),
    (float("inf"), 4096, 32),
)


@dataclass(frozen=True)
class ModelShape:
    n_vocab: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ctx: int = 2048

    @property
    def params(self) -> int:
        d, f = self.n_embd, self.n_ff
        kv = d * self.n_head_kv // self.n_head
        per_layer = 2 * d * d + 2 * d * kv + 3 * d * f
        return 2 * self.n_vocab * d + self.n_layer * per_layer

    @property
    def approx_bytes(self) -> int:
        return int(self.params * Q4_0_BYTES_PER_WEIGHT)


def shape_for_bytes(target_bytes: int, n_vocab: int = 32000) -> ModelShape:
    """A llama shape whose Q4_0 weights take about ``target_bytes``."""
    if target_bytes <= 0:
        raise ValueError("target size must be positive")
    row = next((w for w in _WIDTHS if target_bytes <= w[0]), _WIDTHS[-1])  # the last one past every limit
    _, d, heads = row
    n_ff = ((d * 8 // 3) + 255) // 256 * 256
    per_layer = ModelShape(n_vocab, d, n_ff, 1, heads, heads).params - 2 * n_vocab * d
    budget = target_bytes / Q4_0_BYTES_PER_WEIGHT - 2 * n_vocab * d
    n_layer = max(1, round(budget / per_layer))
    return ModelShape(n_vocab=n_vocab, n_embd=d, n_ff=n_ff, n_layer=n_layer, n_head=heads, n_head_kv=heads)


def roofline_bytes(l3_cache_bytes: int | None) -> int:
    """Model size for a bandwidth-roofline figure: several times the last-level cache (at most ROOFLINE_MAX)."""
    return min(ROOFLINE_MAX, max(DEFAULT_BYTES, 4 * (l3_cache_bytes or 0)))


def check_room(shape: ModelShape, folder: Path) -> None:
    """Refuse (exit 7, "needs X, Y free") a model that the disk holding ``folder`` or the memory
    llama-bench maps it into cannot take, before a byte is written."""
    need = shape.approx_bytes + (16 << 20)
    disk = free_space(folder)
    mem = available_memory()
    for free, where in ((disk, f"free on the disk holding {folder}"), (mem, "of memory available")):
        if free is not None and need > free:
            raise errors.UserError(
                f"The smoke model needs {need / 1e6:,.0f} MB, and only {free / 1e6:,.0f} MB are {where}. "
                "Ask for a smaller one with `--size MB` (or set BUILDDOCTOR_CACHE to a larger disk); "
                "nothing was written.",
                exit_code=errors.NO_SPACE,
            )


def model_path(shape: ModelShape, seed: int, cache_root: Path | None = None) -> Path:
    root = cache_root or (paths.cache_dir() / "models")
    name = (
        f"smoke-llama-v{shape.n_vocab}-d{shape.n_embd}-f{shape.n_ff}-l{shape.n_layer}-h{shape.n_head}-s{seed}-q4_0.gguf"
    )
    return root / name


def ensure_model(
    target_bytes: int = DEFAULT_BYTES,
    *,
    seed: int = 0,
    vocab: Path | None = None,
    cache_root: Path | None = None,
) -> Path:
    """The path of a cached smoke model of about ``target_bytes``, generated if missing. Its
    tokenizer: ``vocab``, else the pinned tree's llama tokenizer, else (no tree here) the probe
    vocabulary: llama-bench feeds random tokens, so a benchmark needs no real tokenizer, and
    `bench` must not need the llama.cpp source."""
    if vocab is not None:
        vocab = Path(vocab)
        if not vocab.is_file():
            raise errors.InputError(f"the tokenizer for the smoke model is missing: {vocab}.")
    elif (paths.vendor_dir() / VOCAB_FILE).is_file():
        vocab = paths.vendor_dir() / VOCAB_FILE
    shape = shape_for_bytes(target_bytes, n_vocab=32000 if vocab is not None else PROBE_SHAPE.n_vocab)
    out = model_path(shape, seed, cache_root)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    check_room(shape, out.parent)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        write_model(tmp, shape, seed=seed, vocab=vocab)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


#: the compute probe's model: a few layers of 128 wide (AMX and AVX-512 kernels take it: every
#: matrix is a whole number of 32-wide blocks), a vocabulary of its own (bytes plus a few words),
#: so that it needs no file from the llama.cpp tree and loads in a few milliseconds.
PROBE_WORDS = (
    "\u2581the",
    "\u2581a",
    "\u2581of",
    "\u2581and",
    "\u2581to",
    "\u2581in",
    "\u2581is",
    "\u2581it",
    "\u2581Hello",
    "\u2581world",
    "\u2581llama",
    "\u2581build",
    "\u2581doctor",
)


def probe_vocab() -> list[tuple[str, float, int]]:
    """(text, score, token type) of a SentencePiece-style vocabulary: unk, BOS, EOS, the 256
    byte-fallback tokens, the word-start marker and a few words (gguf.TokenType values)."""
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)

    toks: list[tuple[str, float, int]] = [
        ("<unk>", 0.0, gguf.TokenType.UNKNOWN),
        ("<s>", 0.0, gguf.TokenType.CONTROL),
        ("</s>", 0.0, gguf.TokenType.CONTROL),
    ]
    toks += [(f"<0x{b:02X}>", 0.0, gguf.TokenType.BYTE) for b in range(256)]
    toks += [("\u2581", -1.0, gguf.TokenType.NORMAL)]
    toks += [(w, -2.0 - i, gguf.TokenType.NORMAL) for i, w in enumerate(PROBE_WORDS)]
    return toks


PROBE_SHAPE = ModelShape(
    n_vocab=len(PROBE_WORDS) + 260, n_embd=128, n_ff=384, n_layer=2, n_head=4, n_head_kv=4, n_ctx=256
)


def ensure_probe_model(cache_root: Path | None = None) -> Path:
    """The compute probe's tiny model (about 0.3 MB), generated once and cached."""
    root = cache_root or (paths.cache_dir() / "models")
    out = root / f"probe-llama-v{PROBE_SHAPE.n_vocab}-d{PROBE_SHAPE.n_embd}-l{PROBE_SHAPE.n_layer}-q4_0.gguf"
    if out.is_file():
        return out
    root.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        write_model(tmp, PROBE_SHAPE, seed=0, vocab=None)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def write_model(path: Path, shape: ModelShape, *, seed: int, vocab: Path | None) -> None:
    """Write a random-weight llama GGUF; ``vocab``: a GGUF whose tokenizer it takes, or None
    for the probe vocabulary (whose size must be ``shape.n_vocab``)."""
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)

    writer = gguf.GGUFWriter(str(path), "llama")
    _add_hparams(writer, shape)
    _add_tokenizer(writer, shape, vocab)
    # the tensors are declared first and written one block of rows at a time (never held whole)
    layout = _declare_tensors(writer, shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    _write_tensors(writer, layout, seed)
    writer.close()


def _add_hparams(writer, shape: ModelShape) -> None:
    """The llama architecture's header keys for ``shape`` (Q4_0 weights)."""
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)

    writer.add_name(f"builddoctor smoke llama {shape.params / 1e6:.0f}M (random weights)")
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(shape.n_vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)


def _add_tokenizer(writer, shape: ModelShape, vocab: Path | None) -> None:
    """The tokenizer keys: the probe vocabulary's, or copied from the ``vocab`` GGUF."""
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)

    if vocab is None:
        toks = probe_vocab()
        if len(toks) != shape.n_vocab:
            raise ValueError(f"the probe vocabulary has {len(toks)} tokens, the shape {shape.n_vocab}")
        writer.add_tokenizer_model("llama")
        writer.add_token_list([t for t, _, _ in toks])
        writer.add_token_scores([s for _, s, _ in toks])
        writer.add_token_types([int(k) for _, _, k in toks])
        writer.add_unk_token_id(0)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_add_bos_token(True)
        return
    reader = gguf.GGUFReader(str(vocab))
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)


def tensor_layout(shape: ModelShape) -> list[tuple[str, int, int]]:
    """(name, rows, cols) of every tensor of a llama of ``shape``, in file order; rows 0: a norm vector."""
    d, f = shape.n_embd, shape.n_ff
    kv = d * shape.n_head_kv // shape.n_head
    out: list[tuple[str, int, int]] = [("token_embd.weight", shape.n_vocab, d)]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", 0, d),
            (p + "attn_q.weight", d, d),
            (p + "attn_k.weight", kv, d),
            (p + "attn_v.weight", kv, d),
            (p + "attn_output.weight", d, d),
            (p + "ffn_norm.weight", 0, d),
            (p + "ffn_gate.weight", f, d),
            (p + "ffn_up.weight", f, d),
            (p + "ffn_down.weight", d, f),
        ]
    return [*out, ("output_norm.weight", 0, d), ("output.weight", shape.n_vocab, d)]


def _declare_tensors(writer, shape: ModelShape) -> list[tuple[str, int, int]]:
    """Declare the tensors (Q4_0 weights, f32 norms) before any data is written; their layout."""
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)
    import numpy as np  # noqa: PLC0415 (numpy is heavy: loaded with gguf)

    layout = tensor_layout(shape)
    for name, rows, cols in layout:
        if rows == 0:
            writer.add_tensor_info(name, (cols,), np.dtype(np.float32), cols * 4)
        else:
            nbytes = rows * (cols // 32) * 18
            writer.add_tensor_info(
                name, (rows, cols // 32 * 18), np.dtype(np.uint8), nbytes, raw_dtype=gguf.GGMLQuantizationType.Q4_0
            )
    return layout


def _write_tensors(writer, layout: list[tuple[str, int, int]], seed: int) -> None:
    """The tensor data: norms of ones, weights random (N(0, 0.02)) and quantized ROWS_PER_CHUNK rows at a time."""
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)
    import numpy as np  # noqa: PLC0415 (numpy is heavy: loaded with gguf)

    rng = np.random.default_rng(seed)
    assert writer.fout is not None  # opened by write_header_to_file
    fout = writer.fout[0]
    for _name, rows, cols in layout:
        writer.write_padding(fout, fout.tell())
        if rows == 0:
            block = np.ones(cols, dtype=np.float32)
            block.tofile(fout)
            nbytes = block.nbytes
        else:
            nbytes = 0
            for r0 in range(0, rows, ROWS_PER_CHUNK):
                n = min(ROWS_PER_CHUNK, rows - r0)
                data = rng.standard_normal((n, cols), dtype=np.float32) * 0.02
                block = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q4_0)
                block.tofile(fout)
                nbytes += block.nbytes
        writer.write_padding(fout, nbytes)


def tensor_bytes(path: Path) -> int:
    """Bytes of tensor data in a GGUF file (the model size llama-bench reports)."""
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)

    reader = gguf.GGUFReader(str(path))
    return int(sum(t.n_bytes for t in reader.tensors))


def bytes_per_token(path: Path) -> int:
    """Weight bytes one generated token reads, for a dense model: every tensor once, except the
    token embedding, of which only the token's own row is read (a lookup, not a product). With
    tied embeddings (no ``output.weight``) the embedding is also the output layer: read whole.
    The KV cache is not counted (a few percent for a short generation): the figure errs low.
    Remembered per file version: reading a GGUF's header (its whole vocabulary) takes seconds,
    and a comparison asks once per run."""
    st = Path(path).stat()
    return _bytes_per_token(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _bytes_per_token(path: str, size: int, mtime_ns: int) -> int:  # noqa: ARG001 - size, mtime: the cache key
    import gguf  # noqa: PLC0415 (gguf is heavy, about 0.3 s: loaded when a model is written or read)

    reader = gguf.GGUFReader(path)
    names = {t.name for t in reader.tensors}
    total = 0
    for t in reader.tensors:
        n = int(t.n_bytes)
        if t.name == "token_embd.weight" and "output.weight" in names:
            rows = int(t.shape[-1]) if len(t.shape) > 1 else 1  # gguf lists ne0 (row length) first
            n = n // max(rows, 1)
        total += n
    return total
