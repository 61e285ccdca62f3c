"""A child's output kept in bounded memory: the head and tail of a stream, and its lines one by one.

proc.py feeds every chunk it reads from a child to these; a child that prints gigabytes, or one
line without an end, costs builddoctor a fixed amount of memory.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

LINE_MAX = 64 << 10  # longest line handed to stream()'s on_line


class Capture:
    """The first ``head`` and the last ``tail`` bytes of a stream, in bounded memory."""

    def __init__(self, head: int, tail: int):
        self.head_max, self.tail_max = head, tail
        self.head = bytearray()
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_len = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_max:
            self.tail.append(data)
            self.tail_len += len(data)
            while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_max:
                self.tail_len -= len(self.tail.popleft())

    def text(self) -> str:
        tail = b"".join(self.tail)[-self.tail_max :] if self.tail_max else b""
        cut = self.total - len(self.head) - len(tail)
        head = self.head.decode("utf-8", errors="replace")
        if cut <= 0:
            return head + tail.decode("utf-8", errors="replace")
        return head + f"\n[... {cut} bytes of output cut ...]\n" + tail.decode("utf-8", errors="replace")


class Lines:
    """Splits a byte stream into lines for ``on_line``; a line longer than LINE_MAX is cut."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line = on_line
        self.buf = bytearray()
        self.skipping = False

    def add(self, data: bytes) -> None:
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > LINE_MAX:
                    if not self.skipping:
                        self._emit(bytes(self.buf[:LINE_MAX]) + b" [... line cut ...]")
                    self.skipping = True
                    self.buf.clear()
                return
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            if self.skipping:
                self.skipping = False
            else:
                self._emit(line[:LINE_MAX])

    def close(self) -> None:
        if self.buf and not self.skipping:
            self._emit(bytes(self.buf[:LINE_MAX]))
        self.buf.clear()

    def _emit(self, raw: bytes) -> None:
        self.on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
