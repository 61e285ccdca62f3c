"""Hostile programs for the tests of how builddoctor runs children: tiny C programs compiled
here (tests/elf_fixtures.make_program: they carry llama.cpp symbols, so `check` runs them).

Each is built under a folder whose path is unique to the test, so every process it leaves
(forks keep argv) is found by that path in /proc/<pid>/cmdline.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests import elf_fixtures as fx

_BODY = r"""
    char *getenv(const char *);
    signal(SIGTERM, SIG_IGN); signal(SIGHUP, SIG_IGN); signal(SIGINT, SIG_IGN);
    if (argc > 1 && argv[1][0] == '-' && argv[1][1] == '-' && argv[1][2] == 'd') { for (;;) pause(); }
#if defined(SETSID_HOLD)
    /* a grandchild in a session of its own keeps stdout open; the program answers and exits */
    if (fork() == 0) { setsid(); if (fork() == 0) { for (;;) pause(); } for (;;) pause(); }
    printf("version: 1 (abc1234)\n"); fflush(stdout); return 0;
#elif defined(DAEMON)
    /* a classic daemon: fork, setsid, fork, stdio to /dev/null (NOENV: re-exec with an empty environment) */
    if (fork() == 0) {
        setsid();
        if (fork() == 0) {
            freopen("/dev/null", "r", stdin); freopen("/dev/null", "w", stdout); freopen("/dev/null", "w", stderr);
#if defined(NOENV)
            char *a[] = {argv[0], "--daemon-child", 0}; char *e[] = {0}; execve("/proc/self/exe", a, e);
#endif
            for (;;) pause();
        }
        _exit(0);
    }
    usleep(300000);
    printf("version: 1 (abc1234)\n"); return 0;
#elif defined(FLOOD)
    /* 500 MB on stdout, then the answer */
    static char buf[1 << 16];
    for (unsigned i = 0; i < sizeof buf; i++) buf[i] = 'x';
    for (int i = 0; i < 500 * 16; i++) fwrite(buf, 1, sizeof buf, stdout);
    printf("\nversion: 1 (abc1234)\n"); return 0;
#elif defined(HANG_TREE)
    /* never ends, ignores SIGTERM; a child in its own process group (as ninja's jobs) and one in its own session */
    if (fork() == 0) { setpgid(0, 0); for (;;) pause(); }
    if (fork() == 0) { setsid(); for (;;) pause(); }
    printf("started\n"); fflush(stdout);
    for (;;) pause();
#elif defined(HOME_TOUCH)
    /* says which HOME it got and writes a file there */
    const char *home = getenv("HOME");
    char path[4096];
    snprintf(path, sizeof path, "%s/.touched-by-program", home ? home : "/nonexistent");
    FILE *f = fopen(path, "w"); if (f) fclose(f);
    printf("version: 1 (abc1234)\nHOME=%s\n", home ? home : "(unset)"); return 0;
#endif
"""


def make(folder: Path, mode: str, name: str = "llama-cli", *extra: str) -> Path:
    """Compile the hostile program ``mode`` (SETSID_HOLD, DAEMON, FLOOD, HANG_TREE, HOME_TOUCH)."""
    return fx.make_program(folder / mode.lower(), name, _BODY, flags=[f"-D{mode}", *extra])


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        return raw[raw.rfind(b")") + 2 :].split()[0].decode()
    except (OSError, IndexError):
        return "?"


def processes(marker: str) -> list[int]:
    """Live (not zombie) processes whose program path (argv[0]) contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        # the program's own path (argv[0]): not builddoctor, whose arguments name the program too
        if marker.encode() in cmd.split(b"\0")[0] and _state(name) not in ("Z", "X", "?"):
            found.append(int(name))
    return found


def survivors(marker: str, wait: float = 2.0) -> list[int]:
    """The processes still there after ``wait`` seconds (a kill takes a moment to land)."""
    deadline = time.monotonic() + wait
    while True:
        left = processes(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def wait_for(marker: str, count: int = 1, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = processes(marker)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no process with {marker} started within {timeout} s")


def kill_all(marker: str) -> None:
    for pid in processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
