"""The agent's local /metrics and /healthz server under half-sent requests.

Before: no socket timeout and a thread per connection, so 500 connections that sent half a
request held 506 threads, for good. Now each socket has a timeout and at most
``max_handlers`` requests are handled at once; connections beyond that are turned away
without a thread.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from citygate.contract.wire import GatewayHealth
from citygate.gateway.local_http import MAX_HANDLERS, LocalHttp

HALF_OPEN = 200


def _health() -> GatewayHealth:
    return GatewayHealth(
        agent_version="0.1.0",
        uptime_s=1.0,
        readings_in=3,
        readings_out=2,
        rejected={},
        dropped={},
        outbox_depth=1,
        outbox_bytes=100,
        oldest_unsent_age_s=None,
        disk_free_bytes=10**9,
        rss_bytes=10**7,
        cpu_percent=1.0,
        broker_connected=True,
        cert_days_left=100.0,
    )


@pytest.fixture
def http() -> Iterator[LocalHttp]:
    # A short timeout so that the test sees the half-open connections dropped.
    server = LocalHttp("127.0.0.1", 0, _health, lambda: True, request_timeout_s=2.0)
    server.start()
    yield server
    server.stop()


def _get(port: int, path: str = "/metrics") -> tuple[int, bytes]:
    r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10, trust_env=False)
    return r.status_code, r.content


def _wait_closed(s: socket.socket, timeout: float = 30.0) -> bool:
    """True once the server closed (or reset) the connection; False if it kept it."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass  # a 503 for a turned-away connection, or the 408 of a timed-out request
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def test_half_sent_requests_hold_a_bounded_number_of_threads(http: LocalHttp) -> None:
    assert _get(http.port)[0] == 200
    before = threading.active_count()
    flood = []
    try:
        for _ in range(HALF_OPEN):
            s = socket.create_connection(("127.0.0.1", http.port), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            flood.append(s)
        # One more, complete: accepted after every connection of the flood (one accepting
        # thread, in order), so once it is answered or turned away, each of them has its thread
        # or was turned away too.
        sentinel = socket.create_connection(("127.0.0.1", http.port), timeout=10)
        sentinel.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert _wait_closed(sentinel)
        sentinel.close()
        threads = threading.active_count() - before
        assert threads <= MAX_HANDLERS, f"{HALF_OPEN} half-sent requests hold {threads} threads"
        assert http.server.refused > 0
        # The ones being handled give up after the timeout and close; so does the server on
        # every connection it turned away.
        assert all(_wait_closed(s) for s in flood), "a half-sent request kept its connection"
    finally:
        for s in flood:
            s.close()
    # A normal scrape is answered again.
    status, body = _get(http.port)
    assert status == 200 and b"citygate_gateway_readings_in_total 3.0" in body
    status, body = _get(http.port, "/healthz")
    assert status == 200 and b'"healthy":true' in body
