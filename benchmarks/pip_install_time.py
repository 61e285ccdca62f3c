"""How long `pip install .` takes with the bundled llama.cpp: cold, and again with the same plan.

    python benchmarks/pip_install_time.py [--cold] [--runs N]

Each run installs this checkout into a fresh venv under /tmp with `pip install .`, under the
shared build lock (/tmp/builddoctor-llama-build.lock; the wait for it is not counted).
--cold first deletes the build folder (build/<wheel tag>) and sets CCACHE_RECACHE=1 (ccache
compiles everything and refills itself): the figure of a machine that never built llama.cpp.
Without it, the build folder and ccache of earlier runs are reused: the figure of a reinstall.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builddoctor import proc  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LOCK = Path("/tmp/builddoctor-llama-build.lock")


def one_run(cold: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bd-pip-") as tmp:
        venv = Path(tmp) / "venv"
        done = proc.run([sys.executable, "-m", "venv", str(venv)], timeout=300)
        if not done.ok:
            raise SystemExit(done.output)
        env = {k: v for k, v in os.environ.items() if k not in ("CMAKE_ARGS", "BUILDDOCTOR_BINARY", "PYTHONPATH")}
        with open(LOCK, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if cold:
                for build in (REPO / "build").glob("py3-none-*"):
                    shutil.rmtree(build)
                env["CCACHE_RECACHE"] = "1"
            t0 = time.monotonic()
            done = proc.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], timeout=3600, env=env, cwd=REPO)
            took = time.monotonic() - t0
        if not done.ok:
            raise SystemExit(done.output[-4000:])
        check = proc.run([str(venv / "bin" / "builddoctor"), "run", "llama-bench", "--version"], timeout=60)
        print(
            f"  {'cold' if cold else 'warm'}: {took:.0f} s  ({check.output.strip().splitlines()[0] if check.output else check.error})"
        )
        return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="empty build folder, ccache recache")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    print(f"pip install . ({os.cpu_count()} CPUs, {'cold' if args.cold else 'build folder + ccache reused'})")
    times = [one_run(args.cold) for _ in range(args.runs)]
    print(f"mean {sum(times) / len(times):.0f} s over {len(times)} run(s)")


if __name__ == "__main__":
    main()
