"""Findings: what is wrong with a build on a machine, from the catalogue in checks.toml."""

from builddoctor.findings.engine import catalogue, diagnose, findings_for

__all__ = ["catalogue", "diagnose", "findings_for"]
