"""Version comparison, one implementation (packaging's PEP 440 reading, which takes "2.38",
"12.4" and "0.5.0"); a string that is no version, or a forged one with digits too many for int(),
reads as None and sorts first, never raises."""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version


def parse(text: str | None) -> Version | None:
    """``text`` as a Version, or None."""
    if not text:
        return None
    try:
        return Version(text)
    except (InvalidVersion, ValueError, TypeError):  # ValueError: a number too long for int()
        return None


def sort_key(text: str | None) -> tuple[int, Version]:
    """A key that orders versions, with what is not a version before all of them."""
    v = parse(text)
    return (0, Version("0")) if v is None else (1, v)


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """The first dotted number in ``text`` as a tuple of ints (nvcc, driver and toolkit versions)."""
    if not text:
        return None
    # parts of at most 9 digits: a 5000-digit "version" from a recorded file is none (and no int() limit error)
    m = re.search(r"(?<!\d)\d{1,9}(?:\.\d{1,9})*(?![\d])", text)
    if not m:
        return None
    return tuple(int(x) for x in m.group(0).split("."))
