"""Errors a user can act on, each with its own exit code.

A ``UserError`` carries a one-paragraph message; the CLI prints it and exits with its
code. Anything else escaping a command is a bug in builddoctor.
"""

from __future__ import annotations

# exit codes (pip/uv style: 0 fine, 1 problems found, 2 bad usage or input)
OK = 0
PROBLEMS = 1
USAGE = 2
SOURCE = 3  # pinned source missing, corrupt or refused
TOOLCHAIN = 4  # a needed compiler/tool is missing or too old
BUILD_FAILED = 5
INTERRUPTED = 6
NO_SPACE = 7
VERIFY_FAILED = 8  # the new build did not cure what it was built for
BENCH_FAILED = 9
NOT_FASTER = 10
NETWORK = 11
NOT_FOUND = 12  # check: no llama.cpp build where it looked (the message says where)
INTERNAL = 70


class UserError(Exception):
    """A failure with a clear message and a distinct exit code."""

    exit_code = USAGE

    def __init__(self, message: str, *, exit_code: int | None = None, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(UserError):
    """A file or argument given by the user cannot be used."""

    exit_code = USAGE


class NotFoundError(UserError):
    """Nothing to diagnose: no llama.cpp build where the search looked."""

    exit_code = NOT_FOUND


class SourceError(UserError):
    exit_code = SOURCE
