"""Roster import: regions and people from the duty room's CSV or XLSX sheets."""

from warnd.roster.importer import (
    Counts,
    ImportReport,
    Rejection,
    SheetInfo,
    format_report,
    import_roster,
)
from warnd.roster.reading import HeaderAliases, RosterError, load_header_aliases

__all__ = [
    "Counts",
    "HeaderAliases",
    "ImportReport",
    "Rejection",
    "RosterError",
    "SheetInfo",
    "format_report",
    "import_roster",
    "load_header_aliases",
]
