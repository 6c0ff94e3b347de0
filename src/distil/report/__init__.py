"""What a run shows: the side-by-side table (:mod:`~distil.report.table`) and ``report.html``
(:mod:`~distil.report.html`: curves, Pareto views, calibration, agreement, confusion)."""

from distil.report.table import human_bytes, rows, summary_table

__all__ = ["human_bytes", "rows", "summary_table"]
