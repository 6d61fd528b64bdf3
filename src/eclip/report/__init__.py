"""Report: self-contained HTML galleries of dedupe and cluster runs, and review files.

The names below load on first use, so that importing :mod:`eclip.report.order` (the CLI's
``--order`` choices) does not load the report's heavier modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eclip.report.content import build_content
    from eclip.report.entries import ReportContent
    from eclip.report.html import REVIEW_COLUMNS, write_report

__all__ = ["REVIEW_COLUMNS", "ReportContent", "build_content", "write_report"]
_HOME = {
    "REVIEW_COLUMNS": "eclip.report.html",
    "ReportContent": "eclip.report.entries",
    "build_content": "eclip.report.content",
    "write_report": "eclip.report.html",
}


def __getattr__(name: str) -> Any:
    """``eclip.report.NAME`` for a name of :data:`__all__`, loaded from its module on first use.

    Raises:
        AttributeError: any other name.
    """
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'eclip.report' has no attribute {name!r}")
