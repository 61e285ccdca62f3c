"""Errors a user can act on, each with its own exit code.

A ``UserError`` carries a one-paragraph message; the CLI prints it and exits with its
code. Anything else escaping a command is a bug in builddoctor.
"""

from __future__ import annotations

import errno

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
FILE_ACCESS = 13  # a folder builddoctor writes to (cache, HOME, prefix) is read-only, not a folder, or denied
NOT_BUNDLED = 14  # this builddoctor was installed without its compiled llama.cpp
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


def os_reason(exc: OSError) -> str:
    """A short phrase for what an OSError means to a user (one table for the reader and the CLI)."""
    return {
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "not permitted",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder",
        errno.ELOOP: "a loop of symbolic links",
        errno.ENOENT: "it does not exist",
        errno.ENAMETOOLONG: "the path is too long for this file system",
        errno.ENOSPC: "no space left on the device",
    }.get(exc.errno or 0, exc.strerror or str(exc))


def from_os_error(exc: OSError) -> UserError | None:
    """The UserError for an OSError that a user's environment or input causes (a full disk, a read-only
    or denied folder, a path part that is a file, a name too long); None for anything else (a bug)."""
    where = exc.filename or "a file"
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return UserError(
            f"No space left on device ({where}). Free some space and run the command again.", exit_code=NO_SPACE
        )
    if exc.errno == errno.ENAMETOOLONG:
        name = str(where)
        return InputError(
            f"A path is too long for this file system ({len(name)} characters: {name[:60]}...). Use a shorter path."
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENOENT):
        why = os_reason(exc) + (" and cannot be made there" if exc.errno == errno.ENOENT else "")
        return UserError(
            f"Cannot use {where}: {why}. builddoctor keeps its cache in $BUILDDOCTOR_CACHE "
            "(default ~/.cache/builddoctor) and its builds in $BUILDDOCTOR_HOME (default "
            "~/.local/share/builddoctor); point them at writable folders, or fix the permissions.",
            exit_code=FILE_ACCESS,
        )
    return None
