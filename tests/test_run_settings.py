"""builddoctor.run_settings and tune.runtime_settings: the flag table, overrides, the choice, `run`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from builddoctor import errors, proc, run_settings, tune
from builddoctor.errors import UserError
from builddoctor.profiles import BenchResult, Stat


def test_every_flag_of_the_table_is_in_the_pinned_source(pinned_source):
    """The table is facts about llama.cpp: each llama-bench flag is parsed by llama-bench, each
    llama-cli/server flag declared in common/arg.cpp (a new pin that renames one fails here)."""
    bench_src = pinned_source / "tools" / "llama-bench" / "llama-bench.cpp"
    arg_src = pinned_source / "common" / "arg.cpp"
    bench_text, arg_text = bench_src.read_text(), arg_src.read_text()
    specs = run_settings.load_specs()
    assert {s.name for s in specs} >= {"threads", "flash_attn", "poll", "ubatch", "batch", "load_mode"}
    for s in specs:
        assert f'arg == "{s.bench}"' in bench_text, s.bench
        for flag in s.run:
            assert re.search(r'[{ ]"' + re.escape(flag) + r'"\s*[,}]', arg_text), flag


def test_bad_table_is_named(tmp_path):
    bad = tmp_path / "s.toml"
    for body, words in (
        (
            '[[setting]]\nname = "x"\nbench = "-x"\nrun = ["-x"]\nvalues = ["1"]\ndefault = "1"\nwhat = 1\n',
            "unknown key",
        ),
        ('[[setting]]\nname = "x"\nbench = "-x"\nrun = ["x"]\nvalues = ["1"]\ndefault = "1"\n', "flags"),
        ('[[setting]]\nname = "x"\nbench = "-x"\nrun = ["-x"]\nvalues = 3\ndefault = "1"\n', "values"),
        ('[[setting]]\nname = "x"\nrun = ["-x"]\nvalues = ["1"]\ndefault = "1"\n', "needs bench"),
    ):
        bad.write_text(body)
        with pytest.raises(UserError) as exc:
            run_settings.load_specs(bad)
        assert words in exc.value.message and exc.value.exit_code == errors.USAGE


def test_the_users_arguments_override_the_saved_settings():
    specs = run_settings.load_specs()
    values = {"threads": "2", "flash_attn": "on", "poll": "50", "ubatch": "256", "batch": "2048", "load_mode": "auto"}
    # threads always; the others only when not llama.cpp's default
    assert run_settings.flags(values, specs, physical=2) == ["-t", "2", "-fa", "on", "-ub", "256"]
    assert run_settings.apply(["-m", "m.gguf"], values, specs, physical=2) == [
        "-t",
        "2",
        "-fa",
        "on",
        "-ub",
        "256",
        "-m",
        "m.gguf",
    ]
    assert run_settings.apply(["--threads=8", "-m", "m.gguf", "--flash-attn", "off"], values, specs, physical=2) == [
        "-ub",
        "256",
        "--threads=8",
        "-m",
        "m.gguf",
        "--flash-attn",
        "off",
    ]
    assert run_settings.apply(["-ub", "64"], values, specs, physical=2) == ["-t", "2", "-fa", "on", "-ub", "64"]


def _prefix_with_tuned_build(tmp_path: Path, values: dict) -> Path:
    prefix = tmp_path / "home"
    (prefix / "installs" / "k" / "bin").mkdir(parents=True)
    (prefix / "bin").symlink_to(Path("installs") / "k" / "bin")
    exe = prefix / "installs" / "k" / "bin" / "llama-server"
    exe.write_text('#!/bin/sh\necho ARGS: "$@"\n')
    exe.chmod(0o755)
    run_settings.save(
        run_settings.SavedSettings(
            values=values, physical_cores=2, logical_cpus=2, flags=["-t", values["threads"]], winner="plain"
        ),
        prefix,
    )
    return prefix


def test_tuned_argv_only_for_an_installed_tuned_program(tmp_path):
    assert run_settings.tuned_argv("llama-server", [], tmp_path) is None  # nothing installed
    prefix = _prefix_with_tuned_build(tmp_path, {"threads": "1", "poll": "0"})
    got = run_settings.tuned_argv("server", ["--port", "8080"], prefix)
    assert got == [str(prefix / "bin" / "llama-server"), "-t", "1", "--poll", "0", "--port", "8080"]
    assert run_settings.tuned_argv("llama-cli", [], prefix) is None  # that program is not in the tuned build
    assert run_settings.tuned_argv("llama-quantize", [], prefix) is None  # takes no run-time settings
    (prefix / "installs" / "k" / "run-settings.json").write_text('{"values": {"threads": 3}}')
    assert run_settings.tuned_argv("llama-server", [], prefix) is None  # damaged: taken as none


def test_run_starts_the_tuned_program_with_the_settings_and_the_users_override(tmp_path):
    prefix = _prefix_with_tuned_build(tmp_path, {"threads": "1", "flash_attn": "on"})
    env = proc.clean_env({"BUILDDOCTOR_HOME": str(prefix)})
    done = proc.run(
        [sys.executable, "-m", "builddoctor", "run", "llama-server", "--port", "9", "-fa", "off"], timeout=60, env=env
    )
    assert done.ok, done.output
    assert done.stdout.strip() == "ARGS: -t 1 --port 9 -fa off"


# --------------------------------------------------------------------------- the choice, on recorded runs

#: llama-bench speeds (t/s) recorded on the 2-core KVM Xeon (AMX host) with the plain plan's build
#: and the 100 MB smoke model, by setting value: (pp, tg) means, llama-bench's own spread
RECORDED = {
    ("threads", "1"): (205.0, 38.0),
    ("threads", "2"): (390.0, 61.0),
    ("flash_attn", "auto"): (391.0, 61.0),
    ("flash_attn", "on"): (392.0, 60.5),
    ("flash_attn", "off"): (380.0, 61.2),
    ("poll", "50"): (0, 61.0),
    ("poll", "0"): (0, 52.0),
    ("poll", "100"): (0, 61.5),
    ("ubatch", "512"): (390.0, 0),
    ("ubatch", "256"): (430.0, 0),
    ("ubatch", "128"): (401.0, 0),
    ("batch", "2048"): (390.0, 0),
    ("batch", "512"): (391.0, 0),
    ("load_mode", "auto"): (390.0, 61.0),
    ("load_mode", "none"): (389.0, 60.8),
}


def _replay(calls):
    """A llama-bench stand-in that answers from RECORDED for the one setting off its chosen value."""

    def runner(binary, model, *, threads, reps, pp, tg, extra):
        flags = dict(zip(extra[::2], extra[1::2], strict=False))
        calls.append((threads, flags, pp, tg))
        spec = {"-fa": "flash_attn", "--poll": "poll", "-ub": "ubatch", "-b": "batch", "-lm": "load_mode"}
        off = {"-fa": "auto", "--poll": "50", "-ub": "512", "-b": "2048", "-lm": "auto"}
        moved = [(spec[f], v) for f, v in flags.items() if v != off[f]]
        key = moved[-1] if moved else ("threads", str(threads))
        p, t = RECORDED.get(key, RECORDED[("threads", str(threads))])
        return BenchResult(
            binary=str(binary),
            model=str(model),
            threads=threads,
            pp=Stat(p, p * 0.01, reps) if pp and p else None,
            tg=Stat(t, t * 0.01, reps) if tg and t else None,
        )

    return runner


def test_settings_choose_only_values_clearly_faster_and_are_cached(tmp_path):
    calls: list = []
    cache = tune.ResultsCache(tmp_path)
    got = tune.runtime_settings(
        Path("llama-bench"),
        Path("m.gguf"),
        objective="generation",
        physical=2,
        logical=2,
        runner=_replay(calls),
        cache=cache,
        build_key="b",
        model_sha="m" * 16,
    )
    assert got.values["threads"] == "2"  # the physical cores, and the fastest
    assert got.values["flash_attn"] == "auto"  # on/off within 2 %: the spread decides nothing
    assert got.values["poll"] == "50"  # 100 is 0.8 % faster: within noise
    assert got.values["ubatch"] == "256"  # 10 % faster prompts
    assert got.flags == ["-t", "2", "-ub", "256"] and got.complete
    assert got.server[:3] == ["llama-server", "-m", "MODEL.gguf"] and got.server[3:] == got.flags
    assert any(pp == 0 for *_x, pp, _tg in calls)  # --poll is measured on generation only
    n = len(calls)
    again = tune.runtime_settings(
        Path("llama-bench"),
        Path("m.gguf"),
        objective="generation",
        physical=2,
        logical=2,
        runner=_replay(calls),
        cache=cache,
        build_key="b",
        model_sha="m" * 16,
    )
    assert len(calls) == n and again.values == got.values  # every run came from the cache


def test_settings_past_the_deadline_keep_the_defaults():
    import time

    got = tune.runtime_settings(
        Path("llama-bench"),
        Path("m.gguf"),
        objective="generation",
        physical=2,
        logical=2,
        runner=_replay([]),
        deadline=time.monotonic() - 1,
    )
    assert not got.complete and got.values["ubatch"] == "512" and "budget" in got.reasons["ubatch"]


def test_settings_when_the_build_does_not_run():
    def crash(binary, model, **_kw):
        return BenchResult(binary=str(binary), model=str(model), error="llama-bench died from SIGILL")

    with pytest.raises(UserError) as exc:
        tune.runtime_settings(
            Path("llama-bench"), Path("m.gguf"), objective="generation", physical=2, logical=2, runner=crash
        )
    assert "SIGILL" in exc.value.message and exc.value.exit_code == errors.BENCH_FAILED
