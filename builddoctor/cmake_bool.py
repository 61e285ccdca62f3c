"""CMake's reading of a value as a switch (ON/OFF), one definition for the whole tool. Standard
library only: the build backend (_buildplan) imports it before any dependency is installed."""

from __future__ import annotations

_TRUE = {"ON", "TRUE", "YES", "Y", "1"}
_FALSE = {"OFF", "FALSE", "NO", "N", "0", "", "IGNORE", "NOTFOUND"}


def is_on(value: str | None) -> bool:
    """CMake's reading of a switch as true (ON, TRUE, YES, Y, 1, any case): the one definition."""
    return value is not None and value.strip().upper() in _TRUE


def is_off(value: str | None) -> bool:
    """CMake's reading of a set switch as false (OFF, FALSE, NO, N, 0, '', IGNORE, NOTFOUND, *-NOTFOUND)."""
    if value is None:
        return False
    v = value.strip().upper()
    return v in _FALSE or v.endswith("-NOTFOUND")


def same_value(a: str, b: str) -> bool:
    """Equal as CMake would read them: ON/TRUE/1 alike, OFF/FALSE/0 alike, else the exact string."""
    ua, ub = a.strip().upper(), b.strip().upper()
    if (ua in _TRUE or ua in _FALSE) and (ub in _TRUE or ub in _FALSE):
        return (ua in _TRUE) == (ub in _TRUE)
    return a == b
