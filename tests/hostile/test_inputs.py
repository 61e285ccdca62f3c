"""Hostile input files: FIFOs, devices, sparse giants, forged CMake caches, control characters,
huge lists, full disks. Each is refused in one paragraph, or read within its bound with a note."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from builddoctor import errors
from tests.hostile.conftest import FIX, one_paragraph

CPUINFO = FIX / "cpuinfo" / "zen4-ryzen9-7950x.txt"


def _fifo(tmp_path, name="input"):
    path = tmp_path / name
    os.mkfifo(path)
    return path


# --------------------------------------------------------------------------- not regular files


@pytest.mark.parametrize("option", ["--cpuinfo", "--nvidia-smi", "--profile"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_probe_refuses_what_is_not_a_regular_file(cli, tmp_path, option, kind):
    path = _fifo(tmp_path) if kind == "fifo" else "/dev/zero"
    t0 = time.monotonic()
    done = cli("probe", option, path, timeout=60)
    assert done.returncode == errors.USAGE and time.monotonic() - t0 < 30
    msg = one_paragraph(done)
    assert ("named pipe (FIFO)" if kind == "fifo" else "character device") in msg and "regular file" in msg


@pytest.mark.parametrize(
    "command",
    [
        ["recipe", "--profile"],
        ["flags", "-DGGML_NATIVE=ON", "--profile"],
        ["check", "--no-run", "--profile"],
        ["build", "--dry-run", "--plan"],
    ],
)
def test_every_command_refuses_a_fifo(cli, tmp_path, command):
    done = cli(*command, _fifo(tmp_path), timeout=60)
    assert done.returncode == errors.USAGE
    assert "named pipe (FIFO), not a regular file" in one_paragraph(done)


def test_reader_refuses_a_folder_and_a_missing_file(tmp_path):
    from builddoctor import readinput  # here: the cases run against builddoctors without it

    with pytest.raises(errors.InputError, match="is a folder, not a file"):
        readinput.read_bytes(tmp_path, "plan")
    with pytest.raises(errors.InputError, match="no such file"):
        readinput.read_bytes(tmp_path / "nothing", "plan")
    (tmp_path / "f").write_text("x")
    with pytest.raises(errors.InputError, match="is a file, not a folder"):
        readinput.read_bytes(tmp_path / "f" / "plan.json", "plan")


# --------------------------------------------------------------------------- size bounds


def _rlimit_python(limit_bytes: int) -> list[str]:
    """The CLI under an address-space limit: reading a 2 GB file whole cannot fit in it."""
    code = (
        f"import resource, runpy; resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes})); "
        "runpy.run_module('builddoctor', run_name='__main__')"
    )
    return [sys.executable, "-c", code]


def test_sparse_2gb_cpuinfo_is_read_to_the_cap_only(cli, tmp_path):
    f = tmp_path / "cpuinfo.txt"
    with open(f, "wb") as fh:
        fh.write(CPUINFO.read_bytes())
        fh.truncate(2 * 2**30)  # the rest is a hole of NUL bytes
    done = subprocess.run(
        _rlimit_python(1536 * 2**20) + ["probe", "--cpuinfo", str(f)],
        env=cli.env,
        timeout=120,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert f"{f} was read only up to its first 16 MiB" in done.stdout and "AMD Ryzen 9 7950X" in done.stdout


def test_cpuinfo_over_the_cap_is_cut_with_a_note(cli, tmp_path):
    from builddoctor import readinput  # here: the cases run against builddoctors without it

    text = CPUINFO.read_text()
    f = tmp_path / "cpuinfo.txt"
    with open(f, "w") as fh:
        for _ in range(readinput.TEXT_CAP // len(text) + 2):
            fh.write(text)
    done = cli("probe", "--cpuinfo", f)
    assert done.returncode == 0, done.stderr
    assert f"{f} was read only up to its first 16 MiB: the rest of this CPU description was ignored." in done.stdout
    assert "AMD Ryzen 9 7950X" in done.stdout


def test_sparse_json_profile_is_refused_without_reading_it(cli, tmp_path):
    f = tmp_path / "machine.json"
    with open(f, "wb") as fh:
        fh.write(b'{"schema_version": 1,')
        fh.truncate(2 * 2**30)
    t0 = time.monotonic()
    done = cli("recipe", "--profile", f)
    assert done.returncode == errors.USAGE and time.monotonic() - t0 < 30
    assert "2,147,483,648 bytes, more than any machine profile (8 MiB at most)" in one_paragraph(done)


def _llama_cache(tmp_path, sse_build, extra_lines=(), sparse=0):
    """A copy of a real llama.cpp build (bin/ + its CMakeCache.txt), the cache extended by the test."""
    root = tmp_path / "build"
    shutil.copytree(sse_build, root / "bin", symlinks=True)
    cache = root / "CMakeCache.txt"
    with open(cache, "w") as fh:
        fh.write((sse_build.parent / "CMakeCache.txt").read_text())
        fh.writelines(extra_lines)
    if sparse:
        with open(cache, "r+b") as fh:
            fh.truncate(sparse)
    return root / "bin", cache


def test_sparse_2gb_cmake_cache_is_cut_and_said(cli, tmp_path, sse_build):
    bin_dir, cache = _llama_cache(tmp_path, sse_build, sparse=2 * 2**30)
    done = subprocess.run(
        _rlimit_python(2 * 2**30) + ["check", "--no-run", str(bin_dir)],
        env=cli.env,
        timeout=300,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode in (errors.OK, errors.PROBLEMS), done.stderr
    assert f"{cache} was read only up to its first 16 MiB: the rest of this CMake cache was ignored." in done.stdout
    assert "Release build" in done.stdout  # the entries before the cut still count


def test_cmake_cache_reader_reads_once_and_bounded(tmp_path):
    from builddoctor.inspect import cmakecache

    f = tmp_path / "CMakeCache.txt"
    f.write_text("GGML_NATIVE:BOOL=OFF\nCMAKE_BUILD_TYPE:STRING=Release\nX:INTERNAL=1\n")
    with open(f, "r+b") as fh:
        fh.truncate(2 * 2**30)
    got = cmakecache.load(f)
    assert got.truncated and got.values() == {"GGML_NATIVE": "OFF", "CMAKE_BUILD_TYPE": "Release", "X": "1"}
    assert got.user_options() == {"GGML_NATIVE": "OFF", "CMAKE_BUILD_TYPE": "Release"}
    os.unlink(f)
    os.mkfifo(f)
    with pytest.raises(errors.InputError, match="FIFO"):
        cmakecache.load(f)


def test_200k_unknown_options_in_a_cmake_cache(cli, tmp_path, sse_build):
    lines = [f"LLAMA_FORGED_OPTION_{i}:BOOL=ON\n" for i in range(200_000)]
    bin_dir, _ = _llama_cache(tmp_path, sse_build, lines)
    t0 = time.monotonic()
    done = cli("check", "--no-run", bin_dir, timeout=120)
    assert time.monotonic() - t0 < 60
    assert done.returncode == errors.PROBLEMS
    assert "199,950 more unknown names not checked" in done.stdout
    assert len(done.stdout) < 100_000


# --------------------------------------------------------------------------- JSON


def test_json_reader_bounds():
    from builddoctor import readinput  # here: the cases run against builddoctors without it

    assert readinput.loads('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert readinput.loads('["[[[[", "}}}"]') == ["[[[[", "}}}"]  # brackets in strings are no nesting
    for text, says in [
        ("[" * 65 + "]" * 65, "nests 65 levels"),
        ("[NaN]", "NaN, which JSON does not allow"),
        ("[Infinity]", "Infinity"),
        ("[1" + "0" * 50 + "]", "51 digits"),
        ("[1e999]", "too large"),
        ('{"a": }', "not valid JSON"),
    ]:
        with pytest.raises(readinput.JsonInputError, match=says):
            readinput.loads(text)


@pytest.mark.parametrize(
    "raw, says",
    [
        (b"\xff\xfe{\x00}\x00", "UTF-16"),
        (b'{"a": "\xe9"}', r"not UTF-8 text \(line 1"),
        (b"", "is empty"),
        (b'{"a":\x00 1}', "binary data"),
    ],
)
def test_json_file_encodings(tmp_path, raw, says):
    from builddoctor import readinput  # here: the cases run against builddoctors without it

    f = tmp_path / "plan.json"
    f.write_bytes(raw)
    with pytest.raises(errors.InputError, match=says):
        readinput.read_json(f, "build plan")


def test_json_file_with_utf8_bom_is_read(tmp_path):
    from builddoctor import readinput  # here: the cases run against builddoctors without it

    f = tmp_path / "plan.json"
    f.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert readinput.read_json(f, "build plan") == {"a": 1}


# --------------------------------------------------------------------------- foreign text in reports


def _profile(cli, tmp_path, **cpu):
    done = cli("probe", "--json", "--cpuinfo", CPUINFO)
    data = json.loads(done.stdout)
    data["cpu"].update(cpu)
    f = tmp_path / "machine.json"
    f.write_text(json.dumps(data))
    return f


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b]52;c;ZWNobyBoaQ\x07\r\x9b"


@pytest.mark.parametrize("command", [["probe"], ["recipe"], ["check", "--no-run"]])
def test_control_characters_from_a_profile_are_not_echoed(cli, tmp_path, command):
    f = _profile(cli, tmp_path, model=f"Evil {ESCAPES}CPU")
    done = cli(*command, "--profile", f)
    out = done.stdout + done.stderr
    assert "Evil \\x1b]0;owned\\x07\\x1b[2J" in out or command == ["check", "--no-run"]
    assert not any(c in out for c in "\x1b\x07\r\x9b")


def test_control_characters_in_cmake_values_are_not_echoed(cli, tmp_path, sse_build):
    # (a CR would end the line for CMake's reader and ours alike: not part of a name)
    bin_dir, _ = _llama_cache(tmp_path, sse_build, [f"LLAMA_EVIL{ESCAPES.replace(chr(13), '')}:BOOL=ON\n"])
    done = cli("check", "--no-run", bin_dir)
    assert "LLAMA_EVIL\\x1b]0;owned" in done.stdout
    assert not any(c in done.stdout for c in "\x1b\x07\r\x9b")


def test_200k_features_make_no_10mb_report(cli, tmp_path, sse_build):
    f = _profile(cli, tmp_path, features=[f"FEATURE{i}" for i in range(200_000)])
    for command in (["probe"], ["check", "--no-run", sse_build]):
        done = cli(*command, "--profile", f)
        assert len(done.stdout) < 50_000 and "more characters)" in done.stdout


def test_100k_gpus_make_no_8mb_report(cli, tmp_path):
    f = tmp_path / "gpus.csv"
    f.write_text("name, memory.total [MiB]\n" + "".join(f"NVIDIA L4 #{i}, 23034 MiB\n" for i in range(100_000)))
    done = cli("probe", "--nvidia-smi", f)
    assert done.returncode == 0 and len(done.stdout) < 20_000
    assert "... and 99,980 more (`--json` lists 1,000)" in done.stdout


# --------------------------------------------------------------------------- wrong results


def test_check_source_that_does_not_exist(cli, tmp_path):
    done = cli("check", "--no-run", "--source", tmp_path / "nonexistent")
    assert done.returncode == errors.USAGE and "does not exist" in done.stderr


def test_recipe_save_to_a_full_disk_dev_full(cli):
    done = cli("recipe", "--cpuinfo", CPUINFO, "--save", "/dev/full")
    assert done.returncode == errors.NO_SPACE
    assert "no space left" in one_paragraph(done)


def test_recipe_save_to_a_fifo_nobody_reads(cli, tmp_path):
    done = cli("recipe", "--cpuinfo", CPUINFO, "--save", _fifo(tmp_path, "plan.json"), timeout=60)
    assert done.returncode == errors.USAGE
    assert "named pipe (FIFO) that nothing reads from" in one_paragraph(done)


def test_recipe_save_to_a_full_tmpfs(cli, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny tmpfs needs root (the /dev/full case covers ENOSPC for everyone)")
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True, timeout=30
        ).returncode
        != 0
    ):
        pytest.skip("this container does not allow mounting a tmpfs")
    try:
        try:
            with open(mnt / "filler", "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        done = cli("recipe", "--cpuinfo", CPUINFO, "--save", mnt / "plan.json")
        assert done.returncode == errors.NO_SPACE
        assert "no space left" in one_paragraph(done)
    finally:
        subprocess.run(["umount", str(mnt)], timeout=30)


def test_which_without_a_bundle_is_not_toolchain_missing(cli, tmp_path):
    done = cli("which", BUILDDOCTOR_BUNDLED_DIR=tmp_path / "none")
    assert done.returncode == errors.NOT_BUNDLED != errors.TOOLCHAIN
    assert "no bundled llama.cpp" in one_paragraph(done)


def test_bench_rows_are_typed():
    from builddoctor.bench import bench_rows

    (row,) = bench_rows([{"n_prompt": 128, "n_gen": 0, "avg_ts": 99, "samples_ts": [1, 2]}])
    assert row.avg_ts == 99.0 and row.n_samples == 2 and row.model_size is None
    for bad, says in [
        (["x"], "row 0 is str"),
        ([{"n_gen": 1.5}], "n_gen is float"),
        ([{"avg_ts": True}], "avg_ts is bool"),
        ([{"avg_ts": -1}], "not a number from 0"),
        ([{"gpu_info": ["a"]}], "gpu_info is list"),
    ]:
        with pytest.raises(ValueError, match=says):
            bench_rows(bad)


def _on_a_terminal(cli, *args, timeout: float = 120) -> str:
    """builddoctor's output on a pseudo-terminal, where colour is on."""
    import pty
    import select
    import subprocess
    import sys
    import time

    master, slave = pty.openpty()
    env = {k: v for k, v in cli.env.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    p = subprocess.Popen(
        [sys.executable, "-m", "builddoctor", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    out, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        assert p.wait(timeout=10) != 70
    finally:
        p.kill()
        os.close(master)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize("command", [["probe"], ["recipe"]])
def test_colour_escapes_from_a_profile_are_filtered_with_colour_on(cli, tmp_path, command):
    """On a terminal builddoctor's own colours are written, and an ESC[..m quoted from a profile is not."""
    f = _profile(cli, tmp_path, model="Evil \x1b[35mCPU\x1b[0m \x1b]0;owned\x07")
    out = _on_a_terminal(cli, *command, "--profile", f)
    assert "\x1b[1m" in out, "builddoctor's own bold is written on a terminal"
    if command == ["probe"]:
        assert "Evil \\x1b[35mCPU\\x1b[0m \\x1b]0;owned\\x07" in out, out[-3000:]
    assert "Evil \x1b" not in out and "CPU\x1b" not in out and "\x07" not in out


def test_colour_escapes_in_cmake_values_are_filtered_with_colour_on(cli, tmp_path, sse_build):
    bin_dir, _ = _llama_cache(tmp_path, sse_build, ["LLAMA_EVIL\x1b[35mRED\x1b[0m:BOOL=ON\n"])
    out = _on_a_terminal(cli, "check", "--no-run", bin_dir)
    assert "\x1b[1m" in out, "builddoctor's own bold is written on a terminal"
    assert "LLAMA_EVIL\\x1b[35mRED\\x1b[0m" in out, out[-3000:]
    assert "EVIL\x1b" not in out and "RED\x1b" not in out


def test_200k_features_make_a_bounded_json_that_says_what_was_cut(cli, tmp_path, sse_build):
    """--json keeps the first 1,000 entries of a list and names the cut; a cut report is not taken as a profile."""
    f = _profile(cli, tmp_path, features=[f"FEATURE{i}" for i in range(200_000)])
    for command in (["probe"], ["check", "--no-run", sse_build]):
        done = cli(*command, "--json", "--profile", f)
        assert len(done.stdout) < 200_000, len(done.stdout)
        data = json.loads(done.stdout)
        cpu = data["cpu"] if command == ["probe"] else data["machine"]["cpu"]
        assert cpu["features"][:2] == ["FEATURE0", "FEATURE1"] and len(cpu["features"]) == 1000
        path = "cpu.features" if command == ["probe"] else "machine.cpu.features"
        assert {"path": path, "count": 200_000, "shown": 1000} in data["truncated"], data["truncated"]
    cut = tmp_path / "cut.json"
    cut.write_text(cli("probe", "--json", "--profile", f).stdout)
    done = cli("probe", "--profile", cut)
    assert done.returncode == errors.USAGE
    assert "lists were cut (the first: cpu.features, 1000 of 200000 kept)" in done.stderr


def test_a_whole_profile_has_no_truncated_field(cli):
    data = json.loads(cli("probe", "--json", "--cpuinfo", CPUINFO).stdout)
    assert "truncated" not in data


def test_the_text_report_cuts_a_long_list_the_same_way(cli, tmp_path, sse_build):
    f = _profile(cli, tmp_path, features=[f"F{i}" for i in range(5000)])
    done = cli("check", "--no-run", sse_build, "--profile", f)
    assert "F199, ... and 4,800 more" in done.stdout, done.stdout[:3000]
