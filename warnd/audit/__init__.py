"""Post-storm audit: 期/人次 per channel and step, coverage per township and village, time to
confirm, escalations, who never confirmed and which loudspeakers never played — counted from
the event log (docs/audit.md), written as XLSX, CSV, JSON and a self-contained HTML page."""

from warnd.audit.load import ScopeError
from warnd.audit.model import AuditReport, Column, Table
from warnd.audit.rows import Scope
from warnd.audit.service import ReportOptions, make_report, options_from_settings

__all__ = ["AuditReport", "Column", "ReportOptions", "Scope", "ScopeError", "Table", "make_report",
           "options_from_settings"]
