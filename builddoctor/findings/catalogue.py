"""The catalogue of checks (checks.toml) and how a rule's evidence becomes a Finding.

Every finding code builddoctor prints is declared here, with its area, severity and the words it
says; a rule (findings/rules/, or flagcheck for the cmake-option codes) only returns a ``Hit``:
the template values, and which of its codes and variants fired.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path
from typing import Any

from builddoctor import errors
from builddoctor.profiles import Finding, Hit
from builddoctor.tomlload import load_toml

CATALOGUE = Path(__file__).with_name("checks.toml")
SEVERITIES = ("error", "warning", "info", "ok")
TEXT_KEYS = ("title", "evidence", "fix", "speedup")


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, Any]:
    """checks.toml, read once, its codes checked for form."""
    data = load_toml(CATALOGUE)
    _check_form(data)
    return data


def _check_form(data: dict[str, Any]) -> None:
    codes: set[str] = set()
    for check in data["check"]:
        bad = (
            check.get("code") in codes
            or check.get("severity") not in SEVERITIES
            or check.get("area") not in data["areas"]
            or not isinstance(check.get("rule"), str)
        )
        if bad:
            raise errors.UserError(
                f"{CATALOGUE}: check {check.get('code')} is duplicated or malformed", exit_code=errors.INTERNAL
            )
        codes.add(check["code"])


def check_for(code: str) -> dict[str, Any]:
    """The [[check]] table of ``code`` (KeyError for a code the catalogue does not declare: a bug)."""
    for check in catalogue()["check"]:
        if check["code"] == code:
            return check
    raise KeyError(f"finding code {code} is not declared in {CATALOGUE.name}")


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def fill(template: str, values: dict[str, Any]) -> str:
    """A template with {names} from ``values`` ('?' for one it lacks; the template as is when malformed)."""
    try:
        return string.Formatter().vformat(template, (), _Values(values))
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        return template


def render(check: dict[str, Any], hit: Hit, extra: dict[str, Any] | None = None) -> Finding:
    """The Finding a check's hit makes: its (or its variant's) words filled with the hit's values."""
    words = dict(check)
    if hit.variant:
        words.update(check.get("variants", {})[hit.variant])
    values = {**(extra or {}), **hit.values}
    severity = words["severity"]
    if severity not in SEVERITIES:
        raise ValueError(f"check {check['code']}: severity {severity!r} is not one of {SEVERITIES}")
    return Finding(
        code=check["code"],
        severity=severity,
        area=check["area"],
        **{k: fill(words.get(k, ""), values) for k in TEXT_KEYS},
    )


def finding(hit: Hit) -> Finding:
    """The Finding for a hit that names its code (for callers outside `check`: `builddoctor flags`)."""
    return render(check_for(hit.code), hit)
