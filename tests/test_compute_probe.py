"""The compute probe: a real inference behind every verdict (issue: builds that run).

Real llama.cpp builds from the pinned tree (tests/llama_builds.py), small programs compiled here
that misbehave on purpose, and a library with an undefined symbol. Expectations come from the
host (its CPU features, and whether a known-bad row applies to it) or from recorded profiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builddoctor import known_bad, smoke_model
from builddoctor.findings import diagnose
from builddoctor.inspect import compute, inspect_paths
from builddoctor.probe import machine_profile
from builddoctor.source import load_pin
from tests import elf_fixtures as fx

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def live():
    return machine_profile()


def rows_here(live) -> list:
    """The known-bad rows that bite the pinned llama.cpp on this CPU (AMX hosts: the AMX kernels)."""
    return known_bad.applying(live.cpu.features, load_pin().llama_version)


def codes(report) -> set[str]:
    return {f.code for f in report.findings if f.severity in ("error", "warning")}


def run_check(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builddoctor", "check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


# --------------------------------------------------------------------------- the probe model


def test_probe_model_is_tiny_and_self_contained(tmp_path):
    import gguf

    path = smoke_model.ensure_probe_model(tmp_path)
    assert path.stat().st_size < 1_000_000
    reader = gguf.GGUFReader(str(path))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == smoke_model.PROBE_SHAPE.n_vocab
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    # every weight matrix is a whole number of Q4_0 blocks (what the quantized kernels take)
    assert all(t.shape[0] % 32 == 0 for t in reader.tensors if len(t.shape) > 1)
    # cached: a second call writes nothing
    mtime = path.stat().st_mtime_ns
    assert smoke_model.ensure_probe_model(tmp_path) == path and path.stat().st_mtime_ns == mtime


def test_program_table_order():
    assert compute.program_for(["llama-server", "llama-simple", "llama-bench"])[0] == "llama-bench"
    assert compute.program_for(["llama-simple", "llama-server"])[0] == "llama-simple"
    assert compute.program_for(["llama-server", "llama-quantize"]) is None


# --------------------------------------------------------------------------- real builds


@pytest.mark.slow
def test_planned_build_computes_here(planned_build):
    """builddoctor's own plan for this host gives a build whose real inference runs, on every CPU."""
    (b,), _ = inspect_paths([planned_build])
    c = b.compute
    assert c is not None and c.kind == "inference" and c.ok, c
    assert c.backend == "CPU" and c.threads >= 1
    assert c.pp_tps > 0 and c.tg_tps > 0
    assert c.seconds < 10
    done = run_check(planned_build)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a real inference ran (llama-bench on the probe model, CPU" in done.stdout
    assert "healthy" in done.stdout


@pytest.mark.slow
def test_plain_native_build_on_this_host(native_build, live):
    """`cmake -DGGML_NATIVE=ON` of the pinned source: on an AMX host its first matrix multiplication
    dies (the known-bad row is the named cause, with the fix); elsewhere it computes."""
    diag = diagnose(live, [native_build])
    (rep,) = diag.builds
    c = rep.build.compute
    rows = [r for r in rows_here(live) if r.in_code(rep.build.isa)]
    if rows:
        assert c is not None and not c.ok and c.signal in rows[0].signals, c
        (f,) = [f for f in rep.findings if f.code == "BD193"]
        assert f.severity == "error"
        assert rows[0].id in f.evidence and "AMX" in f.title
        assert "builddoctor fix --rebuild" in f.fix and "-mno-amx-int8" in f.fix
        assert not diag.healthy
        # without a run, the static reading names the same row
        (rep2,) = diagnose(live, [native_build], run=False).builds
        assert "BD134" in codes(rep2) and rep2.build.compute is None
    else:
        assert c is not None and c.ok, c
        assert "BD193" not in codes(rep)


@pytest.mark.slow
def test_check_json_carries_the_probe(planned_build):
    done = run_check("--json", planned_build)
    data = json.loads(done.stdout)
    c = data["builds"][0]["build"]["compute"]
    assert c["kind"] == "inference" and c["ok"] is True and c["argv"][0].endswith("llama-bench")
    done = run_check("--json", "--no-run", planned_build)
    assert json.loads(done.stdout)["builds"][0]["build"]["compute"] is None


def _wrapper(d: Path, real: Path, then: str, *, run_real: bool = True) -> Path:
    """A llama-bench that answers --version through the real one, and for anything else runs the
    real one to the end (``run_real``) and then ``then`` (raise a signal, hang, print garbage)."""
    child = (
        f'''
    pid_t p = fork();
    if (p == 0) {{ execv("{real}", argv); _exit(127); }}
    int st; waitpid(p, &st, 0);'''
        if run_real
        else ""
    )
    body = f'''
    if (argc == 2) {{ execv("{real}", argv); return 127; }}{child}
    {then}
    return 0;'''
    return fx.make_program(d, "llama-bench", body, flags=["-include", "sys/wait.h"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "then,run_real,code,what",
    [
        ("raise(SIGSEGV);", True, "BD193", "SIGSEGV"),
        ("abort();", True, "BD193", "SIGABRT"),
        ("for (;;) pause();", True, "BD194", "did not finish"),
        ('puts("[{\\"n_prompt\\": 16, \\"n_gen\\": 0, \\"avg_ts\\": \\"nan\\"}]");', False, "BD195", "meaningless"),
    ],
)
def test_programs_that_die_or_hang_while_computing(planned_build, tmp_path, then, run_real, code, what, live):
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    folder = tmp_path / "build" / "bin"
    shutil.copytree(planned_build, folder, symlinks=True)
    (folder / "llama-bench").unlink()
    _wrapper(folder, (planned_build / "llama-bench").resolve(), then, run_real=run_real)
    diag = diagnose(live, [folder], timeout=0.5)  # the compute probe gets 6 x 0.5 s
    (rep,) = diag.builds
    (f,) = [f for f in rep.findings if f.code == code]
    assert f.severity == "error" and what in f.title + f.evidence
    assert [x.code for x in rep.findings if x.code.startswith("BD19")] == [code]  # one distinct finding
    assert rep.build.runtime and all(r.returncode == 0 for r in rep.build.runtime)  # --version was fine


def test_library_with_an_undefined_symbol(tmp_path, live):
    """A library-only build whose libllama needs a symbol nothing defines: the static reading
    finds every linked library, the dlopen in a child process fails, and says which symbol."""
    if fx.GCC is None:
        pytest.skip("gcc is not installed")
    d = tmp_path / "pkg"
    d.mkdir()
    src = d / "llama.c"
    src.write_text(
        "int ggml_no_such_function(int);\n"
        "int llama_backend_init(void) { return ggml_no_such_function(1); }\n"
        'const char *llama_model_name = "llama_model";\n'
    )
    subprocess.run([fx.GCC, "-shared", "-fPIC", "-O1", str(src), "-o", str(d / "libllama.so")], check=True)
    ok = d.parent / "ok"
    ok.mkdir()
    (ok / "llama.c").write_text(
        'int llama_backend_init(void) { return 0; }\nconst char *llama_model_name = "llama_model";\n'
    )
    subprocess.run([fx.GCC, "-shared", "-fPIC", "-O1", str(ok / "llama.c"), "-o", str(ok / "libllama.so")], check=True)
    diag = diagnose(live, [d, ok])
    by = {Path(r.build.root).name: r for r in diag.builds}
    bad, good = by["pkg"], by["ok"]
    # one load line: the static reading names the symbol (BD174), quoting the dlopen probe's words
    (f,) = [f for f in bad.findings if f.area == "load"]
    assert f.severity == "error" and "ggml_no_such_function" in f.title and "undefined symbol" in f.title
    assert "dlopen in a child process agrees" in f.evidence
    assert bad.build.compute.kind == "dlopen" and not bad.build.compute.ok
    assert good.build.compute.kind == "dlopen" and good.build.compute.ok
    assert "BD173" not in codes(good)


@pytest.mark.slow
def test_sigill_from_isa_this_cpu_lacks(live, tmp_path):
    """A real build with instruction sets this CPU lacks dies with SIGILL (when it starts, or when
    it computes): a finding that names the missing instructions."""
    from tests.llama_builds import ensure_build

    if "AVX512" in live.cpu.features:
        pytest.skip(
            "this CPU has AVX-512: no instruction set that ggml can be told to use is missing here "
            "(AMX is refused at run time when the CPU lacks it)"
        )
    bin_dir = ensure_build("avx512")
    (rep,) = diagnose(live, [bin_dir]).builds
    found = [f for f in rep.findings if f.code in ("BD190", "BD193", "BD131")]
    assert found and all(f.severity == "error" for f in found)
    assert any("AVX512" in f.title for f in found)


@pytest.mark.slow
def test_compute_gate_of_pip_install(planned_build, native_build, live, tmp_path):
    """What `pip install .` runs on the bundled build before installing it (CMakeLists.txt)."""

    def gate(bin_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "builddoctor.compute_gate", str(bin_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    done = gate(planned_build)
    assert done.returncode == 0 and "the bundled llama-bench computes here" in done.stdout, done.stdout + done.stderr
    record = tmp_path / "compute.json"
    done = subprocess.run(
        [sys.executable, "-m", "builddoctor.compute_gate", str(planned_build), "--record", str(record)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0 and json.loads(record.read_text())["ok"] is True
    done = gate(native_build)
    if [r for r in rows_here(live) if r.in_code({"AMX_INT8"})]:
        assert done.returncode == 1, done.stdout + done.stderr
        assert "does not compute on this machine" in done.stderr and "died with SIG" in done.stderr
        assert "amx-mul-mat-crash" in done.stderr and "BUILDDOCTOR_BINARY=skip" in done.stderr
    else:
        assert done.returncode == 0, done.stdout + done.stderr
