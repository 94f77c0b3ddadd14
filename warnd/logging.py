"""structlog set-up: key=value lines on stderr (JSON with WARND_LOG_JSON=1)."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    renderer = (structlog.processors.JSONRenderer() if os.environ.get("WARND_LOG_JSON")
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
