"""The bundle view: the llama.cpp shipped in the package (``builddoctor which``) and ``tune``'s build."""

from __future__ import annotations

from typing import Any

from builddoctor.console import Console


def which(data: dict[str, Any], out: Console) -> None:
    """``data``: the bundle's description (``which --json``): binaries, how they were built, the plan."""
    info, plan = data["info"] or {}, data["plan"] or {}
    out.echo(out.style("bundled llama.cpp", bold=True) + f" in {data['dir']}")
    width = max((len(n) for n in data["binaries"]), default=0)
    for name, path in data["binaries"].items():
        out.echo(f"  {name:<{width}}  {path}")
    if data["libraries"]:
        out.echo(f"  libraries: {', '.join(data['libraries'])}")
    if info:
        _built_from(info, out)
    if plan:
        _plan(plan, out)
    for o in info.get("overrides") or []:
        planned = f" (the plan had {o['planned']})" if o.get("planned") is not None else " (not in the plan)"
        out.echo(out.style("overridden", "warning") + f": {o['name']}={o['value']} by {o['source']}{planned}")
    if data.get("tuned"):
        tuned(data["tuned"], out)
    out.echo(
        "start them with `builddoctor run llama-server ...` or `builddoctor-server ...` "
        "(also builddoctor-cli, builddoctor-bench, builddoctor-quantize)"
    )


def _built_from(info: dict[str, Any], out: Console) -> None:
    version = f"llama.cpp {info.get('llama_version') or ''} commit {info['llama_commit']}".replace("  ", " ")
    source = "pinned source" if info.get("source") == "pinned" else f"checkout {info.get('source_path')}"
    built_on = f", tuned for {info['built_on']}" if info.get("built_on") and info["goal"] == "native" else ""
    out.echo(f"built from {version} ({source}): goal {info['goal']}, backend {info['backend']}{built_on}")


def _plan(plan: dict[str, Any], out: Console) -> None:
    """The plan's options, the user's own marked."""
    recipes = f" (recipes {', '.join(plan.get('recipes', []))})" if plan.get("recipes") else ""
    out.echo(out.style("plan", bold=True) + recipes)
    for o in plan.get("options", []):
        mark = out.style("!", "warning") if o["recipe"] == "user" else " "
        out.echo(f" {mark} {o['name']}={o['value']}  " + out.style(o["reason"], "dim"))


def tuned(settings: dict[str, Any], out: Console) -> None:
    """``tune``'s installed winner and the run-time settings ``builddoctor run`` starts it with."""
    out.echo(
        out.style("tuned", bold=True) + f" (`builddoctor tune`, {settings['objective']}): winner {settings['winner']}, "
        f"installed in {settings['bin_dir']}; settings in {settings['file']}: {settings['reason']}"
    )
    for key in ("server", "cli"):
        if settings[key]:
            out.echo("  " + " ".join(settings[key]))
    out.echo("  (`builddoctor run llama-server ...` starts it with these; your own flags win)")
