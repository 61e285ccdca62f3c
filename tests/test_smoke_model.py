"""The generated smoke model: the file llama.cpp reads has the tensors the layout says, in its order."""

from __future__ import annotations

import gguf

from builddoctor import smoke_model


def test_written_tensors_are_the_layout(tmp_path):
    shape = smoke_model.PROBE_SHAPE
    path = tmp_path / "probe.gguf"
    smoke_model.write_model(path, shape, seed=1, vocab=None)
    reader = gguf.GGUFReader(str(path))
    got = [(t.name, int(t.n_elements)) for t in reader.tensors]
    want = [(name, (rows or 1) * cols) for name, rows, cols in smoke_model.tensor_layout(shape)]
    assert got == want
    assert len(got) == 3 + 9 * shape.n_layer
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert kinds["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert kinds["blk.1.ffn_down.weight"] == gguf.GGMLQuantizationType.Q4_0
    assert reader.fields["llama.block_count"].contents() == shape.n_layer
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == shape.n_vocab


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    a, b, c = (tmp_path / f"{n}.gguf" for n in "abc")
    for p, seed in ((a, 5), (b, 5), (c, 6)):
        smoke_model.write_model(p, smoke_model.PROBE_SHAPE, seed=seed, vocab=None)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
