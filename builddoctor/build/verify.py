"""A finished build, checked as ``check`` checks it: it counts only if the old problems are gone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builddoctor.profiles import BuildResult


@dataclass
class Verification:
    ok: bool
    remaining: list  # Finding codes of the old build's problems still present
    findings: list  # the new build's findings (Finding)
    message: str = ""
    builds: list = field(default_factory=list)  # the new build as check read it (BuildProfile)


def problem_codes(report) -> list[str]:
    """Codes of the findings that motivate a rebuild (errors and warnings)."""
    return [f.code for f in report.findings if f.severity in ("error", "warning")]


def verify(result: BuildResult, machine, motivating: list[str] | None = None) -> Verification:
    """Inspect the new build as ``check`` does; it counts only if the old problems are gone."""
    # findings and inspect (some 40 modules) load when a build is verified: `recipe` and
    # `build --dry-run` import the build package and verify nothing
    from builddoctor.findings import diagnose  # noqa: PLC0415 (start-up of recipe, build --dry-run)

    bin_dir = Path(result.build_dir) / "bin"
    diag = diagnose(machine, [bin_dir], run=True)
    if not diag.builds:
        return Verification(
            False,
            list(motivating or []),
            [],
            f"check found no llama.cpp build in {bin_dir}: " + "; ".join(diag.messages),
        )
    findings = [f for r in diag.builds for f in r.findings]
    left = sorted({f.code for f in findings if f.severity in ("error", "warning")})
    remaining = [c for c in (motivating or []) if c in left]
    errors = [f for f in findings if f.severity == "error"]
    ok = not remaining and not errors
    if ok:
        msg = "the new build is healthy" if not left else f"fixed; still noted: {', '.join(left)}"
    else:
        bad = sorted(set(remaining) | {f.code for f in errors})
        titles = "; ".join(f"{f.code} {f.title}" for f in findings if f.code in bad)
        msg = f"the new build still has: {titles}"
    return Verification(ok, remaining, findings, msg, builds=[r.build for r in diag.builds])
