"""The views the commands hand their values to (builddoctor.render.*), each alone, with real values."""

from __future__ import annotations

import io

import click
import pytest

from builddoctor import errors
from builddoctor.bench import Comparison
from builddoctor.build import ProgressEvent, Verification
from builddoctor.cli.build_cmd import _exit, _failure
from builddoctor.console import MAX_ITEMS, Console
from builddoctor.profiles import (
    BenchResult,
    BuildPlan,
    BuildResult,
    CpuProfile,
    GpuProfile,
    MachineProfile,
    Prerequisite,
    Stat,
    ToolInfo,
)
from builddoctor.render import bench as bench_view
from builddoctor.render import machine as machine_view
from builddoctor.render import plan as plan_view
from builddoctor.render.progress import ProgressView, fmt_time

pytestmark = pytest.mark.unit


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _console() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(color=False, stream=stream), stream


@pytest.mark.parametrize(
    ("seconds", "said"), [(None, "?"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (125.9, "2m05s"), (3600, "60m00s")]
)
def test_fmt_time(seconds, said):
    assert fmt_time(seconds) == said


def test_progress_off_a_terminal_says_a_line_every_tenth_and_the_last():
    stream = io.StringIO()
    view = ProgressView(stream)
    for done in range(0, 201):
        view(ProgressEvent(stage="compile", done=done, total=200, elapsed_s=done))
    lines = stream.getvalue().splitlines()
    assert [ln.split("]")[0] for ln in lines] == [f"[{n}/200" for n in range(0, 201, 20)]
    assert lines[-1] == "[200/200] 100% elapsed 3m20s"


def test_progress_on_a_terminal_rewrites_one_line_and_ends_it_before_other_text():
    stream = _Terminal()
    view = ProgressView(stream)
    view(ProgressEvent(stage="compile", done=3, total=10, elapsed_s=5, eta_s=12))
    view(ProgressEvent(stage="compile", done=4, total=10, elapsed_s=6, eta_s=10))
    view(ProgressEvent(stage="waiting", message="another build holds the lock"))
    view(ProgressEvent(stage="compile", done=10, total=10, elapsed_s=20))
    view(ProgressEvent(stage="done"))
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    first, second = text.split("\r")[1:3]
    # padded to 72 columns, over whatever a longer line left there
    assert first.startswith("[#########---------------------] 3/10  30% 5s ETA 12s") and len("\r" + first) == 72
    assert second.endswith("\n") and "another build holds the lock\n" in second  # the bar line ended first


def test_a_disabled_progress_view_writes_nothing():
    stream = _Terminal()
    view = ProgressView(stream, enabled=False)
    view(ProgressEvent(stage="configure", message="-- configuring"))
    view(ProgressEvent(stage="compile", done=1, total=2))
    assert stream.getvalue() == ""


def test_a_long_build_folder_is_cut_from_the_left():
    deep = "/very" * 20 + "/build-avx512"
    name = bench_view.build_name(BenchResult(binary=deep + "/llama-bench"))
    assert len(name) == bench_view.NAME_WIDTH and name.startswith("...") and name.endswith("/build-avx512")
    assert bench_view.build_name(BenchResult(binary="/b/llama-bench")) == "/b"


def test_the_comparison_table_compares_later_builds_and_names_a_failed_one():
    results = [
        BenchResult(binary="/a/llama-bench", pp=Stat(100.0, 1.0), tg=Stat(20.0, 0.5), roofline_fraction=0.5),
        BenchResult(binary="/b/llama-bench", pp=Stat(150.0, 2.0), tg=Stat(22.0, 0.5)),
        BenchResult(binary="/c/llama-bench", error="llama-bench crashed (SIGILL)"),
    ]
    cmp = Comparison(
        results=results,
        pp_ratio=[None, Stat(1.5, 0.03), None],
        tg_ratio=[None, None, None],
        roofline_note="not measured",
    )
    con, stream = _console()
    bench_view.report(cmp, con)
    lines = stream.getvalue().splitlines()
    assert lines[0].split() == ["build", "pp128", "t/s", "tg64", "t/s", "of", "bw", "limit"]
    assert lines[1].split()[-1] == "50%" and lines[2].split()[-1] == "n/a"
    assert lines[3].split() == ["vs", "first", "1.50x", "±", "0.03", "n/a"]  # /b against /a
    assert lines[4].startswith("/c ") and lines[4].endswith("[x] llama-bench crashed (SIGILL)")
    assert lines[5] == "roofline: not measured" and len(lines) == 6


def _result(status: str) -> BuildResult:
    return BuildResult(status=status, plan=BuildPlan(goal="native", backend="cpu"), source_dir="/s", build_dir="/b/k")


@pytest.mark.parametrize(
    ("status", "ver", "code"),
    [
        ("ok", None, None),
        ("cached", Verification(ok=True, remaining=[], findings=[]), None),
        ("ok", Verification(ok=False, remaining=[], findings=[], message="it crashed"), errors.VERIFY_FAILED),
        ("failed", None, errors.BUILD_FAILED),
    ],
)
def test_one_failure_per_build_outcome(status, ver, code):
    failure = _failure(_result(status), ver)
    assert (failure.exit_code if failure else None) == code
    if code == errors.VERIFY_FAILED:
        assert "it crashed" in failure.message and "/b/k/bin" in failure.message


def test_the_one_way_out_exits_quietly_with_json_and_explains_in_text():
    failure = errors.UserError("the build failed", exit_code=errors.BUILD_FAILED)
    ctx = click.Context(click.Command("build"))
    _exit(ctx, None, as_json=True)  # no failure: no exit
    with pytest.raises(click.exceptions.Exit) as got:
        _exit(ctx, failure, as_json=True)
    assert got.value.exit_code == errors.BUILD_FAILED
    with pytest.raises(errors.UserError, match="the build failed"):
        _exit(ctx, failure, as_json=False)


@pytest.mark.parametrize(
    ("prereq", "said"),
    [
        (Prerequisite(name="cmake", kind="tool", status="found", found_version="3.28"), "cmake 3.28"),
        (
            Prerequisite(
                name="nvcc", kind="tool", status="too-new", min_version="12.0", max_version="13", found_version="13.0"
            ),
            "nvcc 13.0 (needs >= 12.0, < 13): too-new",
        ),
        (
            Prerequisite(name="ccache", kind="tool", status="missing", required=False),
            "ccache: missing (optional: the build goes ahead without it)",
        ),
    ],
)
def test_prerequisite_line(prereq, said):
    assert plan_view.prerequisite_line(prereq) == said


def _machine(**kw) -> MachineProfile:
    cpu = CpuProfile(
        arch="x86_64",
        model="Test CPU",
        features=["AVX512BW", "AVX512CD", "AVX2", "AVX512", "AVX512F", "AVX512VL", "AVX512DQ", "SSE3"],
    )
    return MachineProfile(os="linux", arch="x86_64", cpu=cpu, **kw)


def test_machine_view_folds_avx512_and_bounds_the_gpus():
    gpus = [GpuProfile(vendor="nvidia", name=f"GPU {i}", memory_mib=512) for i in range(MAX_ITEMS + 3)]
    con, _ = _console()
    lines = machine_view.lines(_machine(gpus=gpus), con)
    features = next(ln for ln in lines if "features:" in ln).split("features: ")[1].split()
    assert "AVX512" in features and not {"AVX512F", "AVX512BW"} & set(features)
    assert features.index("SSE3") < features.index("AVX2") < features.index("AVX512")  # the table's order
    gpu_lines = [ln for ln in lines if "GPU " in ln]
    assert len(gpu_lines) == MAX_ITEMS and gpu_lines[0].startswith("GPUs     [ok] GPU 0: 512 MiB")
    assert lines[lines.index(gpu_lines[-1]) + 1].strip() == "... and 3 more (`--json` lists 1,000)"


def test_machine_view_labels_only_the_first_tool_and_names_the_missing():
    tools = {
        "cmake": ToolInfo(name="cmake", found=True, path="/usr/bin/cmake", version="3.28"),
        "ninja": ToolInfo(name="ninja", found=True, path="/usr/bin/ninja", version="1.11"),
        "nvcc": ToolInfo(name="nvcc", found=False),
    }
    con, _ = _console()
    lines = machine_view.lines(_machine(toolchains=tools), con)
    lines = [ln for ln in lines[next(i for i, ln in enumerate(lines) if ln.startswith("Tools")) :]]
    assert lines == [
        "Tools    [ok] cmake 3.28  /usr/bin/cmake",
        "         [ok] ninja 1.11  /usr/bin/ninja",
        "         [-] not found: nvcc",
    ]
