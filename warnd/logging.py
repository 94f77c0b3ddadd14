"""structlog set-up: one JSON object per line under systemd (journald keeps it, tools parse
it), readable key=value lines on a terminal. WARND_LOG_FORMAT=json|console chooses
explicitly (docs/operations.md)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

import structlog

from warnd.config.errors import ConfigError

FORMATS = ("json", "console")


def log_format(env: Mapping[str, str]) -> str:
    """json or console: WARND_LOG_FORMAT if set, else json when systemd started us (it sets
    INVOCATION_ID for every service, JOURNAL_STREAM when stderr goes to the journal)."""
    chosen = env.get("WARND_LOG_FORMAT", "").strip().lower()
    if chosen:
        if chosen not in FORMATS:
            raise ConfigError(f"WARND_LOG_FORMAT: must be json or console, not {chosen!r}")
        return chosen
    return "json" if env.get("INVOCATION_ID") or env.get("JOURNAL_STREAM") else "console"


def configure_logging(level: int = logging.INFO, env: Mapping[str, str] | None = None) -> str:
    """Configure structlog, and stdlib logging (aiohttp, alembic) in the same format; returns
    the format chosen."""
    fmt = log_format(os.environ if env is None else env)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False))
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[structlog.processors.add_log_level, structlog.stdlib.add_logger_name, stamp]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[structlog.processors.add_log_level, stamp, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    return fmt
