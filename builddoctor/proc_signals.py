"""SIGINT, SIGTERM and SIGHUP: stop every child builddoctor started, then raise ``Interrupted``.

The CLI installs the handlers once (``install_signal_handlers``); a library caller gets them for a
block (``signals_raise``). A second signal, or unwinding that takes more than a few seconds, exits
at once with the CLI's code.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from builddoctor.proc_tree import allow_starts, libc_prctl, stop_all, stopping


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; every child was stopped. ``signame``: which one."""

    def __init__(self, signame: str = "SIGINT"):
        super().__init__(signame)
        self.signame = signame


_handlers_installed = False


def _handler(exit_code: int | None):
    def on_signal(signum, frame):  # noqa: ARG001
        name = signal.Signals(signum).name
        if stopping() and exit_code is not None:
            # a second signal while stopping: no more waiting
            stop_all()
            os.write(2, f"error: interrupted ({name}); stopped.\n".encode())
            os._exit(exit_code)
        stop_all()
        if exit_code is not None:
            _watchdog(exit_code, name)
        raise Interrupted(name)

    return on_signal


def _watchdog(exit_code: int, name: str, grace: float = 5.0) -> None:
    """Exit after ``grace`` seconds even if the unwinding is stuck (in C code, a blocked thread)."""

    def fire() -> None:
        stop_all()
        os.write(2, f"error: interrupted ({name}); stopped.\n".encode())
        os._exit(exit_code)

    t = threading.Timer(grace, fire)
    t.daemon = True
    t.start()


SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


def install_signal_handlers(exit_code: int) -> None:
    """For the CLI, once: the first SIGINT/SIGTERM/SIGHUP kills every descendant and raises
    ``Interrupted`` (temp folders are removed as it unwinds); a second one, or unwinding for
    more than a few seconds, exits with ``exit_code`` at once."""
    global _handlers_installed
    libc_prctl()
    for s in SIGNALS:
        signal.signal(s, _handler(exit_code))
    _handlers_installed = True


@contextmanager
def signals_raise() -> Iterator[None]:
    """For a library caller (``build.build``): during the block, a signal stops the children and
    raises ``Interrupted``. Inside the CLI (handlers installed) or off the main thread: nothing."""
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler(None))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        allow_starts()
