"""One case per root cause that ended in exit 70 ("internal error ... a bug"): each must now be a
clear refusal with its own exit code, or a result. Each case failed (exit 70) before its fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from builddoctor import errors
from tests.hostile.conftest import REPO, one_paragraph

CSV_HEAD = "name, memory.total [MiB], compute_cap, driver_version\n"


def _fake_bench(folder, rows: str):
    """A llama-bench stand-in that prints ``rows`` as its JSON result."""
    folder.mkdir()
    exe = folder / "llama-bench"
    exe.write_text(f"#!/bin/sh\ncat <<'JSON'\n{rows}\nJSON\n")
    exe.chmod(0o755)
    return folder


GOOD_ROWS = (
    '[{"n_prompt": 128, "n_gen": 0, "avg_ts": 100.5, "stddev_ts": 1.0, "samples_ts": [100, 101]},'
    ' {"n_prompt": 0, "n_gen": 64, "avg_ts": 20.0, "stddev_ts": 0.5, "samples_ts": [20, 20]}]'
)


@pytest.mark.parametrize("memory, shown", [("1.2.3 MiB", None), ("9" * 400 + " MiB", None), ("81559 MiB", "80 GiB")])
def test_nvidia_smi_memory_that_is_no_number(cli, tmp_path, memory, shown):
    f = tmp_path / "gpus.csv"
    f.write_text(CSV_HEAD + f"NVIDIA H100 80GB HBM3, {memory}, 9.0, 550.54.15\n")
    done = cli("probe", "--nvidia-smi", f)
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if "NVIDIA H100" in ln)
    assert (shown in line) if shown else ("GiB" not in line and "MiB" not in line), line


def test_nvidia_smi_driver_of_5000_digits(cli, tmp_path):
    f = tmp_path / "gpus.csv"
    f.write_text(CSV_HEAD + f"NVIDIA L4, 23034 MiB, 8.9, {'5' * 5000}\n")
    done = cli("probe", "--nvidia-smi", f)
    assert done.returncode == 0, done.stderr
    assert "NVIDIA L4" in done.stdout and "CUDA" not in done.stdout.split("NVIDIA L4")[1].splitlines()[0]
    assert max(len(ln) for ln in done.stdout.splitlines()) < 2100  # the 5000 digits are cut in the report


def _deep(p):
    p.write_text("[" * 100_000 + "]" * 100_000)


def _utf16(p):
    p.write_text('{"schema_version": 1, "os": "linux"}', encoding="utf-16")


def _bigint(p):
    p.write_text('{"schema_version": ' + "1" * 5000 + "}")


def _inf(p):
    p.write_text('{"schema_version": 1, "memory_bytes": 1e400}')


@pytest.mark.parametrize(
    "make, says",
    [
        (_deep, "nests 100000 levels deep"),
        (_utf16, "is UTF-16"),
        (_bigint, "an integer of 5000 digits"),
        (_inf, "too large for a float"),
    ],
)
@pytest.mark.parametrize("command", [["recipe"], ["flags", "-DGGML_CUDA=ON"], ["probe"], ["check", "--no-run"]])
def test_hostile_profile_json_one_reader_for_all(cli, tmp_path, make, says, command):
    f = tmp_path / "machine.json"
    make(f)
    done = cli(*command, "--profile", f)
    assert done.returncode == errors.USAGE
    msg = one_paragraph(done)
    assert str(f) in msg and says in msg and "probe --json" in msg


def test_path_over_255_characters(cli, tmp_path):
    done = cli("check", "--no-run", tmp_path / ("a" * 300))
    assert done.returncode == errors.USAGE
    assert "too long" in one_paragraph(done)


def test_probe_with_stdout_closed(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), BUILDDOCTOR_CACHE=str(tmp_path / "c"))
    done = subprocess.run(
        [sys.executable, "-m", "builddoctor", "probe"],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == errors.USAGE, done.stderr
    assert "standard output is closed" in done.stderr and "Traceback" not in done.stderr


def test_llama_bench_json_with_wrong_types_costs_that_build_only(cli, tmp_path):
    good = _fake_bench(tmp_path / "good", GOOD_ROWS)
    bad = _fake_bench(tmp_path / "bad", '[{"n_prompt": "128", "n_gen": 0, "avg_ts": "fast", "samples_ts": 3}]')
    done = cli("bench", "--size", "1", "--no-bandwidth", "--rounds", "1", good, bad, timeout=300)
    assert done.returncode == errors.BENCH_FAILED, done.stderr
    rows = {ln.split()[0].rsplit("/", 1)[-1]: ln for ln in done.stdout.splitlines()[1:]}
    assert "100.5" in rows["good"] and "20.0" in rows["good"]
    assert "no readable result (row 0: samples_ts is int, not a list)" in rows["bad"]


def test_check_timeout_nan(cli, sse_build):
    done = cli("check", "--timeout", "nan", sse_build)
    assert done.returncode == errors.USAGE
    assert "Invalid value for '--timeout': 'nan' is not a finite number" in done.stderr


def test_bench_size_nan(cli, tmp_path):
    done = cli("bench", "--size", "nan", "--no-bandwidth", _fake_bench(tmp_path / "b", GOOD_ROWS))
    assert done.returncode == errors.USAGE
    assert "Invalid value for '--size': 'nan' is not a finite number" in done.stderr


def test_cache_folder_that_cannot_be_made(cli, tmp_path):
    """A cache under a regular file (ENOTDIR, root or not) and one under /proc (ENOENT)."""
    (tmp_path / "a-file").write_text("x")
    bench = _fake_bench(tmp_path / "b", GOOD_ROWS)
    for cache in (tmp_path / "a-file" / "cache", "/proc/builddoctor-test/cache"):
        done = cli("bench", "--size", "1", "--no-bandwidth", bench, BUILDDOCTOR_CACHE=cache)
        assert done.returncode == errors.FILE_ACCESS, done.stderr
        msg = one_paragraph(done)
        assert "Cannot use" in msg and "BUILDDOCTOR_CACHE" in msg


def test_read_only_home(cli, tmp_path):
    """HOME on a read-only file system (sysfs refuses a new folder to root and to users alike)."""
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no /sys here")
    env = {"HOME": "/sys/kernel", "BUILDDOCTOR_CACHE": "", "XDG_CACHE_HOME": ""}
    done = cli("bench", "--size", "1", "--no-bandwidth", _fake_bench(tmp_path / "b", GOOD_ROWS), **env)
    assert done.returncode == errors.FILE_ACCESS, done.stderr
    assert "/sys/kernel/.cache" in one_paragraph(done)


def test_ascii_console(cli, sse_build):
    done = cli("check", "--no-run", sse_build, PYTHONIOENCODING="ascii")
    assert done.returncode in (errors.OK, errors.PROBLEMS), done.stderr
    assert "[!]" in done.stdout or "[ok]" in done.stdout
    done.stdout.encode("ascii")


def test_nvidia_smi_csv_field_over_the_csv_limit(cli, tmp_path):
    f = tmp_path / "gpus.csv"
    f.write_text('"' + "x" * 200_000 + '"\n')  # one quoted field beyond csv's 128 KiB field limit
    done = cli("probe", "--nvidia-smi", f)
    assert done.returncode == errors.USAGE
    assert "not nvidia-smi CSV output (field larger than field limit" in one_paragraph(done)


@pytest.mark.parametrize("driver, cc", [("5" * 5000, "9.0"), ("550.54.15", "9" * 5000 + ".0")])
def test_recipe_for_a_gpu_with_a_5000_digit_version(cli, tmp_path, driver, cc):
    """The resolver compares the driver with CUDA's minimum: a 5000-digit number is no version."""
    f = tmp_path / "gpus.csv"
    f.write_text(CSV_HEAD + f"NVIDIA H100 80GB HBM3, 81559 MiB, {cc}, {driver}\n")
    done = cli(
        "recipe",
        "--backend",
        "cuda",
        "--cpuinfo",
        REPO / "tests/fixtures/cpuinfo/zen4-ryzen9-7950x.txt",
        "--nvidia-smi",
        f,
    )
    assert done.returncode == 0, done.stderr
    assert "CMAKE_CUDA_ARCHITECTURES=90" in done.stdout  # the name table gives 9.0 when the file's is absurd
