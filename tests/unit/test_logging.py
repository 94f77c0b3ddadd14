"""Log format: JSON under systemd, console on a terminal, WARND_LOG_FORMAT to choose."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from warnd.config import ConfigError
from warnd.logging import configure_logging, log_format


@pytest.mark.parametrize(("env", "fmt"), [
    ({}, "console"),
    ({"INVOCATION_ID": "0f3c"}, "json"),  # systemd sets it for every service
    ({"JOURNAL_STREAM": "8:12345"}, "json"),  # stderr goes to the journal
    ({"INVOCATION_ID": "0f3c", "WARND_LOG_FORMAT": "console"}, "console"),
    ({"WARND_LOG_FORMAT": " JSON "}, "json"),
])
def test_format_choice(env: dict[str, str], fmt: str) -> None:
    assert log_format(env) == fmt


def test_unknown_format_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"^WARND_LOG_FORMAT: must be json or console, not 'xml'$"):
        log_format({"WARND_LOG_FORMAT": "xml"})


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def test_json_lines_keep_chinese_and_stdlib_records_alike(capsys: pytest.CaptureFixture[str],
                                                          restore_logging: None) -> None:
    assert configure_logging(env={"JOURNAL_STREAM": "8:1"}) == "json"
    structlog.get_logger("warnd").warning("coverage gap", region="辰龙关村")
    logging.getLogger("aiohttp.server").error("client gone")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "coverage gap" and lines[0]["region"] == "辰龙关村"
    assert lines[0]["level"] == "warning" and lines[0]["timestamp"].endswith("Z")
    assert (lines[1]["event"], lines[1]["level"], lines[1]["logger"]) == ("client gone", "error", "aiohttp.server")
