"""Views: one module per value the CLI prints, so that a command only declares its options, gathers
the inputs, calls its stage and hands the typed value to one view.

diagnosis (``check``), machine (``probe``), plan (``recipe``), build (``build``: dry run and result),
progress (ninja's progress while building), bench (``bench``'s comparison), fix (``fix`` and ``rollback``).
"""

from __future__ import annotations

from builddoctor.render.diagnosis import report

__all__ = ["report"]
