"""Roster import: regions, people and loudspeakers from the duty room's CSV or XLSX sheets."""

from warnd.roster.importer import import_roster
from warnd.roster.problems import Severity
from warnd.roster.reading import HeaderAliases, RosterError, load_header_aliases
from warnd.roster.report import (
    Counts,
    ImportReport,
    Rejection,
    SheetInfo,
    format_report,
    report_json,
)

__all__ = [
    "Counts",
    "HeaderAliases",
    "ImportReport",
    "Rejection",
    "RosterError",
    "Severity",
    "SheetInfo",
    "format_report",
    "import_roster",
    "load_header_aliases",
    "report_json",
]
