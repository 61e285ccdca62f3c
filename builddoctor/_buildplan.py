"""Plan the llama.cpp bundled in the wheel: run by the top-level CMakeLists.txt at configure time.

``python -m builddoctor._buildplan --goal native --given given.tsv --out plan.cmake --json plan.json
--info bundle.json`` probes this machine, resolves the recipes into a BuildPlan, fetches the pinned
source when it is missing (sha256-verified), and writes:

- ``plan.cmake``: ``set(NAME VALUE CACHE TYPE "reason")`` for every option of the plan that the
  command line did not give (without FORCE, so a ``-D`` from CMAKE_ARGS or ``-C cmake.define.X=``
  wins), the source folder, the targets and the build commit;
- ``plan.json``: the plan as built (a BuildPlan: overridden options carry the user's value, with
  recipe ``user``), installed as ``builddoctor/_llama/plan.json``;
- ``bundle.json``: what was bundled and how (BundleInfo: commit, goal, overrides, the plan as the
  resolver made it).

It runs inside the build frontend's isolated environment, so it needs only what
``[build-system].requires`` installs (the standard library, tomli on 3.10): no click, no lief.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from builddoctor import __version__, cuda_pip, errors, paths, plan_policy
from builddoctor import source as src
from builddoctor.bundled import BundleInfo, BundleOverride
from builddoctor.cmake_bool import same_value
from builddoctor.probe import machine_profile
from builddoctor.profiles import BuildPlan, PlanOption
from builddoctor.resolve import resolve

PREFIX = "builddoctor: "

#: Options the bundle needs because llama.cpp is a subproject here (its standalone defaults are
#: off), unless the plan or the command line says otherwise.
BUNDLE_OPTIONS = (
    ("LLAMA_BUILD_COMMON", "ON", "the tools need llama.cpp's common library, off by default in a subproject build"),
    ("LLAMA_BUILD_TOOLS", "ON", "llama-cli, llama-bench and llama-quantize live in tools/"),
    ("LLAMA_BUILD_SERVER", "ON", "builds llama-server"),
    ("LLAMA_BUILD_TESTS", "OFF", "llama.cpp's tests are not bundled"),
    ("LLAMA_BUILD_EXAMPLES", "OFF", "llama.cpp's examples are not bundled"),
    ("LLAMA_BUILD_APP", "OFF", "the unified llama binary is not bundled"),
)

#: Variables of llama.cpp's namespace: given on the command line, they extend the plan.
NAMESPACE = ("GGML_", "LLAMA_")


def say(text: str) -> None:
    print(PREFIX + text, flush=True)


def read_given(path: Path | None) -> dict[str, tuple[str, str]]:
    """NAME -> (TYPE, VALUE) of the cache entries the command line gave (written by CMakeLists.txt)."""
    out: dict[str, tuple[str, str]] = {}
    if path is None or not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        name, kind, value = parts
        value = value.replace("\\n", "\n").replace("\\\\", "\\")
        out[name] = (kind, value)
    return out


def cmake_args_names(text: str) -> set[str]:
    """The names CMAKE_ARGS defines (-DNAME=V, -DNAME:TYPE=V, -D NAME=V)."""
    names: set[str] = set()
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    i = 0
    while i < len(words):
        w = words[i]
        if w == "-D" and i + 1 < len(words):
            w = "-D" + words[i + 1]
            i += 1
        if w.startswith("-D") and "=" in w:
            names.add(w[2:].split("=", 1)[0].split(":", 1)[0])
        i += 1
    return names


def _cmake_str(text: str) -> str:
    """A CMake bracket argument holding ``text`` literally."""
    n = 1
    while f"]{'=' * n}]" in text:
        n += 1
    eq = "=" * n
    return f"[{eq}[{text}]{eq}]"


def _cache_type(value: str) -> str:
    return "BOOL" if value.strip().upper() in {"ON", "OFF", "TRUE", "FALSE"} else "STRING"


def apply_overrides(
    plan: BuildPlan, given: dict[str, tuple[str, str]], cmake_args: str
) -> tuple[list[PlanOption], list[BundleOverride]]:
    """The effective options (plan + command line) and the list of what the command line changed."""
    from_env = cmake_args_names(cmake_args)

    def origin(name: str) -> str:
        return "CMAKE_ARGS" if name in from_env else "a -D define (config settings or the cmake command line)"

    effective: list[PlanOption] = []
    overrides: list[BundleOverride] = []
    planned = {o.name for o in plan.options}
    for o in plan.options:
        if o.name in given and not same_value(given[o.name][1], o.value):
            value = given[o.name][1]
            src = origin(o.name)
            overrides.append(BundleOverride(name=o.name, value=value, planned=o.value, source=src))
            effective.append(PlanOption(o.name, value, f"set by {src}; the plan had {o.value}: {o.reason}", "user"))
        else:
            effective.append(o)
    for name in sorted(given):
        if name in planned or not name.startswith(NAMESPACE):
            continue
        if name in ("LLAMA_BUILD_COMMIT", "LLAMA_BUILD_NUMBER"):
            continue
        value = given[name][1]
        src = origin(name)
        overrides.append(BundleOverride(name=name, value=value, planned=None, source=src))
        effective.append(PlanOption(name, value, f"added by {src}", "user"))
    return effective, overrides


def check_policy(plan: BuildPlan, effective: list[PlanOption], source: Path) -> None:
    """The plan as it will be built and recorded (the recipes' options and the GGML_/LLAMA_ ones the
    command line added or changed) obeys the same policy as a plan file (plan_policy): a value from
    CMAKE_ARGS is never written into plan.cmake or plan.json unchecked."""
    doc = plan.to_dict()
    doc["options"] = [o.to_dict() for o in effective]
    plan_policy.enforce(
        doc, where="The bundled build's plan (the recipes plus CMAKE_ARGS and -D defines)", source=source
    )


def build_commit(source: Path, pinned: bool) -> tuple[str, int]:
    """What the binaries report as their commit and build number."""
    if pinned:
        pin = src.load_pin()
        return pin.short_commit, pin.build_number
    commit = src._git_commit(source)  # noqa: SLF001 - same package
    return (commit or "unknown"), 0


def plan_for_this_machine(goal: str, backend: str, source: Path | None) -> BuildPlan:
    smi = os.environ.get("BUILDDOCTOR_NVIDIA_SMI", "")
    machine = machine_profile(nvidia_smi=Path(smi) if smi else None)  # a recorded GPU: build for it here
    if os.environ.get("BUILDDOCTOR_CUDA_FROM_PIP", "") not in ("", "0") and backend in ("cuda", "auto"):
        cuda_pip.use_for(machine, say=say)  # cuBLAS from the pinned PyPI wheel, asked for by name
    plan = resolve(machine, goal=goal, backend=backend, source=source)
    blocking = [
        p
        for p in plan.prerequisites
        if p.status not in ("found", "unchecked") and p.kind != "driver" and p.name not in ("cmake", "ninja")
    ]
    if blocking and backend == "auto" and plan.backend != "cpu":
        first = blocking[0]
        note = (
            f"the {plan.backend} backend was planned for this machine, but {first.name} is {first.status}"
            f"{' (' + first.reason + ')' if first.reason else ''}: the bundled build is CPU-only. Install "
            f"{first.name} and reinstall builddoctor for the {plan.backend} build."
        )
        say("warning: " + note)
        plan = resolve(machine, goal=goal, backend="cpu", source=source)
        plan.notes.insert(0, note)
        blocking = [
            p
            for p in plan.prerequisites
            if p.status not in ("found", "unchecked") and p.kind != "driver" and p.name not in ("cmake", "ninja")
        ]
    if blocking:
        lines = []
        for p in blocking:
            how = "; ".join(f"{k}: {v}" for k, v in p.install.items())
            lines.append(
                f"{p.name} is {p.status}" + (f" ({p.reason})" if p.reason else "") + (f" [{how}]" if how else "")
            )
        raise errors.UserError(
            f"the {plan.backend} build of the bundled llama.cpp cannot start: " + "; ".join(lines) + ". Install it, "
            "choose another backend (BUILDDOCTOR_BACKEND=cpu) or install without the binaries "
            "(BUILDDOCTOR_BINARY=skip).",
            exit_code=errors.TOOLCHAIN,
        )
    return plan


def locate_source(requested: str) -> tuple[Path, bool, str]:
    """(tree, pinned?, description). Fetches the pinned tree when it is missing."""
    if requested:
        root = src.resolve_source(Path(requested))
        return root, False, f"{root} (a llama.cpp checkout given with BUILDDOCTOR_LLAMA_SOURCE)"
    root = paths.vendor_dir()
    pin = src.load_pin()
    if not src.looks_like_llama_cpp(root):
        say(
            f"no llama.cpp source at {root}: fetching the pinned {pin.package} {pin.version} "
            f"(llama.cpp {pin.short_commit}) from the package registry"
        )
        t0 = time.monotonic()
        result = src.fetch(echo=say)
        say(f"{result.message} ({time.monotonic() - t0:.0f} s)")
    manifest = src._read_manifest(root)  # noqa: SLF001 - same package
    if manifest is not None and manifest.get("commit") == pin.commit:
        return root, True, f"{root} (pinned llama.cpp {pin.short_commit}, from {pin.package} {pin.version})"
    return root, False, f"{root} (a llama.cpp tree builddoctor did not fetch; used as it is)"


def write_cmake(
    path: Path,
    plan: BuildPlan,
    effective: list[PlanOption],
    given: dict[str, tuple[str, str]],
    source: Path,
    pinned: bool,
    commit: str,
    number: int,
) -> None:
    lines = [
        "# Written by builddoctor._buildplan at configure time; see builddoctor/_llama/plan.json.",
        f"set(BUILDDOCTOR_LLAMA_SOURCE_DIR {_cmake_str(source.as_posix())})",
        f"set(BUILDDOCTOR_LLAMA_PINNED {'ON' if pinned else 'OFF'})",
        f"set(BUILDDOCTOR_TARGETS {_cmake_str(';'.join(plan.targets))})",
        f"set(BUILDDOCTOR_OMIT_CPU_VARIANTS {_cmake_str(';'.join(plan.omit_cpu_variants))})",
        f"set(BUILDDOCTOR_PLAN_NAMES {_cmake_str(';'.join(o.name for o in effective))})",
    ]
    for o in effective:
        if o.name in given:
            continue  # the command line set it; the cache already holds it
        doc = f"{o.reason} [builddoctor recipe {o.recipe}]"
        lines.append(f"set({o.name} {_cmake_str(o.value)} CACHE {_cache_type(o.value)} {_cmake_str(doc)})")
    if "LLAMA_BUILD_COMMIT" not in given:
        lines.append(f"set(LLAMA_BUILD_COMMIT {_cmake_str(commit)})")
    if "LLAMA_BUILD_NUMBER" not in given:
        lines.append(f"set(LLAMA_BUILD_NUMBER {number})")
    for key, value in plan.env.items():
        lines.append(f"if(NOT DEFINED ENV{{{key}}})\n  set(ENV{{{key}}} {_cmake_str(value)})\nendif()")
    _write_if_changed(path, "\n".join(lines) + "\n")


def _write_if_changed(path: Path, text: str) -> None:
    """Keep the file (and its time stamp) when nothing changed, so a rerun rebuilds nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def report(
    plan: BuildPlan, effective: list[PlanOption], overrides: list[BundleOverride], source_text: str, commit: str
) -> None:
    m = plan.machine
    say(f"llama.cpp source: {source_text}, build commit {commit}")
    if m is not None:
        cpu = m.cpu
        feats = ", ".join(f for f in cpu.features if f.startswith(("AVX512", "AVX2", "AMX", "SVE", "DOTPROD")))
        say(
            f"machine: {cpu.model or cpu.vendor or cpu.arch} ({cpu.microarch or cpu.variant or cpu.arch}"
            f"{': ' + feats if feats else ''}), {m.os} {m.arch}"
        )
    say(f"plan: goal {plan.goal}, backend {plan.backend}, recipes {', '.join(plan.recipes)}")
    width = max((len(o.name) + len(o.value) for o in effective), default=0) + 1
    for o in effective:
        setting = f"{o.name}={o.value}"
        say(f"  {setting:<{width}}  {o.reason} [{o.recipe}]")
    for s in plan.skipped:
        say(f"  {s.what}: {s.reason}")
    for n in plan.notes:
        say(f"note: {n}")
    for ov in overrides:
        if ov.planned is None:
            say(f"override: {ov.name}={ov.value} added by {ov.source}")
        else:
            say(f"override: {ov.name}={ov.value} set by {ov.source} (the plan had {ov.planned})")
    say(f"targets: {', '.join(plan.targets)}; installed into builddoctor/_llama/bin")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        say(f"planning the bundled llama.cpp (goal {args.goal}, backend {args.backend}; builddoctor {__version__})")
        plan_bundle(args)
    except errors.UserError as exc:
        print(f"builddoctor: error: {exc.message}" + (f"\n{exc.hint}" if exc.hint else ""), file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m builddoctor._buildplan", description=__doc__.splitlines()[0])
    ap.add_argument("--goal", default="native", choices=["native", "portable"])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--source", default="", help="a llama.cpp checkout instead of the pinned tree")
    ap.add_argument("--given", type=Path, help="NAME<TAB>TYPE<TAB>VALUE lines of the command line's cache entries")
    ap.add_argument("--out", type=Path, required=True, help="the CMake file to write")
    ap.add_argument("--json", type=Path, required=True, help="the effective BuildPlan JSON to write")
    ap.add_argument("--info", type=Path, required=True, help="the BundleInfo JSON to write")
    return ap.parse_args(argv)


def plan_bundle(args: argparse.Namespace) -> None:
    """Plan, check and write plan.cmake, plan.json and bundle.json, then say what was planned."""
    source, pinned, source_text = locate_source(args.source)
    plan = plan_for_this_machine(args.goal, args.backend, source)
    add_bundle_options(plan)
    given = read_given(args.given)
    cmake_args = os.environ.get("CMAKE_ARGS", "")
    effective, overrides = apply_overrides(plan, given, cmake_args)
    check_policy(plan, effective, source)
    commit, number = build_commit(source, pinned)
    if "LLAMA_BUILD_COMMIT" in given:
        commit = given["LLAMA_BUILD_COMMIT"][1]
    write_cmake(args.out, plan, effective, given, source, pinned, commit, number)
    planned = list(plan.options)
    plan.options = effective
    if overrides:
        plan.notes.append(
            "options changed at install time: "
            + ", ".join(
                f"{o.name}={o.value}" + (f" (plan: {o.planned})" if o.planned is not None else "") for o in overrides
            )
        )
    _write_if_changed(args.json, plan.to_json() + "\n")
    info = bundle_info(
        plan, planned, overrides, cmake_args=cmake_args, source=source, pinned=pinned, build=(commit, number)
    )
    _write_if_changed(args.info, info.to_json() + "\n")
    report(plan, effective, overrides, source_text, commit)


def add_bundle_options(plan: BuildPlan) -> None:
    """BUNDLE_OPTIONS the plan does not set itself (llama.cpp is a subproject here)."""
    names = {o.name for o in plan.options}
    for name, value, reason in BUNDLE_OPTIONS:
        if name not in names:
            plan.options.append(PlanOption(name, value, reason, "bundle"))


def bundle_info(
    plan: BuildPlan,
    planned: list[PlanOption],
    overrides: list[BundleOverride],
    *,
    cmake_args: str,
    source: Path,
    pinned: bool,
    build: tuple[str, int],
) -> BundleInfo:
    """What bundle.json records: the plan as the resolver made it, what the command line changed,
    and the commit and build number the binaries report (``build``)."""
    pin = None
    if pinned:
        pin = src.load_pin()
    return BundleInfo(
        builddoctor_version=__version__,
        goal=plan.goal,
        backend=plan.backend,
        llama_commit=build[0],
        llama_build_number=build[1],
        llama_version=pin.llama_version if pin else None,
        source="pinned" if pinned else "checkout",
        source_path=str(source),
        targets=list(plan.targets),
        overrides=overrides,
        planned=planned,
        cmake_args=cmake_args,
        built_on=(plan.machine.cpu.model if plan.machine else ""),
    )


if __name__ == "__main__":
    sys.exit(main())
