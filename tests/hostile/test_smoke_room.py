"""The smoke model against the room it needs: clamped, checked before a byte is written, streamed."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from builddoctor import errors, smoke_model
from tests.hostile import programs

REPO = Path(__file__).resolve().parents[2]
MACHINE = REPO / "tests" / "fixtures" / "machines" / "this-machine.json"


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True, timeout=10
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], timeout=10)


def _limit_memory() -> None:  # in the child: the old in-memory generation fails fast instead of filling the host
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def bench(*args, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", "bench", "--no-bandwidth", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        preexec_fn=_limit_memory,
        env={**os.environ, "BUILDDOCTOR_CACHE": str(cache)},
    )


def test_absurd_recorded_cache_size_ends_in_exit_7(den, tmp_path, small_disk):
    exe = programs.make(den, "HOME_TOUCH", "llama-bench")
    profile = json.loads(MACHINE.read_text())
    profile["cpu"]["l3_cache_bytes"] = 10**21  # asks for a model of 4x10^15 MB
    path = tmp_path / "absurd.json"
    path.write_text(json.dumps(profile))
    done = bench("--profile", path, exe, cache=small_disk)
    assert done.returncode == errors.NO_SPACE, done.stderr[-2000:]
    m = re.search(r"needs ([\d,]+) MB, and only ([\d,]+) MB are free", done.stderr)
    assert m, done.stderr
    assert int(m.group(1).replace(",", "")) <= smoke_model.ROOFLINE_MAX / 1e6 * 1.01, "the size was clamped"
    assert "Traceback" not in done.stderr
    assert not [p for p in small_disk.rglob("*") if p.is_file()], "nothing was written"


def test_explicit_size_larger_than_the_disk_ends_in_exit_7(den, small_disk):
    exe = programs.make(den, "HOME_TOUCH", "llama-bench")
    done = bench("--size", "50", exe, cache=small_disk)
    assert done.returncode == errors.NO_SPACE, done.stderr[-2000:]
    assert "needs" in done.stderr and "MB are free on the disk holding" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3


def test_model_is_written_in_bounded_memory(tmp_path):
    """A 170 MB model (the probe vocabulary, 24 wide layers) is generated tensor block by block: the
    memory Python and numpy allocate (tracemalloc, which numpy reports to) peaks far below the model's
    size. (The process's RSS is no measure here: it moved from 71 to 204 MiB with what else the machine
    was doing, while the allocations did not.)"""
    code = (
        "import sys, tracemalloc; from pathlib import Path; from builddoctor import smoke_model as sm; "
        "s = sm.ModelShape(n_vocab=sm.PROBE_SHAPE.n_vocab, n_embd=1024, n_ff=2816, n_layer=24, n_head=16, "
        "n_head_kv=16); tracemalloc.start(); sm.write_model(Path(sys.argv[1]), s, seed=0, vocab=None); "
        "print(s.approx_bytes, tracemalloc.get_traced_memory()[1])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m.gguf")], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-2000:]
    size, peak = map(int, out.stdout.split())
    assert (tmp_path / "m.gguf").stat().st_size >= size
    assert peak < size * 0.25, f"{peak / 1e6:.0f} MB allocated at the peak to write {size / 1e6:.0f} MB"
