"""The ``report`` stage: a self-contained HTML report per cohort (figures embedded, aggregates only)."""

from pipeline.report.html import SECTION_IDS, ReportConfig, build_report

__all__ = ["SECTION_IDS", "ReportConfig", "build_report"]
