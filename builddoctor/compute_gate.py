"""The compute probe as a gate for `pip install .`: the bundled llama.cpp must compute here.

``python -m builddoctor.compute_gate BIN_DIR [--record FILE]`` runs the compute probe (a real inference on the
probe model, builddoctor.inspect.compute) with the build's llama-bench; run by the top-level
CMakeLists.txt after the bundled tools are built, so that a build that dies on its first matrix
multiplication fails the install instead of being shipped. It needs only what
``[build-system].requires`` installs (gguf and numpy write the probe model).
Exit 0: it computed; 1: it did not (one paragraph says how, and what to do); 2: bad usage.
"""

from __future__ import annotations

import sys
from pathlib import Path

from builddoctor import known_bad
from builddoctor.inspect import compute
from builddoctor.probe import machine_profile
from builddoctor.smoke_model import ensure_probe_model


def gate(bin_dir: Path, record: Path | None = None) -> tuple[bool, str]:
    """Run the compute probe on ``bin_dir``'s program; with ``record``, write its ComputeResult there
    (the wheel carries it as builddoctor/_llama/compute.json)."""
    names = [p.name for p in bin_dir.iterdir()] if bin_dir.is_dir() else []
    found = compute.program_for(names)
    if found is None:
        return True, f"builddoctor: no program in {bin_dir} that the compute probe knows how to run; not probed"
    name, prog = found
    absent = compute.device_not_here(names=names)
    if absent is not None:  # a CPU-fallback speed would vouch for nothing of the GPU code
        if record is not None:
            record.write_text(compute.not_run(absent).to_json() + "\n", encoding="utf-8")
        return True, f"builddoctor: {absent['why']}: built for its GPU, not run (the {name} was not started)"
    res = compute.run_inference(bin_dir / name, prog, ensure_probe_model())
    if record is not None:
        record.write_text(res.to_json() + "\n", encoding="utf-8")
    if res.ok:
        speeds = ", ".join(f"{k} {v:.0f} t/s" for k, v in (("prompt", res.pp_tps), ("generation", res.tg_tps)) if v)
        return True, f"builddoctor: the bundled {name} computes here ({res.backend or 'CPU'}, {speeds})"
    how = (
        f"died with {res.signal}"
        if res.signal
        else f"did not finish in {res.timeout_s:g} s"
        if res.timed_out
        else f"could not start ({res.error})"
        if res.error
        else res.problem
    )

    cpu = machine_profile().cpu.features
    rows = known_bad.applying(cpu, None)
    cause = (
        f" A known llama.cpp bug on this CPU may be the cause: {rows[0].title} (known-bad row {rows[0].id}; "
        f"{rows[0].source_text}); add it to builddoctor/data/known_bad.toml's range if a newer llama.cpp "
        "still has it."
        if rows
        else ""
    )
    return False, (
        f"builddoctor: the bundled llama.cpp does not compute on this machine: `{' '.join(res.argv)}` "
        f"(a real inference on a tiny model) {how}.{cause} The install stops here rather than ship a "
        "build that crashes. Try `BUILDDOCTOR_GOAL=portable pip install .` (CPU variants chosen at "
        "run time), or `BUILDDOCTOR_BINARY=skip pip install .` for the Python tool alone. Last output: "
        + (" ".join(res.output.split())[-400:] or "(none)")
    )


def main(argv: list[str]) -> int:
    record = None
    if len(argv) == 3 and argv[1] == "--record":
        record = Path(argv[2])
    elif len(argv) != 1:
        print("usage: python -m builddoctor.compute_gate BIN_DIR [--record FILE]", file=sys.stderr)
        return 2
    ok, message = gate(Path(argv[0]), record)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
