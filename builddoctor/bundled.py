"""The llama.cpp compiled into the installed package by ``pip install builddoctor``.

The wheel build (top-level CMakeLists.txt + ``builddoctor._buildplan``) installs llama-server,
llama-cli, llama-bench and llama-quantize with their shared libraries into
``builddoctor/_llama/bin`` (RPATH ``$ORIGIN``: the folder can move), and beside it ``plan.json``
(the BuildPlan as built), ``bundle.json`` (BundleInfo: commit, goal, overrides) and a
``CMakeCache.txt`` trimmed to the llama.cpp options. A wheel built with
``BUILDDOCTOR_BINARY=skip`` has none of it: ``bundled_dir()`` is then None.

The console scripts ``builddoctor-server``, ``-cli``, ``-bench`` and ``-quantize`` start the
bundled tools in place of the Python process (``os.execv``): a server is not a child with a time
limit, and the user's environment (CUDA_VISIBLE_DEVICES, LLAMA_ARG_*...) reaches it unchanged.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import errors, paths
from builddoctor.profiles import (
    SCHEMA_VERSION,
    BuildPlan,
    PlanOption,
    SchemaError,
    Serializable,
    _from_plain,
    check_schema,
)
from builddoctor.readinput import read_json

#: The tools in the bundle, by the short names the console scripts and ``builddoctor run`` accept.
TOOLS = {
    "server": "llama-server",
    "cli": "llama-cli",
    "bench": "llama-bench",
    "quantize": "llama-quantize",
}

BUNDLE_SUBDIR = "_llama"


class NotBundledError(errors.UserError):
    """This builddoctor was installed without the compiled llama.cpp (or without that tool)."""

    exit_code = errors.NOT_BUNDLED


@dataclass
class BundleOverride(Serializable):
    name: str
    value: str
    planned: str | None = None  # None: an option the plan did not set (an extension)
    source: str = ""  # CMAKE_ARGS, or a -D define (config settings)


@dataclass
class BundleInfo(Serializable):
    """How the bundled llama.cpp was built (``builddoctor/_llama/bundle.json``)."""

    builddoctor_version: str
    goal: str  # native, portable
    backend: str
    llama_commit: str
    schema_version: int = SCHEMA_VERSION
    llama_build_number: int = 0
    llama_version: str | None = None
    source: str = "pinned"  # pinned, checkout
    source_path: str = ""
    targets: list[str] = field(default_factory=list)
    overrides: list[BundleOverride] = field(default_factory=list)
    planned: list[PlanOption] = field(default_factory=list)  # the plan as the resolver made it
    cmake_args: str = ""  # CMAKE_ARGS at build time
    built_on: str = ""  # the CPU of the machine it was built (and tuned) for

    @classmethod
    def from_dict(cls, data) -> BundleInfo:
        check_schema(data, "bundle record")
        return _from_plain(cls, data, "bundle")


# --------------------------------------------------------------------------- where


def _candidates() -> list[Path]:
    env = os.environ.get("BUILDDOCTOR_BUNDLED_DIR")
    if env:
        return [Path(env).expanduser()]
    found = [paths.PACKAGE_DIR / BUNDLE_SUBDIR]
    # An editable install keeps the package in the checkout and the compiled files in site-packages.
    for key in ("platlib", "purelib"):
        try:
            found.append(Path(sysconfig.get_paths()[key]) / "builddoctor" / BUNDLE_SUBDIR)
        except KeyError:
            continue
    return found


def bundle_root() -> Path | None:
    """``builddoctor/_llama``: the bundle with its records, or None when nothing is bundled."""
    for root in _candidates():
        if (root / "bin").is_dir() and any(_exe(root / "bin", t) is not None for t in TOOLS.values()):
            return root
    return None


def bundled_dir() -> Path | None:
    """The folder holding the bundled llama.cpp binaries and libraries, or None when nothing is bundled."""
    root = bundle_root()
    return root / "bin" if root is not None else None


def _exe(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def binaries() -> dict[str, Path]:
    """Tool name (llama-server...) -> path, for the tools that are bundled."""
    folder = bundled_dir()
    if folder is None:
        return {}
    out = {}
    for name in TOOLS.values():
        exe = _exe(folder, name)
        if exe is not None:
            out[name] = exe
    return out


def libraries() -> list[Path]:
    folder = bundled_dir()
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and (".so" in p.name or p.suffix in (".dylib", ".dll")))


def plan() -> BuildPlan | None:
    """The plan the bundled build was made with (overrides included), or None."""
    root = bundle_root()
    if root is None or not (root / "plan.json").is_file():
        return None
    return _record(root / "plan.json", BuildPlan)


def info() -> BundleInfo | None:
    root = bundle_root()
    if root is None or not (root / "bundle.json").is_file():
        return None
    return _record(root / "bundle.json", BundleInfo)


def _record(path: Path, cls):
    """A record of the bundle, read with the bounded reader; a damaged one is named, not a crash."""
    remedy = "Reinstall builddoctor (`pip install --force-reinstall builddoctor`)."
    try:
        return cls.from_dict(read_json(path, f"bundle record {path.name}", remedy=remedy))
    except errors.InputError as exc:
        raise NotBundledError(f"The bundled llama.cpp is damaged: {exc.message}") from None
    except SchemaError as exc:
        raise NotBundledError(
            f"The bundled llama.cpp is damaged: {path} is not a usable record ({exc}). {remedy}"
        ) from None


def tool_name(name: str) -> str:
    """``server`` or ``llama-server`` -> ``llama-server``; anything else is refused."""
    short = name[len("llama-") :] if name.startswith("llama-") else name
    if short not in TOOLS:
        raise errors.InputError(
            f"'{name}' is not a bundled tool: use one of {', '.join(TOOLS.values())} (or {', '.join(TOOLS)})."
        )
    return TOOLS[short]


def binary(name: str) -> Path:
    """The bundled executable for ``name`` (llama-server or server...), or a NotBundledError."""
    full = tool_name(name)
    folder = bundled_dir()
    if folder is None:
        raise NotBundledError(
            "this builddoctor has no bundled llama.cpp: it was installed without the binaries "
            "(BUILDDOCTOR_BINARY=skip, or a pure-Python wheel). Reinstall with them: "
            "`pip install --force-reinstall --no-binary builddoctor builddoctor` (from a checkout: `pip install .`), "
            "or build one with `builddoctor build`."
        )
    exe = _exe(folder, full)
    if exe is None:
        raise NotBundledError(
            f"{full} is not in the bundled llama.cpp at {folder} (bundled: {', '.join(binaries()) or 'nothing'})."
        )
    return exe


# --------------------------------------------------------------------------- run


def exec_tool(name: str, args: list[str]) -> None:
    """Replace this process with the bundled tool (never returns)."""
    exec_argv([str(binary(name)), *args])


def exec_argv(argv: list[str]) -> None:
    """Replace this process with ``argv`` (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        raise NotBundledError(f"could not start {argv[0]}: {exc.strerror or exc}.") from None


def _console_main(short: str) -> None:
    try:
        exec_tool(short, sys.argv[1:])
    except errors.UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


def server_main() -> None:
    _console_main("server")


def cli_main() -> None:
    _console_main("cli")


def bench_main() -> None:
    _console_main("bench")


def quantize_main() -> None:
    _console_main("quantize")
