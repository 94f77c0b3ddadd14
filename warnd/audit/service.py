"""One call from the database to the report object: what the CLI, the demo and the console use.

    report = await make_report(db, Scope(alert_id=12), now=clock.now(), options=options)
    write_report(report, folder)            # files
    render_html(report) / report.to_dict()  # an HTTP handler
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from warnd.audit.compute import DEFAULT_TARGET, build_report
from warnd.audit.labels import load_labels
from warnd.audit.load import load_input
from warnd.audit.model import AuditReport
from warnd.audit.rows import Scope
from warnd.db.engine import Database


@dataclass(frozen=True)
class ReportOptions:
    coverage_target: float = DEFAULT_TARGET
    labels: Path | None = None  # an operator's report.toml on top of the shipped one
    html_template: Path | None = None
    utc_offset_hours: float = 8.0
    may_see_phones: bool = False


def options_from_settings(settings: Any, may_see_phones: bool = False) -> ReportOptions:
    """[report] of warnd.toml. Raises ConfigError for a target outside (0, 1]."""
    from warnd.config import ConfigError

    r = settings.report
    if not 0 < r.coverage_target <= 1:
        raise ConfigError(f"report.coverage_target: {r.coverage_target} is not a share in (0, 1] (0.95 = 95 %)")
    return ReportOptions(coverage_target=r.coverage_target, labels=Path(r.labels) if r.labels else None,
                         html_template=Path(r.html_template) if r.html_template else None,
                         utc_offset_hours=r.utc_offset_hours, may_see_phones=may_see_phones)


async def make_report(db: Database, scope: Scope, *, now: datetime, role_labels: dict[str, str] | None = None,
                      options: ReportOptions | None = None) -> AuditReport:
    """Raises warnd.audit.load.ScopeError when the scope names nothing reportable."""
    options = options or ReportOptions()
    if role_labels is None:
        from warnd.config import load_roles

        role_labels = {code: r.label for code, r in load_roles().by_code.items()}
    inp = await load_input(db, scope, now=now, role_labels=role_labels)
    return build_report(inp, load_labels(options.labels), coverage_target=options.coverage_target,
                        may_see_phones=options.may_see_phones, utc_offset_hours=options.utc_offset_hours)
