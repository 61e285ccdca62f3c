"""`builddoctor probe` through the real CLI: output, --json round trips, files from elsewhere, bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from builddoctor.profiles import CpuProfile, MachineProfile

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def cli():
    from builddoctor.cli import _register
    from builddoctor.cli import cli as group

    _register()
    return group


def run(cli, *args):
    return CliRunner().invoke(cli, ["probe", *map(str, args)], catch_exceptions=False)


def test_probe_human_output_here(cli):
    r = run(cli)
    assert r.exit_code == 0, r.output
    out = r.stdout
    for label in ("System", "CPU", "features:", "llama.cpp CPU variant:", "Memory", "GPUs", "Tools"):
        assert label in out
    import builddoctor.probe as probe

    m = probe.machine_profile()
    assert m.cpu.model in out and m.cpu.variant in out and m.cpu.microarch in out
    if m.tool("nvcc").found:
        assert f"nvcc {m.tool('nvcc').version}" in out


def test_probe_json_is_a_machine_profile(cli):
    r = run(cli, "--json")
    assert r.exit_code == 0
    m = MachineProfile.from_json(r.stdout)
    assert m.schema_version == 1 and m.source == "live"
    assert json.loads(r.stdout)["cpu"]["variant"] == m.cpu.variant


def test_json_round_trips_exactly_through_profile(cli, tmp_path):
    first = run(cli, "--json").stdout
    saved = tmp_path / "machine.json"
    saved.write_text(first)
    second = run(cli, "--json", "--profile", saved).stdout
    assert second == first
    assert MachineProfile.from_json(second).to_json() == first.rstrip("\n")


@pytest.mark.parametrize(
    "dump", sorted(p.relative_to(FIX).as_posix() for p in [*FIX.glob("cpuinfo/*.txt"), *FIX.glob("sysctl/*.txt")])
)
def test_every_dump_round_trips(cli, tmp_path, dump):
    r = run(cli, "--json", "--cpuinfo", FIX / dump)
    assert r.exit_code == 0, r.output
    saved = tmp_path / "m.json"
    saved.write_text(r.stdout)
    again = run(cli, "--json", "--profile", saved)
    assert again.stdout == r.stdout
    profile = MachineProfile.from_json(r.stdout)
    assert profile.cpu.source.endswith(dump)
    assert MachineProfile.from_json(profile.to_json()) == profile


def test_cpuinfo_replaces_the_cpu(cli):
    r = run(cli, "--json", "--cpuinfo", FIX / "cpuinfo/sapphirerapids-xeon-8488c-aws.txt")
    m = MachineProfile.from_json(r.stdout)
    assert m.cpu.variant == "sapphirerapids" and m.arch == "x86_64" and m.os == "linux"
    assert m.toolchains  # still this machine's tools
    human = run(cli, "--cpuinfo", FIX / "cpuinfo/sapphirerapids-xeon-8488c-aws.txt").stdout
    assert "sapphirerapids" in human and "AMX_INT8" in human and "AVX512F " not in human


def test_macos_dump_describes_a_mac(cli):
    r = run(cli, "--json", "--cpuinfo", FIX / "sysctl/macos14-apple-m2.txt")
    m = MachineProfile.from_json(r.stdout)
    assert (m.os, m.arch, m.os_version, m.memory_bytes) == ("darwin", "aarch64", "macOS 14.5", 16 * 2**30)
    assert m.cpu.variant == "apple_m2_m3"
    assert [g.name for g in m.gpus] == ["Apple M2 GPU"] and m.gpus[0].apis == ["metal"]


def test_nvidia_smi_replaces_the_gpus(cli):
    r = run(cli, "--json", "--nvidia-smi", FIX / "nvidia-smi/rtx4090-driver550.xml")
    m = MachineProfile.from_json(r.stdout)
    assert [(g.name, g.compute_capability, g.cuda_version) for g in m.gpus] == [
        ("NVIDIA GeForce RTX 4090", "8.9", "12.4")
    ]
    human = run(cli, "--nvidia-smi", FIX / "nvidia-smi/2x-h100-sxm-driver570.xml").stdout
    assert human.count("NVIDIA H100 80GB HBM3") == 2 and "compute 9.0" in human and "CUDA 12.8" in human


def test_profile_plus_overrides(cli, tmp_path):
    base = run(cli, "--json", "--cpuinfo", FIX / "cpuinfo/haswell-i7-4770.txt").stdout
    saved = tmp_path / "m.json"
    saved.write_text(base)
    r = run(cli, "--json", "--profile", saved, "--nvidia-smi", FIX / "nvidia-smi/gtx1080-driver535.csv")
    m = MachineProfile.from_json(r.stdout)
    assert m.cpu.variant == "haswell" and m.gpus[0].name == "NVIDIA GeForce GTX 1080"


# --------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[str, Path]]:
    rnd = random.Random(1234)
    files: dict[str, tuple[str, Path]] = {}

    def put(name: str, option: str, data: bytes) -> None:
        p = tmp_path / name
        p.write_bytes(data)
        files[name] = (option, p)

    haswell = (FIX / "cpuinfo/haswell-i7-4770.txt").read_bytes()
    cut_in_flags = haswell.index(b"flags") + 300
    second = haswell.index(b"processor\t: 1")
    put("empty-cpuinfo", "--cpuinfo", b"")
    put("blank-cpuinfo", "--cpuinfo", b"\n\n  \n")
    put("random-cpuinfo", "--cpuinfo", rnd.randbytes(4096))
    put("latin1-cpuinfo", "--cpuinfo", "processor : 0\nmodèle : é".encode("latin-1"))
    put("truncated-cpuinfo-mid-flags", "--cpuinfo", haswell[:cut_in_flags])
    put("truncated-cpuinfo-mid-block", "--cpuinfo", haswell[: second + 200])
    put("prose-cpuinfo", "--cpuinfo", b"This is a README.\nIt says nothing about a CPU.\nAt all.\n" * 5)
    put("truncated-sysctl", "--cpuinfo", (FIX / "sysctl/macos14-apple-m2.txt").read_bytes()[:900])
    put("empty-profile", "--profile", b"")
    put("random-profile", "--profile", rnd.randbytes(2048))
    live_json = MachineProfile(os="linux", arch="x86_64", cpu=CpuProfile(arch="x86_64")).to_json()
    put("truncated-profile", "--profile", live_json[: len(live_json) // 2].encode())
    put("list-profile", "--profile", b"[1, 2, 3]")
    put("wrong-shape-profile", "--profile", json.dumps({"schema_version": 1, "os": 5, "arch": [], "cpu": "x"}).encode())
    put("no-schema-profile", "--profile", json.dumps({"os": "linux"}).encode())
    newer = json.loads(live_json)
    newer["schema_version"] = 99
    put("newer-profile", "--profile", json.dumps(newer).encode())
    put("empty-nvidia-smi", "--nvidia-smi", b"")
    put("random-nvidia-smi", "--nvidia-smi", rnd.randbytes(1024))
    xml = (FIX / "nvidia-smi/rtx4090-driver550.xml").read_bytes()
    put("truncated-nvidia-smi", "--nvidia-smi", xml[: len(xml) // 3])
    put("prose-nvidia-smi", "--nvidia-smi", b"Failed to initialize NVML: Driver/library version mismatch\n")
    return files


def test_bad_inputs_exit_2_with_one_paragraph(cli, tmp_path):
    cases = _bad_inputs(tmp_path)
    assert len(cases) >= 15
    for name, (option, path) in cases.items():
        r = CliRunner().invoke(cli, ["probe", option, str(path)])
        assert r.exit_code == 2, (name, r.exit_code, r.output)
        err = r.stderr.strip()
        assert err.startswith("error: "), (name, err)
        assert "\n" not in err, (name, err)  # one paragraph
        assert str(path) in err, (name, err)
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    newer = CliRunner().invoke(cli, ["probe", "--profile", str(cases["newer-profile"][1])])
    assert "newer" in newer.stderr
    trunc = CliRunner().invoke(cli, ["probe", "--cpuinfo", str(cases["truncated-cpuinfo-mid-flags"][1])])
    assert "truncated" in trunc.stderr


def test_missing_file_is_exit_2(cli, tmp_path):
    for option in ("--profile", "--cpuinfo", "--nvidia-smi"):
        r = CliRunner().invoke(cli, ["probe", option, str(tmp_path / "nope.txt")])
        assert r.exit_code == 2 and "no such file" in r.stderr


def test_real_executable_bad_input(tmp_path):
    """The installed entry point, as a user runs it: exit 2, one line on stderr, no traceback."""
    bad = tmp_path / "cpuinfo.bin"
    bad.write_bytes(bytes(range(256)) * 4)
    done = subprocess.run(
        [sys.executable, "-m", "builddoctor", "probe", "--cpuinfo", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_real_executable_probe_json(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "builddoctor", "probe", "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert MachineProfile.from_json(done.stdout).cpu.variant


def test_no_devices_found_means_no_gpus(cli, tmp_path):
    rec = tmp_path / "smi.txt"
    rec.write_text("No devices were found\n")
    r = run(cli, "--json", "--nvidia-smi", rec)
    assert r.exit_code == 0 and MachineProfile.from_json(r.stdout).gpus == []


def test_reader_leaving_early_is_not_an_error():
    """`builddoctor probe | head -1`: the closed pipe ends the command quietly with status 0."""
    child = subprocess.Popen(
        [sys.executable, "-m", "builddoctor", "probe"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.stdout.close()  # before the child has written anything (it needs ~0.1 s to start)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert b"error" not in err and b"Traceback" not in err
