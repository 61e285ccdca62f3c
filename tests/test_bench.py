"""builddoctor.bench and builddoctor.smoke_model: llama-bench runs, crashes, bandwidth, the model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builddoctor import bench, smoke_model
from builddoctor.source import ensure_source  # the pinned tree, fetched once if missing

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


# --------------------------------------------------------------------------- parsing


def test_parse_recorded_llama_bench_json():
    # recorded from the pinned llama-bench (native build here) with -o json: see fixtures/bench/README.md
    text = (FIXTURES / "llama-bench-native.json").read_text()
    rows = bench.parse_bench_json("some log line\n" + text)
    assert {r["n_prompt"] for r in rows} == {128, 0}
    pp = next(r for r in rows if r["n_prompt"])
    assert pp["avg_ts"] > 0 and len(pp["samples_ts"]) == 3


def test_roofline_fraction():
    # 100 tokens/s reading 150 MB each = 15 GB/s; against 30 GB/s that is half the limit
    assert bench.roofline_fraction(100.0, 150_000_000, 30.0) == pytest.approx(0.5)


# --------------------------------------------------------------------------- failing benchmarks


def _compile(tmp_path: Path, name: str, body: str) -> Path:
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    folder = tmp_path / name
    folder.mkdir()
    src = folder / "main.c"
    src.write_text(body)
    exe = folder / "llama-bench"
    subprocess.run(["cc", "-O0", str(src), "-o", str(exe)], check=True, timeout=60)
    return exe


CRASH = """
#include <signal.h>
#include <stdio.h>
int main(void) { fprintf(stderr, "llama_model_load: loading model\\n"); raise(SIGSEGV); return 0; }
"""
HANG = "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n"
GARBAGE = '#include <stdio.h>\nint main(void) { puts("not json at all"); return 0; }\n'


def test_crashing_llama_bench_is_a_clear_error(tmp_path):
    exe = _compile(tmp_path, "crash", CRASH)
    res = bench.run_bench(exe, tmp_path / "m.gguf", threads=1, ngl=0)
    assert res.error and "SIGSEGV" in res.error and "loading model" in res.error
    assert res.pp is None and res.tg is None


def test_hanging_llama_bench_is_stopped(tmp_path):
    exe = _compile(tmp_path, "hang", HANG)
    res = bench.run_bench(exe, tmp_path / "m.gguf", threads=1, ngl=0, timeout=2)
    assert res.error and "did not finish within 2 s" in res.error


def test_unreadable_output_is_an_error(tmp_path):
    exe = _compile(tmp_path, "garbage", GARBAGE)
    res = bench.run_bench(exe, tmp_path / "m.gguf", threads=1, ngl=0)
    assert res.error and "no readable result" in res.error


def test_compare_reports_the_crashing_build(tmp_path):
    exe = _compile(tmp_path, "crash", CRASH)
    cmp = bench.compare([exe, exe], tmp_path / "m.gguf", rounds=2, threads=1)
    assert all(r.error for r in cmp.results)
    assert cmp.pp_ratio == [None, None]


def test_find_llama_bench(tmp_path):
    exe = _compile(tmp_path, "b", GARBAGE)
    (exe.parent / "llama-cli").write_text("")
    assert bench.find_llama_bench(exe) == exe
    assert bench.find_llama_bench(exe.parent / "llama-cli") == exe
    assert bench.find_llama_bench(exe.parent) == exe
    assert bench.find_llama_bench(tmp_path) is None


def test_gpu_backend_from_library_names(tmp_path):
    exe = _compile(tmp_path, "b", GARBAGE)
    (exe.parent / "libggml-cpu.so").write_bytes(b"")
    assert not bench.has_gpu_backend(exe)
    (exe.parent / "libggml-cuda.so").write_bytes(b"")
    assert bench.has_gpu_backend(exe)


# --------------------------------------------------------------------------- bandwidth


def test_memory_bandwidth_is_plausible(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path))
    gbs = bench.memory_bandwidth(threads=1, size_bytes=256 << 20, reps=3)
    assert 1.0 < gbs < 2000.0
    assert list((tmp_path / "tools").glob("bw-read-*")), "the C kernel was compiled and cached"


def test_numpy_bandwidth_fallback():
    assert 0.5 < bench._numpy_bandwidth(1, 128 << 20, 2) < 2000.0


# --------------------------------------------------------------------------- smoke model


def test_shape_for_bytes_hits_the_target():
    for target in (50e6, 100e6, 134e6, 400e6):
        shape = smoke_model.shape_for_bytes(int(target))
        assert abs(shape.approx_bytes - target) / target < 0.1
        assert shape.n_embd % 32 == 0 and shape.n_ff % 32 == 0
    assert smoke_model.roofline_bytes(32 << 20) == 128 << 20
    assert smoke_model.roofline_bytes(None) == smoke_model.DEFAULT_BYTES


def _vocab() -> Path:
    vocab = ensure_source() / smoke_model.VOCAB_FILE
    return vocab


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    _vocab()
    root = tmp_path_factory.mktemp("models")
    return smoke_model.ensure_model(8_000_000, cache_root=root)


def test_smoke_model_is_a_llama_gguf(small_model):
    import gguf

    reader = gguf.GGUFReader(str(small_model))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == 32000
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.Q4_0
    assert types["output_norm.weight"] == gguf.GGMLQuantizationType.F32
    # cached: asking again returns the same file without rewriting it
    mtime = small_model.stat().st_mtime_ns
    again = smoke_model.ensure_model(8_000_000, cache_root=small_model.parent)
    assert again == small_model and again.stat().st_mtime_ns == mtime
    assert not list(small_model.parent.glob(".*tmp*"))


def test_bytes_per_token_reads_one_embedding_row(small_model):
    """A generated token reads every weight but only its own row of the token embedding."""
    shape = smoke_model.shape_for_bytes(8_000_000)
    row = shape.n_embd * 18 // 32  # one Q4_0 row: 32 weights in 18 bytes
    embd = shape.n_vocab * row
    assert smoke_model.bytes_per_token(small_model) == smoke_model.tensor_bytes(small_model) - embd + row


def test_bytes_per_token_with_tied_embeddings(tmp_path):
    """No output.weight: the embedding is the output layer too, read whole every token."""
    import gguf
    import numpy as np

    def write(path, names):
        w = gguf.GGUFWriter(str(path), "llama")
        for name in names:
            w.add_tensor(name, np.zeros((100, 64), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    tied, untied = tmp_path / "tied.gguf", tmp_path / "untied.gguf"
    write(tied, ["token_embd.weight", "blk.0.ffn_up.weight"])
    write(untied, ["token_embd.weight", "blk.0.ffn_up.weight", "output.weight"])
    assert smoke_model.bytes_per_token(tied) == 2 * 100 * 64 * 4
    assert smoke_model.bytes_per_token(untied) == (64 + 2 * 100 * 64) * 4


@pytest.mark.slow
def test_smoke_model_loads_in_llama_bench(small_model):
    from tests.llama_builds import BuildUnavailable, ensure_build

    try:
        bin_dir = ensure_build("planned")
    except BuildUnavailable as exc:
        pytest.skip(str(exc))
    res = bench.run_bench(bin_dir / "llama-bench", small_model, threads=2, ngl=0, pp=32, tg=16, reps=2,
                          bandwidth_gbs=30.0)
    assert res.error is None, res.error
    assert res.pp.mean > 0 and res.tg.mean > 0 and res.pp.n == 2
    assert res.model_bytes == smoke_model.tensor_bytes(small_model)
    assert res.bytes_per_token == smoke_model.bytes_per_token(small_model) < res.model_bytes
    assert res.roofline_fraction == pytest.approx(res.tg.mean * res.bytes_per_token / 30e9)


@pytest.mark.slow
def test_compare_same_build_is_about_even(small_model):
    from tests.llama_builds import BuildUnavailable, ensure_build

    try:
        exe = ensure_build("planned") / "llama-bench"
    except BuildUnavailable as exc:
        pytest.skip(str(exc))
    cmp = bench.compare([exe, exe], small_model, rounds=2, reps=2, threads=2)
    assert not any(r.error for r in cmp.results)
    assert cmp.pp_ratio[0].mean == pytest.approx(1.0)
    # the same program against itself: about 1, within the noise of a shared 2-core machine
    assert 0.3 < cmp.tg_ratio[1].mean < 3.0 and cmp.tg_ratio[1].n == 2
    json.dumps(cmp.to_dict())
