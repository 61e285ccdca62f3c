"""builddoctor.bench and builddoctor.smoke_model: llama-bench runs, crashes, bandwidth, the model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builddoctor import bandwidth, bench, smoke_model
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
    assert list((tmp_path / "tools").glob("bw-sweep-*")), "the C kernel was compiled and cached"


def test_numpy_bandwidth_fallback():
    assert 0.5 < bench._numpy_bandwidth(1, 128 << 20, 2) < 2000.0


def _curve(*pairs):
    """A curve given as (MiB, GB/s) pairs."""
    return [bandwidth.Point(m << 20, g) for m, g in pairs]


def test_knee_of_a_recorded_sweep_on_a_loaded_machine():
    sw = bandwidth.parse_sweep((FIXTURES / "bw-sweep-kvm-xeon-amx-2t-loaded.txt").read_text(), threads=2)
    assert sw.error is None and len(sw.points) == 11
    assert bandwidth.knee(sw.points) == 32 << 20  # 16 MiB still reads faster than memory's plateau
    got = bandwidth.choose_size(sw, default=100_000_000)
    assert got.roofline and got.model_bytes == 100_000_000 and got.knee_bytes == 32 << 20  # 2x 32 MiB < 100 MB
    assert 2.0 < got.bandwidth_gbs < 4.0
    assert not bandwidth.roofline_check(50_000_000, sw).roofline  # under 2x the knee: in the caches
    assert bandwidth.roofline_check(300_000_000, sw).roofline


def test_no_plateau_and_a_knee_past_the_cap_say_not_measured():
    falling = _curve((1, 90), (4, 80), (16, 70), (64, 60), (256, 45), (1024, 30))
    assert bandwidth.knee(falling) is None
    got = bandwidth.choose_size(bandwidth.Sweep(threads=2, points=falling), default=100_000_000)
    assert not got.roofline and got.model_bytes == 100_000_000 and got.why.startswith("not measured: ")
    big_cache = _curve((1, 90), (16, 85), (64, 80), (256, 70), (512, 20), (1024, 19), (2048, 20), (4096, 19))
    assert bandwidth.knee(big_cache) == 512 << 20
    got = bandwidth.choose_size(bandwidth.Sweep(threads=2, points=big_cache), default=100_000_000, cap=600_000_000)
    assert not got.roofline and "over the 600 MB cap" in got.why and got.knee_bytes == 512 << 20
    flat = _curve((1, 20), (2, 20), (4, 20), (8, 20))  # no faster cache seen at all
    assert bandwidth.knee(flat) is None


def test_one_slow_size_under_load_does_not_move_the_knee():
    dip = _curve((1, 40), (2, 40), (4, 38), (8, 12), (16, 10), (32, 4), (64, 10), (128, 10), (256, 11), (512, 10))
    assert bandwidth.knee(dip) == 8 << 20


@pytest.mark.parametrize("text", ["", "1048576", "x 3.0", "1048576 -2", "0 5.0", "1048576 nan"])
def test_unreadable_sweep_output_is_an_error(text):
    assert bandwidth.parse_sweep(text, threads=1).error


def test_sweep_here_has_one_point_per_size(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDDOCTOR_CACHE", str(tmp_path))
    sw = bandwidth.sweep(1, largest=16 << 20, smallest=1 << 20)
    assert sw.error is None
    assert [p.bytes for p in sw.points] == [1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20]
    assert all(0.1 < p.gbs < 5000 for p in sw.points)


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
    res = bench.run_bench(
        bin_dir / "llama-bench", small_model, threads=2, ngl=0, pp=32, tg=16, reps=2, bandwidth_gbs=30.0
    )
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


@pytest.mark.slow
def test_default_bench_prints_a_real_roofline_or_says_why_not(tmp_path):
    """`builddoctor bench` with no size: the model is sized by the measured knee, and its last line
    is either a roofline past that knee or "not measured: <why>" (which one depends on the host)."""
    import re
    import sys

    from builddoctor import proc
    from tests.llama_builds import BuildUnavailable, ensure_build

    try:
        bin_dir = ensure_build("planned")
    except BuildUnavailable as exc:
        pytest.skip(str(exc))
    done = proc.run(
        [sys.executable, "-m", "builddoctor", "bench", "-r", "1", str(bin_dir)],
        timeout=600,
        extra_env={"BUILDDOCTOR_HOME": str(tmp_path / "home")},
    )
    assert done.ok, done.output[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("roofline: "), done.stdout
    row = next(ln for ln in done.stdout.splitlines() if ln.startswith(str(bin_dir)[:20]))
    if last.startswith("roofline: not measured: "):
        assert row.rstrip().endswith("n/a")  # no fraction printed beside a model the caches hold
    else:
        assert "past the measured cache knee" in last and re.search(r"\d+%$", row.rstrip())
