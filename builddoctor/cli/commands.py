"""Which sub-commands exist. Each module holds one area's commands."""

from __future__ import annotations

import importlib

import click

_MODULES = (
    "source_cmd",
    "probe_cmd",
    "check_cmd",
    "recipe_cmd",
    "build_cmd",
    "bench_cmd",
    "fix_cmd",
    "bundle_cmd",
    "tune_cmd",
)


def all_commands() -> list[click.Command]:
    found: list[click.Command] = []
    for name in _MODULES:
        found.extend(importlib.import_module(f"builddoctor.cli.{name}").COMMANDS)  # every one ships
    return found
