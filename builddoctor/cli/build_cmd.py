"""`builddoctor build`: configure and compile llama.cpp for a plan, then verify the build here.

The plan options and the source and plan readers are shared with `fix` (fix_cmd).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from builddoctor import errors
from builddoctor.cli import console
from builddoctor.cli.options import describes_this_cpu, json_option, load_machine, machine_options
from builddoctor.profiles import BuildPlan, SchemaError
from builddoctor.readinput import read_json
from builddoctor.render.progress import ProgressView


def plan_options(func):
    func = click.option(
        "--backend",
        default="auto",
        show_default=True,
        help="cpu, cuda, vulkan, hip, metal, sycl, or auto (what this machine has).",
    )(func)
    func = click.option(
        "--goal",
        type=click.Choice(["native", "portable"]),
        default="native",
        show_default=True,
        help="native: fastest here; portable: runs on any CPU of this architecture.",
    )(func)
    func = click.option(
        "--plan",
        "plan_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="A build plan JSON (from `builddoctor recipe --save`) instead of resolving one.",
    )(func)
    func = click.option(
        "--source",
        "source_path",
        type=click.Path(path_type=Path, file_okay=False),
        help="A llama.cpp checkout to build instead of the pinned tree.",
    )(func)
    func = click.option(
        "--allow-path",
        "allowed_paths",
        multiple=True,
        metavar="PATH",
        help="Let the plan use this absolute compiler or toolkit path (a file, or a folder and "
        "what is in it), which builddoctor did not find itself. Repeatable.",
    )(func)
    return func


def read_plan_file(plan_path: Path | None) -> tuple[Path, dict, BuildPlan] | None:
    """``--plan FILE`` read and parsed: (path, document, BuildPlan), or None without one. Called before
    the source is looked at, so that a file that is no plan is refused before any fetch."""
    if plan_path is None:
        return None
    data = read_json(plan_path, "build plan", remedy="Write one with `builddoctor recipe --save plan.json`.")
    try:
        return plan_path, data, BuildPlan.from_dict(data)
    except (SchemaError, ValueError) as exc:
        raise errors.InputError(f"{plan_path} is not a builddoctor build plan: {exc}") from None


def plan_for(
    saved: tuple[Path, dict, BuildPlan] | None,
    machine,
    goal: str,
    backend: str,
    source: Path,
    host: bool = True,
    allowed_paths=(),
    recheck: bool = True,
):
    """The plan from --plan (its content checked against the plan policy before anything runs),
    or resolved for ``machine``. ``recheck``: probe this machine's toolchain for the plan's
    prerequisites (a dry run runs no tool, so it skips that)."""

    if saved is not None:
        return _saved_plan(saved, machine, source, allowed_paths, recheck)
    from builddoctor.resolve import resolve

    return resolve(machine, goal=goal, backend=backend, source=source, host=host)


def _saved_plan(saved: tuple[Path, dict, BuildPlan], here, source: Path, allowed_paths, recheck: bool):
    """A plan from `recipe --save`, maybe saved for another machine: the paths it names that are not
    here become this machine's same tools (said on stderr), its content is checked against the plan
    policy before anything runs, and its prerequisites are found again on this machine, which is the
    one that compiles (a dry run runs no tool, so it skips that)."""
    from builddoctor import build, plan_policy
    from builddoctor.probe import machine_profile
    from builddoctor.resolve import recheck_prerequisites
    from builddoctor.resolve.rebind import rebind_paths, regrade_cuda

    plan_path, data, plan = saved
    if here is None and any(os.path.isabs(o.value) and not os.path.exists(o.value) for o in plan.options):
        here = machine_profile()  # only when a path must be found again here
    for line in rebind_paths(plan, here) if here is not None else ():
        click.echo(f"builddoctor: {line}", err=True)
    rebound = {o.name: o.value for o in plan.options}
    for raw in data.get("options") or []:
        if isinstance(raw, dict) and raw.get("name") in rebound:
            raw["value"] = rebound[raw["name"]]
    env = build.environment(plan, source, build.default_cache_root())
    plan_policy.enforce(
        data, where=f"The plan {plan_path}", source=source, allowed_paths=allowed_paths, search_path=env.get("PATH")
    )
    if recheck:
        here = here or machine_profile()
        recheck_prerequisites(plan, here)
        regrade_cuda(plan, here)
        for p in plan.prerequisites:
            if p.kind == "driver" and p.status in ("too-old", "too-new"):
                click.echo(
                    f"builddoctor: warning: the machine this plan is for cannot run the build: {p.reason}", err=True
                )
    return plan


def source_tree(source_path: Path | None, dry_run: bool = False) -> tuple[Path, str]:
    """(tree, note). A dry run never fetches: a missing pinned tree is named, with what the real
    build would do about it."""
    from builddoctor import paths
    from builddoctor.source import load_pin, looks_like_llama_cpp, resolve_source

    if dry_run and source_path is None:
        root = paths.vendor_dir()
        if not looks_like_llama_cpp(root):
            pin = load_pin()
            return root, (
                f"the pinned llama.cpp source is not at {root}: the real build would first fetch "
                f"{pin.package} {pin.version} (llama.cpp {pin.short_commit}, sha256-verified) and "
                "unpack it there"
            )
        return root, ""
    return resolve_source(source_path), ""


# --------------------------------------------------------------------------- build


@click.command("build")
@plan_options
@machine_options
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 512), help="Parallel compile jobs (default: from cores and memory)."
)
@click.option("--dry-run", is_flag=True, help="Print the cmake commands without running them.")
@click.option(
    "--cuda-from-pip",
    is_flag=True,
    help="Download the pinned NVIDIA cuBLAS wheels from PyPI into builddoctor's cache (sha256-checked), "
    "merge them with this machine's CUDA toolkit there, and build against that.",
)
@json_option
@click.pass_context
def build_cmd(
    ctx,
    source_path,
    plan_path,
    goal,
    backend,
    allowed_paths,
    profile_path,
    cpuinfo_path,
    nvidia_smi_path,
    jobs,
    dry_run,
    cuda_from_pip,
    as_json,
):
    """Configure and compile llama.cpp with the resolved plan (cached: a repeat is instant)."""
    from builddoctor import build
    from builddoctor.render import build as build_view

    out = console(ctx)
    saved = read_plan_file(plan_path)
    source, note = source_tree(source_path, dry_run)
    if plan_path is None:
        machine = load_machine(profile_path, cpuinfo_path, nvidia_smi_path)
    else:  # a saved plan is built with this machine's tools (cuBLAS from PyPI with --cuda-from-pip)
        from builddoctor.probe import machine_profile

        machine = machine_profile() if cuda_from_pip else None
    if cuda_from_pip:
        _use_cuda_from_pip(machine, dry_run, out)
    here = describes_this_cpu(profile_path, cpuinfo_path)
    plan = plan_for(saved, machine, goal, backend, source, here, allowed_paths, recheck=not dry_run)
    if dry_run:
        dry = build.commands(plan, source, jobs=jobs, allowed_paths=allowed_paths)
        build_view.dry_run(dry, source, note, out, as_json=as_json)
        return
    if not as_json:
        out.echo(f"Building llama.cpp ({plan.goal}, {plan.backend}) from {source}", err=True)
    view = ProgressView(enabled=not as_json and not out.quiet)
    result = build.build(plan, source, jobs=jobs, progress=view, allowed_paths=allowed_paths)
    ver = _verify(result, machine) if result.status in ("ok", "cached") and here else None
    failure = _failure(result, ver)
    if as_json:
        out.json(result)
    elif result.status in ("ok", "cached"):
        build_view.built(result, ver, out)
    _exit(ctx, failure, as_json)


def _verify(result, machine):
    """The verification that runs: a build for this CPU counts only once its compute probe passes here
    (a plan for another machine's CPU is not run here: `check --profile` reads it statically)."""
    from builddoctor import build
    from builddoctor.probe import machine_profile

    return build.verify(result, machine or machine_profile())


def _failure(result, ver) -> errors.UserError | None:
    """Why the command fails, if it does: the build did not finish, or it does not pass verification."""
    from builddoctor.fix import build_error

    if result.status not in ("ok", "cached"):
        return build_error(result)
    if ver is None or ver.ok:
        return None
    bin_dir = Path(result.build_dir) / "bin"
    return errors.UserError(
        f"The build finished but does not pass verification on this machine: {ver.message}. "
        f"It stays at {bin_dir}; nothing was installed. `builddoctor check {bin_dir}` shows why.",
        exit_code=errors.VERIFY_FAILED,
    )


def _exit(ctx: click.Context, failure: errors.UserError | None, as_json: bool) -> None:
    """The one way out of a failed command: with --json the document was printed and only the exit
    code tells; in text the error paragraph says why."""
    if failure is None:
        return
    if as_json:
        ctx.exit(failure.exit_code)
    raise failure


def _use_cuda_from_pip(machine, dry_run: bool, out) -> None:
    """Point ``machine``'s cuBLAS at the toolkit merged with the pinned PyPI cuBLAS (made now, the one
    network step; a dry run only names what it would fetch)."""
    from builddoctor import cuda_pip

    if dry_run and cuda_pip.use_for(machine, offline=True) is None:
        wheels = cuda_pip.choose(machine.tool("nvcc").version)
        out.echo(
            f"# --cuda-from-pip: the real build would first download "
            f"{', '.join(w.requirement for w in wheels.wheels) if wheels else 'nothing (no pinned set)'} "
            "and merge it with the toolkit in builddoctor's cache.",
            err=True,
        )
    elif not dry_run:
        cuda_pip.use_for(machine, say=lambda s: out.echo(s, err=True))


COMMANDS = [build_cmd]
