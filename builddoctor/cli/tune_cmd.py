"""`builddoctor tune`: build the candidate variants, measure them against the plan, keep the fastest."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.options import json_option
from builddoctor.console import safe_text


def _stat(s) -> str:
    return f"{s.mean:7.1f} ± {s.stddev:4.1f}" if s else f"{'':>7}   {'':>4}"


def _vs(c) -> str:
    if c.name == "plain":
        return "1.00x"
    if c.score is None:
        return ""
    iv = f" [{c.low:.2f}-{c.high:.2f}]" if c.low is not None else ""
    return f"{c.score.mean:.2f}x{iv}"


def table_lines(res, *, final: bool = False, bars: bool = False) -> list[str]:
    """The table of candidates: live (in data order) or final (sorted by the objective, a bar each)."""
    from builddoctor.tune import sort_key

    rows = sorted(res.candidates, key=sort_key(res.objective)) if final else res.candidates
    head = f"{'candidate':<14} {'build s':>8} {'pp t/s':>14} {'tg t/s':>14} {'vs plain':>18}  status"
    out = [head]
    top = max((c.score.mean for c in rows if c.score), default=1.0)
    for c in rows:
        build_s = "" if c.build_s is None else (f"{c.build_s:.0f}" + ("c" if c.build_status == "cached" else ""))
        status = (
            c.status
            + (f": {c.reason}" if c.reason and c.status not in ("measured", "winner", "measuring") else "")
            + (f" ({c.note})" if c.note else "")
        )
        line = f"{c.name:<14} {build_s:>8} {_stat(c.pp):>14} {_stat(c.tg):>14} {_vs(c):>18}  {status}"
        if bars and (c.score or c.name == "plain"):
            ratio = c.score.mean if c.score else 1.0
            line += "\n" + " " * 15 + "#" * max(1, round(30 * ratio / max(top, 1.0)))
        out.append(line if len(line) < 400 else line[:397] + "...")
    return out


def _mmss(seconds: float) -> str:
    m, sec = divmod(int(max(0.0, seconds)), 60)
    return f"{m}m{sec:02d}s"


def progress_line(res, width: int = 20) -> str:
    """Where the tune stands: phase, builds done, runs, time spent of the budget, time left at most."""
    todo = [c for c in res.candidates if c.plan is not None or c.status in ("building", "built", "measuring")]
    built = [c for c in todo if c.build_status in ("ok", "cached")]
    frac = min(1.0, res.elapsed_s / res.budget_s) if res.budget_s else 0.0
    bar = "#" * round(width * frac) + "-" * (width - round(width * frac))
    left = max(0.0, res.budget_s - res.elapsed_s)
    eta = "done" if res.phase == "done" else f"ETA at most {_mmss(left)} (the budget)"
    return (
        f"[{bar}] {res.phase or 'planning'}: {len(built)}/{len(todo)} built, {res.runs_done} runs; "
        f"{_mmss(res.elapsed_s)} of {_mmss(res.budget_s)}; {eta}"
    )


class LiveTable:
    """Rewrites the table in place on a terminal; elsewhere prints a line when a status changes."""

    def __init__(self, out, enabled: bool):
        self.out, self.enabled = out, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.drawn = 0
        self.seen: dict[str, object] = {}  # candidate -> (status, rounds); "" -> the phase

    def __call__(self, res) -> None:
        if not self.enabled:
            return
        if self.tty:
            # a candidate's reason may quote a build's output
            lines = [safe_text(ln) for ln in table_lines(res) + [progress_line(res)]]
            text = (f"\x1b[{self.drawn}F\x1b[J" if self.drawn else "") + "\n".join(lines)
            click.echo(text, err=True)
            self.drawn = sum(1 + ln.count("\n") for ln in lines)
            return
        if res.phase != self.seen.get("", None):  # a progress line where a phase begins
            self.seen[""] = res.phase
            self.out.echo("  " + progress_line(res), err=True)
        for c in res.candidates:
            state = (c.status, c.rounds)
            if self.seen.get(c.name) != state:
                self.seen[c.name] = state
                figures = f" pp {c.pp.mean:.1f} tg {c.tg.mean:.1f} t/s ({c.rounds} rounds)" if c.pp and c.tg else ""
                vs = f" {_vs(c)}" if c.score is not None else ""
                build_s = f" build {c.build_s:.0f} s ({c.build_status})" if c.build_s is not None else ""
                self.out.echo(
                    f"  [{_mmss(res.elapsed_s)}] {c.name}: {c.status}{build_s}{figures}{vs}"
                    + (f" - {c.reason}" if c.reason else ""),
                    err=True,
                )


@click.command("tune")
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A GGUF model to measure with (default: a random-weight smoke model).",
)
@click.option(
    "--size",
    "size_mb",
    type=click.FloatRange(1, 100000),
    help="Smoke model size in MB when no --model is given (default: bench's).",
)
@click.option(
    "--objective",
    type=click.Choice(["generation", "prompt", "balanced"]),
    default="generation",
    show_default=True,
    help="What the winner must be faster at.",
)
@click.option("--budget", default="20m", show_default=True, help="Time for building and measuring (20m, 90s, 1h).")
@click.option(
    "--backend",
    type=click.Choice(["cpu", "cuda", "hip", "vulkan", "metal", "sycl"]),  # tune.values.BACKENDS (a test compares)
    default="cpu",
    show_default=True,
    help="The backend to tune; a GPU one adds its candidates when this machine has such a GPU.",
)
@click.option("--candidates", "only", help="Comma-separated candidate names to try (default: all that apply).")
@click.option("--targets", help="Comma-separated programs to build (default: the plan's; llama-bench is always added).")
@click.option(
    "--max-rounds",
    type=click.IntRange(1, 21),
    default=5,
    show_default=True,
    help="Interleaved rounds for the last candidates standing.",
)
@click.option(
    "-r", "--reps", type=click.IntRange(1, 20), default=2, show_default=True, help="llama-bench repetitions per run."
)
@click.option("--fresh", is_flag=True, help="Ignore the cached answer and runs: measure again (builds stay cached).")
@click.option("--no-install", is_flag=True, help="Measure only; install nothing.")
@click.option(
    "--replace",
    "replace_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Install the winner over the llama.cpp programs in this folder (backed up; `rollback` undoes).",
)
@click.option("--no-settings", is_flag=True, help="Skip the run-time settings (threads, flash attention).")
@json_option
@click.pass_context
def tune_cmd(ctx, model_path, size_mb, budget, only, targets, no_install, no_settings, as_json, **opts):
    """Build variants of the plan, benchmark them against it, and install the fastest.

    Candidates come from data (builddoctor/data/tune_candidates.toml). A candidate wins only when
    its speed-up's 95 % interval lies above 1.0; otherwise the plain plan does. Results are kept
    per build and model: a rerun, or one after Ctrl-C, continues from them.
    """
    from builddoctor import tune
    from builddoctor.probe import machine_profile
    from builddoctor.source import resolve_source

    out = console(ctx)
    budget_s = tune.parse_budget(budget)
    _check_model(model_path)
    machine = machine_profile()
    live = LiveTable(out, enabled=not as_json and not out.quiet)
    say = (lambda m: None) if as_json else (lambda m: out.echo(m, err=True))
    res = tune.tune(
        machine,
        source=resolve_source(None),
        budget_s=budget_s,
        model=model_path,
        only=_names(only),
        targets=_names(targets),
        install=not no_install,
        settings=not no_settings,
        model_bytes=int(size_mb * 1e6) if size_mb else None,
        say=say if not live.tty else (lambda m: None),
        on_update=live,
        **opts,
    )
    if as_json:
        out.json(res)
    else:
        _report(out, res)
    if res.interrupted:
        out.echo("Interrupted: what was measured is kept; run the same command again to continue.", err=True)
        ctx.exit(errors.INTERRUPTED)


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _check_model(model_path: Path | None) -> None:
    """A --model that is not a GGUF file is refused before anything is built."""
    if model_path is None:
        return
    if not model_path.is_file():
        raise errors.InputError(f"--model {model_path}: no such file (give a GGUF model file).")
    with open(model_path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise errors.InputError(f"--model {model_path} is not a GGUF file (it does not start with 'GGUF').")


def _report(out, res) -> None:
    """The final table, the winner, the run-time settings and where it was installed."""
    out.echo(
        f"\n{res.cpu}; {res.objective}; model {Path(res.model).name if res.model else '-'}; "
        f"{res.elapsed_s:.0f} s of {res.budget_s:.0f} s ({res.stopped or 'done'})"
    )
    if res.backend_note:
        out.echo(f"{out.symbol('warning')} --backend: {res.backend_note}")
    if res.answer_cached:
        out.echo(
            "(the answer of an earlier tune with the same inputs, from the cache; another --budget, "
            "--candidates or --model asks anew, reusing every build and run already made; --fresh measures again)"
        )
    for line in table_lines(res, final=True, bars=True):
        out.echo(line)
    out.echo(f"winner: {res.winner} - {res.winner_reason}")
    if res.unfinished:
        out.echo(
            f"{out.symbol('warning')} not finished in the budget: {'; '.join(res.unfinished)}. The same command "
            "again goes on from here (builds and runs are cached); a larger --budget does more at once."
        )
    cpus = res.settings.logical_cpus if res.settings else 0
    if res.load_avg is not None and res.load_avg > max(1, cpus or res.threads):
        out.echo(
            f"{out.symbol('warning')} the machine was busy while measuring (load {res.load_avg:.1f} on "
            f"{cpus or res.threads} CPUs): speeds are low and noisy; ratios of interleaved runs hold better"
        )
    if res.settings:
        s = res.settings
        out.echo(f"run-time: {s.reason}")
        out.echo("  " + " ".join(s.server))
        out.echo("  " + " ".join(s.cli))
    if res.installed:
        out.echo(
            f"{out.symbol('ok')} installed: {res.installed}"
            + (f" (backup {res.backup}; undo with `builddoctor rollback`)" if res.backup else "")
        )
        out.echo(f"    settings: {res.settings_file}")


COMMANDS = [tune_cmd]
