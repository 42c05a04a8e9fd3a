"""Service logs: every line a JSON object, the standard library's records too; httpx quiet at info."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from citygate.logs import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)
    structlog.reset_defaults()


def test_every_line_is_json_and_httpx_requests_are_not_logged_at_info(restore_logging, capsys):
    configure_logging("info")
    structlog.get_logger("citygate.test").info("connected to broker", port=1883)
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "https://0.0.0.0:8443")
    logging.getLogger("httpx").info('HTTP Request: POST https://cloud/v1/ingest "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("retrying")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        logging.getLogger("citygate.test").exception("boom")
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == [
        "connected to broker",
        "Uvicorn running on https://0.0.0.0:8443",
        "retrying",
        "boom",
    ]
    assert lines[0]["port"] == 1883 and lines[0]["level"] == "info"
    assert lines[1]["logger"] == "uvicorn.error"
    assert lines[2]["level"] == "warning"
    assert "ZeroDivisionError" in lines[3]["exception"]
    assert all("timestamp" in line for line in lines)


def test_debug_lets_httpx_requests_through(restore_logging, capsys):
    configure_logging("debug")
    logging.getLogger("httpx").info("HTTP Request: POST")
    assert "HTTP Request: POST" in capsys.readouterr().err
