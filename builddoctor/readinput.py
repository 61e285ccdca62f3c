"""One bounded reader for every file a user (or another machine) hands builddoctor.

Profiles, plans, --cpuinfo/--nvidia-smi dumps, CMakeCache.txt and markers are foreign input:
a FIFO would block a plain ``open()`` forever, ``/dev/zero`` never ends, a 1.5 GB cache file
costs gigabytes. So every such file is opened non-blocking, must be a regular file (fstat),
and is read up to a cap; text beyond the cap is cut and the caller is told, JSON beyond it is
refused (half a JSON document means nothing). JSON is parsed with bounded nesting, bounded
integers and no NaN/Infinity, so no document can reach a RecursionError or an OverflowError
later. Every refusal is an ``InputError`` (exit 2) with one paragraph naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NoReturn

from builddoctor.errors import InputError, os_reason

#: caps, in bytes: far above any real file of the kind (a 1024-thread /proc/cpuinfo is ~1.5 MB)
TEXT_CAP = 16 * 2**20
JSON_CAP = 8 * 2**20
#: JSON nesting deeper than this is no builddoctor document (a profile nests 4 levels)
MAX_DEPTH = 64
#: integer literals longer than this are no count, size or version builddoctor writes
MAX_INT_DIGITS = 40

_CHUNK = 2**20


@dataclass(frozen=True)
class InputText:
    """A file's text, and whether it was cut at the cap (the caller says so in its output)."""

    path: str
    text: str
    truncated: bool
    cap: int

    def cut_note(self, what: str) -> str:
        return cut_note(self.path, what, self.cap)


def cut_note(path: str | os.PathLike[str], what: str, cap: int = TEXT_CAP) -> str:
    """The sentence that tells the user what was not read."""
    return f"{os.fspath(path)} was read only up to its first {_size(cap)}: the rest of this {what} was ignored."


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"


def _remedy(remedy: str) -> str:
    return f" {remedy}" if remedy else ""


def read_bytes(
    path: str | os.PathLike[str], what: str, *, cap: int = TEXT_CAP, remedy: str = "", truncate: bool = True
) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of a regular file -> (data, cut). Never blocks, never reads past the cap.

    ``truncate=False`` refuses a longer file instead of cutting it."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(_open_error(name, what, exc) + _remedy(remedy)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name} is a folder, not a file (wanted: the {what}).{_remedy(remedy)}")
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a named pipe (FIFO)"
                if stat.S_ISFIFO(st.st_mode)
                else "a character device"
                if stat.S_ISCHR(st.st_mode)
                else "a block device"
                if stat.S_ISBLK(st.st_mode)
                else "a socket"
                if stat.S_ISSOCK(st.st_mode)
                else "not a regular file"
            )
            raise InputError(
                f"{name} is {kind}, not a regular file: builddoctor reads the {what} only from a "
                f"regular file (copy it to one first).{_remedy(remedy)}"
            )
        if not truncate and st.st_size > cap:
            raise InputError(
                f"{name} is {st.st_size:,} bytes, more than any {what} ({_size(cap)} at most): "
                f"it is not one, or it is damaged.{_remedy(remedy)}"
            )
        # a regular file in /proc reports size 0 and may grow while read: bound the reading, not the stat
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        got = 0
        while got <= cap:
            chunk = os.read(fd, min(_CHUNK, cap + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise InputError(f"{name}: cannot read this {what} ({exc.strerror or exc}).{_remedy(remedy)}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > cap:
        if not truncate:
            raise InputError(
                f"{name} is more than {_size(cap)}, more than any {what}: it is not one, or it is "
                f"damaged.{_remedy(remedy)}"
            )
        return data[:cap], True
    return data, False


def _open_error(name: str, what: str, exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return f"{name}: no such file (wanted: the {what})."
    if exc.errno == errno.ENAMETOOLONG:
        return f"The {what} path is too long for this file system ({len(name)} characters): {name[:80]}..."
    return f"{name}: cannot open the {what}: {os_reason(exc)}."


def decode(data: bytes, name: str, what: str, remedy: str = "", *, cut: bool = False) -> str:
    """UTF-8 (a BOM is dropped) -> str; UTF-16/32 and other non-UTF-8 bytes get a message that says so."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or (
        len(data) > 3 and (data[1:4:2] == b"\x00\x00" or data[0:3:2] == b"\x00\x00")
    ):
        raise InputError(
            f"{name} is UTF-16 (or UTF-32) text, not UTF-8 (wanted: the {what}). Convert it "
            f"(`iconv -f UTF-16 -t UTF-8`, or PowerShell's `Out-File -Encoding utf8`).{_remedy(remedy)}"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if cut and exc.start >= len(data) - 3:  # the cap fell inside a character
            return data[: exc.start].decode("utf-8")
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{name} is not UTF-8 text (line {line} has a byte that is not; wanted: the {what}).{_remedy(remedy)}"
        ) from None


def read_text(
    path: str | os.PathLike[str],
    what: str,
    *,
    cap: int = TEXT_CAP,
    remedy: str = "",
    errors: str = "strict",
    truncate: bool = True,
) -> InputText:
    """A bounded text file. ``errors="replace"`` reads any bytes (a CMakeCache with stray Latin-1);
    ``truncate=False`` refuses a file over the cap (a TOML document cut in half means something else)."""
    name = os.fspath(path)
    data, cut = read_bytes(name, what, cap=cap, remedy=remedy, truncate=truncate)
    text = decode(data, name, what, remedy, cut=cut) if errors == "strict" else data.decode("utf-8", errors=errors)
    return InputText(path=name, text=text, truncated=cut, cap=cap)


# --------------------------------------------------------------------------- JSON


class JsonInputError(ValueError):
    """A JSON text builddoctor refuses (syntax, depth, numbers); the message says which and where."""


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _depth(text: str) -> int:
    """The deepest nesting of arrays and objects, outside strings (a fast scan, no recursion)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    if not brackets:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in brackets))


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonInputError(f"an integer of {len(literal.lstrip('-'))} digits (more than {MAX_INT_DIGITS})")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise JsonInputError(f"a number too large for a float ({literal[:20]}...)")
    return value


def _constant(name: str) -> NoReturn:
    raise JsonInputError(f"{name}, which JSON does not allow")


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads that refuses deep nesting, huge integers, inf and NaN (JsonInputError)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    depth = _depth(text)
    if depth > max_depth:
        raise JsonInputError(f"it nests {depth} levels deep (at most {max_depth})")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise JsonInputError(f"not valid JSON ({exc})") from None


def read_json(
    path: str | os.PathLike[str], what: str, *, cap: int = JSON_CAP, remedy: str = "", max_depth: int = MAX_DEPTH
) -> Any:
    """A bounded JSON file -> plain data; InputError names the file and what is wrong with it."""
    name = os.fspath(path)
    data, _ = read_bytes(name, what, cap=cap, remedy=remedy, truncate=False)
    if not data.strip():
        raise InputError(f"{name} is empty (wanted: the {what}).{_remedy(remedy)}")
    text = decode(data, name, what, remedy)
    if "\x00" in text:
        raise InputError(f"{name} holds binary data (wanted: the {what}, a JSON text).{_remedy(remedy)}")
    try:
        data = loads(text, max_depth=max_depth)
    except JsonInputError as exc:
        raise InputError(f"{name} is not a usable {what}: {exc}.{_remedy(remedy)}") from None
    cut = data.get("truncated") if isinstance(data, dict) else None
    if isinstance(cut, list) and cut and all(isinstance(c, dict) and "path" in c for c in cut):
        first = cut[0]
        raise InputError(
            f"{name} is a --json report whose lists were cut (the first: {str(first.get('path'))[:100]}, "
            f"{first.get('shown')} of {first.get('count')} kept), not the whole {what}."
            f"{_remedy(remedy)}"
        )
    return data


# --------------------------------------------------------------------------- the one output file


def write_text(path: str | os.PathLike[str], text: str, what: str) -> None:
    """Write a file the user named (``recipe --save``) without ever blocking: a FIFO nobody reads
    is refused (ENXIO) instead of waiting forever. OSErrors other than that one reach the caller."""
    name = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise InputError(
                f"Cannot write the {what} to {name}: it is a named pipe (FIFO) that nothing reads "
                "from. Start the reader first, or give a regular file."
            ) from None
        raise
    try:
        os.set_blocking(fd, True)
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
