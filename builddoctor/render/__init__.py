"""Views: one module per value the CLI prints, so that a command only declares its options, gathers
the inputs, calls its stage and hands the typed value to one view.

diagnosis (``check``), machine (``probe``), plan (``recipe``), flags (``flags``), build (``build``: its dry
run and its result), progress (ninja's, while building), bench (``bench``'s comparison), fix (``fix`` and
``rollback``), source (``source status``), bundle (``which``). The views sit under the commands and over
the stages (the layers in pyproject.toml): they may read a stage's constants and helpers, never run one.
"""

from __future__ import annotations

from builddoctor.render.diagnosis import report

__all__ = ["report"]
