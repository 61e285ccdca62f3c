"""Read TOML with file name and line in every error (tomllib, or tomli before 3.11)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from builddoctor.errors import UserError
from builddoctor.readinput import JSON_CAP

TOMLDecodeError = tomllib.TOMLDecodeError


def load_toml(path: Path) -> dict[str, Any]:
    from builddoctor.readinput import read_text

    text = read_text(path, "TOML file", cap=JSON_CAP, truncate=False).text
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
