"""Report: self-contained HTML galleries of dedupe and cluster runs, and review files."""

from eclip.report.content import ReportContent, build_content
from eclip.report.html import REVIEW_COLUMNS, write_report

__all__ = ["REVIEW_COLUMNS", "ReportContent", "build_content", "write_report"]
