"""The named steps of build() and of the cmake run, each on its own (no compiler runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builddoctor.build import builder, cmake_run
from builddoctor.build.settings import LOG_NAME, ProgressEvent
from builddoctor.profiles import BuildPlan


def _run(tmp_path: Path, events: list) -> builder._Run:
    cache = tmp_path / "cache"
    run = builder._Run(BuildPlan(goal="native", backend="cpu"), tmp_path / "src", cache, {}, tmp_path / "lock")
    run.progress, run.key = events.append, "k1"
    return run


def test_a_stop_past_the_lock_keeps_the_log_and_removes_the_temp_folder(tmp_path):
    events: list[ProgressEvent] = []
    run = _run(tmp_path, events)
    run.tmp.mkdir(parents=True)
    (run.tmp / LOG_NAME).write_text("$ cmake ...\nerror: boom\n")
    res = builder._stopped(
        run, builder._Stop("failed", "The compile step failed", announce=True), builder._discard(run)
    )
    assert not run.tmp.exists()
    kept = Path(res.log_path)
    assert kept.parent == run.cache_root / "failed" and kept.name.startswith("k1-")
    assert "error: boom" in kept.read_text()
    assert (res.status, res.build_dir, res.cache_key, res.error) == ("failed", "", "k1", "The compile step failed")
    assert [(e.stage, e.message) for e in events] == [("failed", "failed")]


def test_a_stop_before_the_lock_has_no_log_and_sends_no_event(tmp_path):
    events: list[ProgressEvent] = []
    run = _run(tmp_path, events)
    res = builder._stopped(run, builder._Stop("missing-toolchain", "Missing build prerequisites: ninja."))
    assert res.status == "missing-toolchain" and res.log_path is None and events == []


def test_room_check_refuses_a_disk_without_the_room_asked_for(tmp_path):
    run = _run(tmp_path, [])
    with pytest.raises(builder._Stop) as stop:
        builder._check_room(run, min_free_bytes=1 << 62)  # more than any disk here
    assert stop.value.status == "no-space" and str(run.cache_root) in stop.value.error
    builder._check_room(run, min_free_bytes=0)  # and the cache folder now exists
    assert run.cache_root.is_dir()


def test_outputs_check_names_the_missing_program(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "llama-cli").write_bytes(b"")
    with open(tmp_path / LOG_NAME, "w") as fh:
        log = cmake_run._Log(fh)
        assert cmake_run._check_outputs(tmp_path, ["llama-cli"], log) is None
        status, error = cmake_run._check_outputs(tmp_path, ["llama-cli", "llama-bench"], log)
    assert status == "failed" and "llama-bench is missing" in error
    assert "did not produce llama-bench" in (tmp_path / LOG_NAME).read_text()


def test_ninja_progress_follows_the_biggest_count_and_ignores_other_lines():
    events: list[ProgressEvent] = []
    ninja = cmake_run.NinjaProgress(events.append)
    for line in ("-- Configuring done", "[1/40] Building C object a.o", "[1/2] nested", "\x1b[32m[2/40] b.o\x1b[0m"):
        ninja.line(line)
    assert [(e.done, e.total, e.message) for e in events] == [(1, 40, "Building C object a.o"), (2, 40, "b.o")]
    assert events[0].eta_s is None and events[1].eta_s is not None and events[1].eta_s >= 0
