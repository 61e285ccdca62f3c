"""The run of cmake: configure, then compile with progress from ninja's lines, into one log.

Each step returns None when it went well, else ``(status, error)``: the status a failed build
gets and the lines of the log that say why.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from builddoctor import proc
from builddoctor.build.commands import compile_command, configure_command
from builddoctor.build.settings import BUILD_TIMEOUT, CONFIGURE_TIMEOUT, ProgressEvent, ProgressFn, data, uses_cuda
from builddoctor.profiles import BuildPlan

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NINJA = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)$")

Failure = tuple[str, str]


def relevant_error_lines(text: str, *, before: int = 2, after: int = 3, limit: int = 40) -> str:
    """The lines of a build log that say what went wrong, with a little context."""
    markers = data()["classify"]["error_markers"]
    lines = [_ANSI.sub("", ln) for ln in text.splitlines()]
    keep: set[int] = set()
    for i, ln in enumerate(lines):
        if any(m in ln for m in markers):
            keep.update(range(max(0, i - before), min(len(lines), i + after + 1)))
    if not keep:
        picked = [ln for ln in lines if ln.strip()][-15:]
    else:
        # ninja's progress lines are noise around an error
        picked = [lines[i] for i in sorted(keep) if not _NINJA.match(lines[i])]
        # the first errors are the cause; later ones are usually consequences
        picked = picked[:limit]
    return "\n".join(ln if len(ln) <= 400 else ln[:400] + " ..." for ln in picked)


def classify_failure(text: str) -> str:
    cls = data()["classify"]
    if any(m in text for m in cls["no_space"]):
        return "no-space"
    if any(m in text for m in cls["missing_toolchain"]):
        return "missing-toolchain"
    return "failed"


class _EtaWeights:
    """The ETA of a CUDA build: nvcc steps weigh ``cuda_step_weight`` C/C++ steps (data/build.toml), and
    how many there are is read from build.ninja, so the C++ files that go first do not make it run low."""

    def __init__(self, bdir: Path):
        cfg = data().get("progress", {})
        self.weight = float(cfg.get("cuda_step_weight", 1))
        self.message = cfg.get("cuda_message", "Building CUDA object")
        try:
            text = (bdir / "build.ninja").read_text(errors="replace")
        except OSError:
            text = ""
        self.cuda_total = len(re.findall(r"^build \S+" + cfg.get("cuda_step", r"\.cu\.o: CUDA_COMPILER"), text, re.M))
        self.cuda_done = 0

    def left(self, done: int, total: int, message: str, elapsed: float) -> float | None:
        if self.message in message:
            self.cuda_done += 1
        cuda_total = min(self.cuda_total, total)
        cuda_done = min(self.cuda_done, cuda_total, done)
        units_done = (done - cuda_done) + self.weight * cuda_done
        units_total = (total - cuda_total) + self.weight * cuda_total
        if done <= 1 or units_done <= 1:
            return None
        return elapsed / (units_done - 1) * max(0.0, units_total - units_done)


@dataclass
class _Log:
    """The build log: every line as the terminal would show it, colours stripped."""

    fh: TextIO

    def write(self, line: str) -> None:
        self.fh.write(_ANSI.sub("", line) + "\n")

    def flush(self) -> None:
        self.fh.flush()


@dataclass
class NinjaProgress:
    """ninja's ``[N/M] message`` lines as compile progress events, with an ETA from the rate so far."""

    emit: ProgressFn
    eta: _EtaWeights | None = None  # a CUDA build's weighted ETA; None: every step weighs the same
    started: float = field(default_factory=time.monotonic)
    biggest: int = 0
    first_done: float | None = None

    def line(self, line: str) -> None:
        m = _NINJA.match(_ANSI.sub("", line))
        if not m:
            return
        done, total = int(m.group(1)), int(m.group(2))
        # a nested build (the Vulkan shader generator is an ExternalProject) prints its
        # own [n/total] lines through ours: follow the biggest one, the top level
        if total < self.biggest:
            return
        if total > self.biggest:
            self.biggest = total
            self.first_done = None  # the rate so far was the nested build's
        now = time.monotonic()
        if self.first_done is None:
            self.first_done = now
        left = None
        if self.eta is not None:
            left = self.eta.left(done, total, m.group(3), now - self.first_done)
        elif done > 1:
            left = (now - self.first_done) / (done - 1) * (total - done)
        self.emit(
            ProgressEvent(
                "compile", done=done, total=total, eta_s=left, elapsed_s=now - self.started, message=m.group(3)
            )
        )


def configure_and_compile(
    plan: BuildPlan,
    source_dir: Path,
    bdir: Path,
    env: dict[str, str],
    jobs: int,
    timeout: float | None,
    log_file: Path,
    emit: ProgressFn,
    targets: list[str],
) -> tuple[str, str | None]:
    """Configure and compile ``plan`` in ``bdir`` within ``timeout`` seconds (None: ``compile_limit``,
    sized from the configured tree): ("ok", None) or the failure."""
    started = time.monotonic()
    with open(log_file, "w", encoding="utf-8") as fh:
        log = _Log(fh)
        bad = _configure(plan, source_dir, bdir, env, timeout or CONFIGURE_TIMEOUT, log, emit)
        if bad is None:
            limit = timeout if timeout is not None else compile_limit(plan, bdir)
            bad = _compile(plan, bdir, env, jobs, (started + limit, limit), log, emit) or _check_outputs(
                bdir, targets, log
            )
    return bad or ("ok", None)


def compile_limit(plan: BuildPlan, bdir: Path) -> float:
    """The build's time limit when the caller names none: BUILD_TIMEOUT, plus an allowance for each
    nvcc step the configured tree holds (data/build.toml [progress] cuda_step_limit_s): a cold CUDA
    build of ggml-cuda on 2 cores runs past an hour, and stopping it there loses the work."""
    if not uses_cuda(plan):
        return BUILD_TIMEOUT
    per_step = float(data().get("progress", {}).get("cuda_step_limit_s", 0))
    return BUILD_TIMEOUT + per_step * _EtaWeights(bdir).cuda_total


def _configure(plan, source_dir: Path, bdir: Path, env, timeout: float, log: _Log, emit: ProgressFn) -> Failure | None:
    argv = configure_command(plan, source_dir, bdir, env)
    log.write("$ " + " ".join(argv))
    log.flush()
    emit(ProgressEvent("configure", message="cmake configure"))
    res = proc.stream(argv, timeout=min(timeout, CONFIGURE_TIMEOUT), on_line=log.write, env=env)
    log.flush()
    return _step_failure(res, "configure", timeout)


def _compile(plan, bdir: Path, env, jobs: int, limit: tuple[float, float], log: _Log, emit) -> Failure | None:
    """``limit``: (the deadline on the monotonic clock, the whole build's time limit in seconds)."""
    deadline, timeout = limit
    argv = compile_command(plan, bdir, jobs)
    log.write("$ " + " ".join(argv))
    ninja = NinjaProgress(emit, _EtaWeights(bdir) if uses_cuda(plan) else None)

    def on_line(line: str) -> None:
        log.write(line)
        ninja.line(line)

    res = proc.stream(argv, timeout=max(1.0, deadline - time.monotonic()), on_line=on_line, env=env)
    log.flush()
    return _step_failure(res, "compile", timeout)


def _check_outputs(bdir: Path, targets: list[str], log: _Log) -> Failure | None:
    """A build that exits 0 without a program it was asked for still failed."""
    missing = [t for t in targets if not (bdir / "bin" / t).is_file()]
    if not missing:
        return None
    log.write(f"builddoctor: error: the build finished but did not produce {', '.join(missing)}")
    return "failed", f"The build finished but {', '.join(missing)} is missing from {bdir / 'bin'}."


def _step_failure(res: proc.Completed, step: str, timeout: float) -> Failure | None:
    if res.ok:
        return None
    if res.error:
        return "missing-toolchain", f"could not run {res.argv[0]}: {res.error}"
    if res.timed_out:
        return "failed", f"The {step} step ran past its time limit ({timeout:.0f} s) and was stopped."
    status = classify_failure(res.output)
    lines = relevant_error_lines(res.output)
    how = f"died from {res.signal}" if res.signal else f"exit code {res.returncode}"
    return status, f"The {step} step failed ({how}):\n{lines}"
