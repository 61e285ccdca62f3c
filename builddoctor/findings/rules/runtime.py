"""The runtime area: what running the build here said (--version runs and the compute probe)."""

from __future__ import annotations

from typing import Any

from builddoctor.findings.areas import Context, rule, validator
from builddoctor.findings.rules.base import _comparable, _known_bad, _name, _no_flags
from builddoctor.profiles import BuildProfile, MachineProfile


def _argv(r) -> str:
    return " ".join([_name(r.argv[0])] + list(r.argv[1:])) if r.argv else "?"


def _lacking(build: BuildProfile, machine: MachineProfile) -> list[str]:
    """Instruction sets in the build's code that this CPU lacks (what a SIGILL points at)."""
    return sorted((set(build.isa) & _comparable(machine)) - set(machine.cpu.features))


@rule
def runtime_sigill(build, machine, ctx):
    for r in build.runtime:
        if r.signal == "SIGILL":
            return {"argv": _argv(r), "extra": ", ".join(_lacking(build, machine)) or "instructions"}
    return None


@rule
def runtime_hang(build, machine, ctx):
    for r in build.runtime:
        if r.timed_out:
            return {"argv": _argv(r), "timeout": float(ctx.extra.get("timeout", 5.0))}
    return None


@rule
def runtime_crash(build, machine, ctx):
    for r in build.runtime:
        if r.signal and r.signal != "SIGILL":
            return {"argv": _argv(r), "how": f"died with {r.signal}", "output": r.output.strip()[-300:]}
        if r.error:
            return {"argv": _argv(r), "how": f"could not start: {r.error}", "output": r.output.strip()[-300:]}
    return None


def _output_tail(text: str, n: int = 300) -> str:
    text = " ".join(text.strip().split())
    return ("..." + text[-n:]) if len(text) > n else (text or "(none)")


def _compute_what(c) -> str:
    if c.kind == "dlopen":
        return "dlopen in a child process"
    return f"the {c.threads}-thread inference of a 2-layer model, a few tokens"


@rule
def compute_crash(build, machine, ctx):
    c = build.compute
    if c is None or c.kind != "inference" or not c.signal:
        return None
    ev = {
        "argv": _argv(c),
        "signal": c.signal,
        "seconds": c.seconds,
        "what": _compute_what(c),
        "output": _output_tail(c.output),
        "why": "",
    }
    rows = _known_bad(build, machine, c.signal)
    extra = _lacking(build, machine)
    if rows:
        r = rows[0]
        ev["cause"] = f"a known llama.cpp bug on this CPU: {r.short or r.title}"
        ev["why"] = (
            f"; the build's CPU code contains {', '.join(sorted(set(r.code_any) & set(build.isa)))}, and "
            f"{r.title[0].lower() + r.title[1:]} (known-bad row {r.id}: {r.source_text})"
        )
        ev["fix"] = (
            f"builddoctor fix --rebuild {build.root}   (builddoctor plans the CPU code without "
            f"{', '.join(r.avoid)} while this llama.cpp is affected; by hand: add {_no_flags(r.avoid, ctx)} "
            "to CMAKE_C_FLAGS and CMAKE_CXX_FLAGS, or configure with GGML_NATIVE=OFF and the ISA options)"
        )
    elif c.signal == "SIGILL" and extra:
        ev["cause"] = f"the CPU code uses {', '.join(extra)}, which this CPU lacks"
        ev["fix"] = f"rebuild for this CPU: builddoctor fix --rebuild {build.root}"
    else:
        gpu = [b for b in build.backends if b not in ("CPU", "BLAS", "RPC")]
        if gpu:
            ev["cause"] = (
                f"no static fact of this build explains it; it carries the {', '.join(gpu)} backend, "
                "which may die while it starts its device"
            )
            ev["fix"] = (
                f"run `{_argv(c)}` by hand, then with -ngl 0 to see whether the GPU backend is the cause; "
                f"rebuild: builddoctor fix --rebuild {build.root}"
            )
        else:
            ev["cause"] = "no static fact of this build explains it (a bug in this llama.cpp, or a damaged file)"
            ev["fix"] = f"run `{_argv(c)}` by hand to see where; rebuild: builddoctor fix --rebuild {build.root}"
    return ev


@rule
def compute_hang(build, machine, ctx):
    c = build.compute
    if c is None or c.kind != "inference" or not c.timed_out:
        return None
    return {"argv": _argv(c), "timeout": c.timeout_s, "what": _compute_what(c), "output": _output_tail(c.output)}


@rule
def compute_failed(build, machine, ctx):
    c = build.compute
    if c is None or c.kind != "inference" or c.ok or c.signal or c.timed_out:
        return None
    how = f"could not start it: {c.error}" if c.error else (c.problem or "no result")
    return {"argv": _argv(c), "how": how, "what": _compute_what(c), "output": _output_tail(c.output)}


# --------------------------------------------------------------------------- the ok line


@validator("runtime")
def runtime_ok(build: BuildProfile, machine: MachineProfile, ctx: Context) -> dict[str, Any] | None:
    c = build.compute
    if build.runtime and all(r.returncode == 0 for r in build.runtime) and (c is None or c.ok):
        names = ", ".join(" ".join([_name(r.argv[0])] + r.argv[1:]) for r in build.runtime)
        devices = f"; devices: {', '.join(build.devices)}" if build.devices else ""
        text = f"{names} answered{devices}"
        if c is not None and c.kind == "inference":
            text = f"{_compute_line(c)}; {text}"
        return {"runtime_ok": text}
    if c is not None and c.ok:
        return {"runtime_ok": _compute_line(c)}
    return None


def _compute_line(c) -> str:
    """The ok line of a compute probe that ran: what ran where, and its tokens/s (information)."""
    if c.kind == "dlopen":
        return f"{_name(c.argv[0])} loads (dlopen in a child process, {c.seconds:.2f} s)"
    speeds = [f"{label} {v:.0f} t/s" for label, v in (("prompt", c.pp_tps), ("generation", c.tg_tps)) if v]
    on = f"{c.backend} on {c.device}" if c.backend and c.device else c.backend
    where = ", ".join(x for x in (on or "", f"{c.threads} threads" if c.threads else "") if x)
    return (
        f"a real inference ran ({_name(c.argv[0])} on the probe model{', ' + where if where else ''}"
        f"{': ' + ', '.join(speeds) if speeds else ''})"
    )
