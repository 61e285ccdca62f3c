"""The default places to look for llama.cpp builds when the user names none: programs on PATH,
install prefixes (and builddoctor's own installs), checkouts' build folders, the llama.cpp that
``pip install builddoctor`` compiled, every site-packages and node_modules around."""

from __future__ import annotations

import glob
import os
import site
import sys
from pathlib import Path

from builddoctor.bundled import bundled_dir
from builddoctor.inspect.discover import Candidate, Search, _data, list_dir, resolve, walk
from builddoctor.paths import data_home


def _expand_user(p: str) -> str:
    return os.path.expanduser(p)


def _globs(patterns: list[str]) -> list[Path]:
    limit = int(_data()["limits"]["max_glob_matches"])
    out: list[Path] = []
    for pat in patterns:
        pat = _expand_user(pat)
        if any(ch in pat for ch in "*?["):
            out += [Path(p) for p in sorted(glob.glob(pat))[:limit]]
        else:
            out.append(Path(pat))
    return out


def site_dirs() -> list[Path]:
    """Every site-packages around: this Python's (sys.path), the user site, activated
    environments (VIRTUAL_ENV, CONDA_PREFIX) and the usual places ([pip_sites])."""
    conf = _data()["pip_sites"]
    dirs = [Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    try:
        dirs.append(Path(site.getusersitepackages()))
    except (AttributeError, OSError):  # a Python without a user site (some embedded ones)
        pass
    for var in conf["env_prefixes"]:
        prefix = os.environ.get(var)
        if prefix:
            dirs += _globs([os.path.join(prefix, rel) for rel in conf["under_prefix"]])
    dirs += _globs(conf["globs"])
    return _existing_dirs(dirs)


def node_modules_dirs(start: Path | None = None) -> list[Path]:
    """The node_modules folder of the current folder and of each of its parents (as Node looks)."""
    name = _data()["pip_sites"]["node_modules"]
    here = Path(os.path.abspath(start or os.getcwd()))
    return _existing_dirs([d / name for d in (here, *here.parents)])


def _existing_dirs(dirs: list[Path]) -> list[Path]:
    out, seen = [], set()
    for d in dirs:
        r = os.path.realpath(d)
        if r not in seen and os.path.isdir(r):
            seen.add(r)
            out.append(Path(r))
    return out


def default_candidates(messages: list[str], search: Search | None = None) -> list[Candidate]:
    search = search if search is not None else Search.start()
    data = _data()
    found: list[Candidate] = []
    quiet: list[str] = []  # problems in default places are not the user's concern
    path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    search.looked_in.append(f"PATH ({len(path_dirs)} folders)")
    for pd in path_dirs:
        for name in data["path_executables"]:
            p = Path(pd) / name
            if os.path.lexists(p):
                r = resolve(p, messages)  # a broken llama-cli on PATH is worth saying
                if r is not None and r.is_file():
                    found.append(Candidate(r, "path"))

    own = [str(data_home()), str(data_home()) + "/*"]  # where builddoctor installs its own builds
    for prefix in _globs(data["prefixes"]) + _globs(data["kegs"]) + _globs(own):
        subs = [prefix / sub for sub in ("bin", "lib", "lib64") if (prefix / sub).is_dir()]
        if subs:
            search.looked_in.append(str(prefix))
        for d in subs:
            files, _dirs, n = list_dir(d, quiet)
            search.entries += n
            search.folders += 1
            for name in files:
                r = resolve(d / name, quiet)
                if r is not None and r.is_file():
                    found.append(Candidate(r, "install-prefix"))
    for co in _globs(data["checkouts"]):
        if not _is_checkout(co):
            continue
        try:
            builds = sorted(e.name for e in os.scandir(co) if e.name.startswith("build") and e.is_dir())
        except OSError:
            continue
        for sub in builds[:20]:
            if (co / sub / "CMakeCache.txt").is_file():
                search.looked_in.append(str(co / sub))
                found += walk(co / sub, search, "build-folder", None)

    bundled = bundled_dir()  # the llama.cpp that `pip install builddoctor` compiled
    if bundled is not None and bundled.is_dir():
        found += walk(bundled, search, "bundled", None)
    for d in site_dirs() + node_modules_dirs():
        search.looked_in.append(str(d))
        found += walk(d, search, "site", None)
    if search.stopped and found:
        messages.append(
            f"{search.stopped} in the default places; builds further on were not looked for "
            "(give their folder: builddoctor check PATH)."
        )
    return found


def _is_checkout(d: Path) -> bool:
    return (d / "CMakeLists.txt").is_file() and ((d / "include" / "llama.h").is_file() or (d / "ggml").is_dir())
