"""Static HTML report of a run folder: ``RUN_DIR/report/index.html``.

Public API:
    build_report, ReportResult   -- samwsss.report.build
"""

from samwsss.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
