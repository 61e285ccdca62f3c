"""Every benchmark run and verdict of a tune, kept on disk by build and model, so an interrupted
or repeated tune resumes where it stopped; and a finished tune's answer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from builddoctor import paths
from builddoctor.profiles import BenchResult
from builddoctor.tune.candidates import signature
from builddoctor.tune.values import Candidate, TuneResult


class ResultsCache:
    """Every benchmark run of a build on a model, one JSON file per (build, model, settings).
    ``fresh`` (`tune --fresh`): no answer or run is read back, so all is measured again and
    written over the old files; verification verdicts (of the build, not its speed) still are."""

    def __init__(self, root: Path | None = None, *, fresh: bool = False):
        self.root = Path(root or paths.cache_dir() / "tune")
        self.fresh = fresh

    def _file(self, build_key: str, model_sha: str, params: dict) -> Path:
        h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        return self.root / f"{build_key}-{model_sha[:16]}-{h}.json"

    def load(self, build_key: str, model_sha: str, params: dict) -> list[BenchResult]:
        if self.fresh:
            return []
        try:
            doc = json.loads(self._file(build_key, model_sha, params).read_text())
            return [BenchResult.from_dict(d) for d in doc["runs"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # none yet, or unreadable: measure again

    def save(self, build_key: str, model_sha: str, params: dict, runs: list[BenchResult]) -> None:
        f = self._file(build_key, model_sha, params)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f".{f.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"params": params, "runs": [r.to_dict() for r in runs]}))
        os.replace(tmp, f)  # a Ctrl-C never leaves half a file

    def answer(self, key: str) -> TuneResult | None:
        """A finished tune's result for the same inputs (``answer_key``), or None."""
        if self.fresh:
            return None
        try:
            return TuneResult.from_json((self.root / f"answer-{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def keep_answer(self, key: str, res: TuneResult) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        f = self.root / f"answer-{key}.json"
        tmp = f.with_name(f".{f.name}.{os.getpid()}")
        tmp.write_text(res.to_json(), encoding="utf-8")
        os.replace(tmp, f)

    def verdict(self, build_key: str, machine_key: str) -> dict | None:
        try:
            return json.loads((self.root / f"{build_key}-{machine_key}.verify.json").read_text())
        except (OSError, ValueError):
            return None

    def keep_verdict(self, build_key: str, machine_key: str, ok: bool, message: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{build_key}-{machine_key}.verify.json").write_text(json.dumps({"ok": ok, "message": message}))


def machine_key(machine) -> str:
    """A verification holds for one CPU: its model and features."""
    doc = [machine.cpu.model, sorted(machine.cpu.features)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:12]


def answer_key(machine, source: Path, cands: list[Candidate], **inputs) -> str:
    """What makes two tunes the same question: this CPU, the source, the candidates' builds, the inputs."""
    doc = {
        "machine": machine_key(machine),
        "source": str(source),
        "candidates": [(c.name, signature(c.plan) if c.plan is not None else c.status) for c in cands],
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in inputs.items()},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
