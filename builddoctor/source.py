"""The pinned llama.cpp source: fetch it, verify it, say what is there.

The pin (``data/llama_pin.toml``) names a package on the registry pip is set up for, its
exact version and sha256. ``fetch`` downloads that sdist with pip's own ``download``
(so no host is hard-coded here), refuses it unless the hash matches, extracts only the
llama.cpp tree and swaps it into place with renames: an interrupted fetch leaves the old
tree or none, never half a tree. A manifest of every file's sha256 written beside the
tree lets ``status`` tell a verified tree from a hand-edited one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import errors, paths, proc
from builddoctor.profiles import Serializable
from builddoctor.readinput import read_json, read_text
from builddoctor.tomlload import load_toml

MANIFEST = ".builddoctor-source.json"
PIN_FILE = paths.DATA_DIR / "llama_pin.toml"
DOWNLOAD_TIMEOUT = 900.0


@dataclass
class Pin(Serializable):
    package: str
    version: str
    sha256: str
    subdir: str
    commit: str
    short_commit: str
    date: str
    llama_version: str
    build_number: int

    @property
    def sdist_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}.tar.gz"


@dataclass
class SourceStatus(Serializable):
    path: str
    state: str  # verified, modified, unverified, missing
    kind: str  # pinned (fetched by builddoctor) or checkout (a user's llama.cpp)
    version: str | None = None
    commit: str | None = None
    pin: Pin | None = None
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.state != "missing"


def load_pin(path: Path = PIN_FILE) -> Pin:
    data = load_toml(path)
    try:
        llama = data["llama_cpp"]
        return Pin(
            package=data["package"],
            version=data["version"],
            sha256=data["sha256"].lower(),
            subdir=data["subdir"],
            commit=llama["commit"],
            short_commit=llama["short_commit"],
            date=str(llama["date"]),
            llama_version=llama["version"],
            build_number=int(llama["build_number"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.SourceError(f"{path}: the pin is incomplete ({exc}).") from None


# --------------------------------------------------------------------------- status


def looks_like_llama_cpp(path: Path) -> bool:
    return (
        (path / "CMakeLists.txt").is_file()
        and (path / "ggml" / "CMakeLists.txt").is_file()
        and (path / "include" / "llama.h").is_file()
    )


def tree_version(path: Path) -> str | None:
    """LLAMA_VERSION as the tree's CMakeLists.txt would set it (e.g. 0.5.0-dev)."""
    try:
        text = read_text(path / "CMakeLists.txt", "CMakeLists.txt", errors="replace").text
    except errors.InputError:
        return None
    parts = {k: v for k, v in re.findall(r"set\(LLAMA_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)\)", text)}
    if len(parts) != 3:
        return None
    base = f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"
    dev = re.search(r'option\(LLAMA_BUILD_IS_DEV\s+"[^"]*"\s+ON\)', text)
    return base + ("-dev" if dev else "")


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every regular file below root (relative POSIX paths), manifest excluded."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel == MANIFEST or not full.is_file() or full.is_symlink():
                continue
            out[rel] = sha256_file(full)
    return out


def status(path: Path | None = None) -> SourceStatus:
    """What is at ``path`` (default: the pinned vendor tree), checked file by file."""
    pinned_default = path is None
    root = Path(path) if path is not None else paths.vendor_dir()
    pin = load_pin()
    if not root.exists():
        return SourceStatus(
            str(root),
            "missing",
            "pinned" if pinned_default else "checkout",
            pin=pin,
            message="no llama.cpp tree here; run `builddoctor source fetch`",
        )
    if not looks_like_llama_cpp(root):
        raise errors.InputError(
            f"{root} is not a llama.cpp source tree (no CMakeLists.txt, ggml/ and include/llama.h there). "
            "Point --source at the top folder of a llama.cpp checkout."
        )
    manifest = _read_manifest(root)
    if manifest is None:
        commit = _git_commit(root)
        return SourceStatus(
            str(root),
            "unverified",
            "checkout",
            version=tree_version(root),
            commit=commit,
            message="a llama.cpp tree that builddoctor did not fetch; it is used as it is",
        )
    recorded: dict[str, str] = manifest["files"]
    actual = hash_tree(root)
    changed = sorted(k for k in recorded.keys() & actual.keys() if recorded[k] != actual[k])
    added = sorted(actual.keys() - recorded.keys())
    removed = sorted(recorded.keys() - actual.keys())
    state = "verified" if not (changed or added or removed) else "modified"
    msg = (
        f"matches {pin.package} {pin.version} (sha256 verified), llama.cpp {pin.short_commit}"
        if state == "verified"
        else f"differs from the pinned tree: {len(changed)} changed, {len(added)} added, {len(removed)} removed; "
        "`builddoctor source fetch --force` restores it"
    )
    return SourceStatus(
        str(root),
        state,
        "pinned",
        version=manifest.get("llama_version"),
        commit=manifest.get("commit"),
        pin=pin,
        changed=changed[:50],
        added=added[:50],
        removed=removed[:50],
        message=msg,
    )


def resolve_source(path: Path | None) -> Path:
    """``--source PATH`` or the pinned tree; refuses anything that is not a llama.cpp tree."""
    if path is None:
        return ensure_source()
    root = Path(path).expanduser().resolve()
    if not root.is_dir() or not looks_like_llama_cpp(root):
        raise errors.InputError(
            f"{root} is not a llama.cpp source tree (no CMakeLists.txt, ggml/ and include/llama.h there). "
            "Point --source at the top folder of a llama.cpp checkout, or leave it out to use the pinned source."
        )
    return root


def ensure_source(console_echo: Callable[[str], None] | None = None) -> Path:
    """The pinned tree, fetched first if it is missing. A hand-edited tree is used as it is."""
    root = paths.vendor_dir()
    if looks_like_llama_cpp(root):
        return root
    fetch(echo=console_echo)
    return root


# --------------------------------------------------------------------------- fetch


def fetch(
    dest: Path | None = None,
    *,
    sdist: Path | None = None,
    force: bool = False,
    echo: Callable[[str], None] | None = None,
) -> SourceStatus:
    """Put the verified pinned tree at ``dest``; a no-op when it is already there and verified."""
    say = echo or (lambda _m: None)
    pin = load_pin()
    root = Path(dest) if dest is not None else paths.vendor_dir()
    _clean_partials(root)
    if not force and root.exists():
        manifest = _read_manifest(root)
        if manifest is None and not (root.is_dir() and not any(root.iterdir())):
            raise errors.SourceError(
                f"{root} already holds files that builddoctor did not fetch; they were left as they are. "
                "Use a llama.cpp checkout with --source, or run `builddoctor source fetch --force` to replace it "
                "with the pinned tree."
            )
        if manifest is not None:  # an empty folder has nothing to lose; a fetched tree is checked first
            current = status(root)
            if current.state == "verified" and manifest.get("sha256") == pin.sha256:
                current.message = "already there and verified; nothing to do"
                return current
            if current.state == "modified":
                example = (current.changed + current.added + current.removed)[0]
                raise errors.SourceError(
                    f"{root} has local changes ({len(current.changed)} changed, {len(current.added)} added, "
                    f"{len(current.removed)} removed files, e.g. {example}). They were left as they are; run "
                    "`builddoctor source fetch --force` to replace the tree with the pinned one."
                )
    archive = Path(sdist) if sdist is not None else _download(pin, say)
    _verify_archive(archive, pin)
    say(f"extracting llama.cpp {pin.short_commit} into {root}")
    _extract_atomically(archive, pin, root)
    result = status(root)
    result.message = f"fetched {pin.package} {pin.version} (sha256 verified), llama.cpp {pin.short_commit}"
    return result


def _download(pin: Pin, say: Callable[[str], None]) -> Path:
    """The sdist from the download cache, or from the registry through pip."""
    extra = ["--no-build-isolation"] if _has_module("scikit_build_core") else []  # no build deps to read metadata
    return pip_download(
        f"{pin.package}=={pin.version}",
        filename=pin.sdist_name,
        sha256=pin.sha256,
        size_mb=77,
        binary=False,
        say=say,
        extra_args=extra,
        hint="or download the sdist elsewhere and pass it with `builddoctor source fetch --sdist FILE`",
    )


def pip_download(
    requirement: str,
    *,
    filename: str,
    sha256: str,
    size_mb: int,
    binary: bool,
    say: Callable[[str], None],
    extra_args: list[str] | None = None,
    hint: str = "",
    timeout: float = DOWNLOAD_TIMEOUT,
) -> Path:
    """A pinned file from the package registry through pip, into builddoctor's download cache.

    The one download path (the pinned sdist, the CUDA wheels): a cached copy is used only when its
    sha256 is the pin's; a fresh one is checked before it is moved into the cache, so the cache
    never holds a file that is not the pinned one."""
    cache = paths.cache_dir() / "downloads"
    cached = cache / filename
    if cached.is_file() and sha256_file(cached) == sha256:
        say(f"using the verified download in {cached}")
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    say(f"downloading {requirement} with pip (about {size_mb} MB)")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".dl-") as tmp:
        got = _pip_fetch(requirement, Path(tmp), filename, binary, extra_args or [], hint=hint, timeout=timeout)
        digest = sha256_file(got)
        if digest != sha256:
            raise errors.SourceError(
                f"refused {got.name} from pip: its sha256 is {digest}, the pin is {sha256}. Nothing was "
                "kept, unpacked or changed."
            )
        os.replace(got, cached)
    return cached


def _pip_fetch(
    requirement: str, folder: Path, filename: str, binary: bool, extra_args: list[str], *, hint: str, timeout: float
) -> Path:
    """``pip download`` of one file into ``folder``; raises (exit NETWORK) when pip does not deliver it."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:" if binary else "--no-binary=:all:",
        "--disable-pip-version-check",
        *extra_args,
        "-d",
        str(folder),
        requirement,
    ]
    # pip needs its own configuration (index, proxy, certificates) from the environment.
    done = proc.run(argv, timeout=timeout, env=dict(os.environ))
    got = folder / filename
    if not got.is_file():  # pip may spell the file name differently (case, separators): the one file
        files = [f for f in folder.iterdir() if f.is_file()]
        got = files[0] if len(files) == 1 else got
    if not done.ok or not got.is_file():
        tail = "\n".join((done.stderr or done.error or "").strip().splitlines()[-5:])
        reason = "timed out" if done.timed_out else f"failed ({tail or 'no output'})"
        raise errors.SourceError(
            f"pip could not download {requirement}: {reason}. Check the network and pip's index settings"
            + (f", {hint}" if hint else "")
            + ".",
            exit_code=errors.NETWORK,
        )
    return got


def _verify_archive(archive: Path, pin: Pin) -> None:
    if not archive.is_file():
        raise errors.InputError(f"{archive} does not exist or is not a file.")
    digest = sha256_file(archive)
    if digest != pin.sha256:
        raise errors.SourceError(
            f"refused {archive}: its sha256 is {digest}, but the pin for {pin.package} {pin.version} is "
            f"{pin.sha256}. The file is corrupt or not the pinned release; nothing was extracted and the "
            "existing tree (if any) is untouched. Delete the file and fetch again."
        )


def _extract_atomically(archive: Path, pin: Pin, root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        prefix = None
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if prefix is None:
                    prefix = parts[0] + "/" + pin.subdir + "/"
                if not member.name.startswith(prefix) or "/.git/" in "/" + member.name[len(prefix) :] + "/":
                    continue
                rel = member.name[len(prefix) :]
                if not rel or rel == ".git" or rel.startswith(".git/") or not (member.isfile() or member.isdir()):
                    continue
                member.name = rel
                tar.extract(member, partial, filter="data")
        if not looks_like_llama_cpp(partial):
            raise errors.SourceError(
                f"{archive} verified, but has no llama.cpp tree under {pin.subdir}: the pin is wrong."
            )
        files = hash_tree(partial)
        manifest = {
            "package": pin.package,
            "version": pin.version,
            "sha256": pin.sha256,
            "commit": pin.commit,
            "llama_version": pin.llama_version,
            "files": files,
        }
        partial.chmod(0o755)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=0, sort_keys=True), encoding="utf-8")
        old = None
        if root.exists() or root.is_symlink():
            old = root.parent / f".{root.name}.old-{os.getpid()}"
            os.replace(root, old)
        os.replace(partial, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == 28:
            raise errors.UserError(
                f"no space left on the disk while extracting into {root.parent}; the old tree (if any) is "
                "untouched. Free about 200 MB and fetch again.",
                exit_code=errors.NO_SPACE,
            ) from None
        raise errors.SourceError(f"could not extract {archive}: {exc}. The existing tree is untouched.") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _clean_partials(root: Path) -> None:
    """Remove what an interrupted fetch left beside the tree (never the tree itself)."""
    parent = root.parent
    if not parent.is_dir():
        return
    for stale in parent.glob(f".{root.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in parent.glob(f".{root.name}.old-*"):
        if not root.exists():  # killed between the two renames: the old tree is the one to keep
            os.replace(stale, root)
        else:
            shutil.rmtree(stale, ignore_errors=True)


# --------------------------------------------------------------------------- helpers


def _read_manifest(root: Path) -> dict | None:
    try:
        data = read_json(root / MANIFEST, "source manifest")
    except errors.InputError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def _git_commit(root: Path) -> str | None:
    if not (root / ".git").exists():
        return None
    done = proc.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], timeout=5)
    return done.stdout.strip() or None if done.ok else None


def sha256_file(path: Path) -> str:
    """The file's sha256, read in blocks (the pin, the manifest and install backups all use it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None
