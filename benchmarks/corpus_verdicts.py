"""The corpus verdict table: what `builddoctor check` says about each real third-party build.

    .venv/bin/python benchmarks/corpus_verdicts.py [--no-run] [--timeout S] [CASE...]

For each case of tests/corpus/cases.toml (fetched first when missing, cached in .cache/corpus),
``builddoctor check <the folder a user points at> --json`` runs as tests/test_corpus.py runs it, and one
row per reported build is printed: case, the platforms its files are for (from its truth file, worked
out with independent tools), the verdict (the worst finding), the exit code and the key findings (errors
and warnings, by code). The venv and npm-project shapes are checked with no argument, from inside them.
Markdown, so that the table can go into a note as printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builddoctor import proc  # noqa: E402

ORDER = ["error", "warning", "info", "ok"]


def check(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, dict]:
    """check in a clean environment plus ``env`` (HOME, VIRTUAL_ENV: what the shapes need)."""
    res = proc.run(
        [sys.executable, "-m", "builddoctor", "check", *args, "--json"], timeout=timeout, cwd=str(cwd), extra_env=env
    )
    try:
        return res.returncode, json.loads(res.stdout)
    except json.JSONDecodeError:
        return res.returncode, {"builds": [], "messages": [f"no JSON on stdout: {res.stderr[-300:]}"]}


def platforms(truth: dict) -> str:
    seen = sorted({f"{f['os']} {'/'.join(f['arch'])}" for f in truth.get("files", []) if f.get("llama")})
    return ", ".join(seen) or "?"


def rows_for(name: str, rc: int, data: dict, plats: str, seconds: float) -> list[str]:
    out = []
    for r in data.get("builds", []):
        b = r["build"]
        worst = min((f["severity"] for f in r["findings"]), key=ORDER.index, default="ok")
        key = [f"{f['code']} {f['title'][:70]}" for f in r["findings"] if f["severity"] in ("error", "warning")]
        out.append(f"| {name} | {plats} | {b['name']} | {worst} | {rc} | {'; '.join(key) or '-'} |")
    if not out:
        msgs = "; ".join(m[:100] for m in data.get("messages", []))
        out.append(f"| {name} | {plats} | (none) | - | {rc} | {msgs or '-'} |")
    out[0] = out[0][:-1] + f"({seconds:.1f} s) |"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="pass --no-run to check (no --version, no compute probe)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per check at most")
    ap.add_argument("cases", nargs="*", help="only these cases (or shapes)")
    opts = ap.parse_args()
    from tests.corpus import fetch

    cases, shapes = fetch.load()
    by_name = {c.name: c for c in cases}
    extra = ["--no-run"] if opts.no_run else []
    env: dict[str, str] = {}
    cpu = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "?",
        )
        if Path("/proc/cpuinfo").exists()
        else "?"
    )
    print(
        f"corpus verdicts on {os.uname().sysname} {os.uname().machine}, CPU: {cpu}"
        f"{' (check --no-run)' if opts.no_run else ''}\n"
    )
    print("| case | platform (truth) | build | verdict | exit | key findings (errors, warnings) (time) |")
    print("|---|---|---|---|---|---|")
    for c in cases:
        if opts.cases and c.name not in opts.cases:
            continue
        fetch.fetch_case(c)
        truth = json.loads((fetch.TRUTH_DIR / f"{c.name}.json").read_text())
        t0 = time.monotonic()
        rc, data = check([str(fetch.check_path(c)), *extra], ROOT, env, opts.timeout)
        print("\n".join(rows_for(c.name, rc, data, platforms(truth), time.monotonic() - t0)), flush=True)
    for s in shapes:
        if opts.cases and s.name not in opts.cases:
            continue
        fetch.build_shape(s, by_name)
        d = fetch.case_dir(s.name)
        with tempfile.TemporaryDirectory() as home:
            e = {**env, "HOME": home}
            if s.kind == "venv":
                e.update(VIRTUAL_ENV=str(d), PATH=f"{d / 'bin'}:{os.environ.get('PATH', '')}")
            t0 = time.monotonic()
            rc, data = check(extra, d, e, opts.timeout)
        print("\n".join(rows_for(f"{s.name} (no argument)", rc, data, s.kind, time.monotonic() - t0)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
