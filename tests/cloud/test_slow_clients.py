"""Slow and idle clients cannot hold the cloud's connections (slowloris).

A client must send a request's headers within ``header_timeout_s`` of
connecting, or of the first byte of its next request on a kept-alive
connection; trickling bytes does not reset the clock. Well-behaved requests
on the same server are unaffected.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.cloud.conftest import OPERATOR_TOKEN
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

TIMEOUT_S = 1.0


def _tls(cloud) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(cloud.cloud_pki.infra_ca))
    gw = cloud.cloud_pki.gateway()
    ctx.load_cert_chain(str(gw.cert), str(gw.key))
    raw = socket.create_connection(("127.0.0.1", cloud.settings.port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _closed_within(sock: ssl.SSLSocket, seconds: float, drip: bytes = b"", what: str = "") -> float:
    """Seconds until the server closes ``sock`` (sending ``drip`` a byte every 0.2 s meanwhile).

    Fails if it is still open after ``seconds``.
    """
    t0 = time.monotonic()
    sock.settimeout(0.2)
    sent = [0]

    def closed() -> bool:
        try:
            if drip:
                i = sent[0] % len(drip)
                sock.sendall(drip[i : i + 1])
                sent[0] += 1
            return sock.recv(4096) == b""
        except (TimeoutError, ssl.SSLWantReadError):
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            return True

    wait_until(
        closed,
        timeout=seconds,
        interval=0,  # recv() waits up to 0.2 s: the drip's pace
        message=lambda: what or f"the server to close the connection (sent {sent[0]} bytes of {drip!r})",
    )
    return time.monotonic() - t0


def test_a_client_trickling_its_headers_is_disconnected(cloud_factory):
    cloud = cloud_factory(header_timeout_s=TIMEOUT_S)
    sock = _tls(cloud)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        took = _closed_within(
            sock,
            5 * TIMEOUT_S,
            drip=b"X-Slow: yes\r\n",
            what="the server to close a connection sending a header byte every 0.2 s",
        )
        assert took < TIMEOUT_S + 1.0
    finally:
        sock.close()


def test_an_idle_connection_after_the_handshake_is_disconnected(cloud_factory):
    cloud = cloud_factory(header_timeout_s=TIMEOUT_S)
    sock = _tls(cloud)
    try:
        took = _closed_within(sock, 5 * TIMEOUT_S)
        assert took < TIMEOUT_S + 1.0, took
    finally:
        sock.close()


def test_a_slow_second_request_on_a_kept_alive_connection_is_disconnected(cloud_factory):
    cloud = cloud_factory(header_timeout_s=TIMEOUT_S)
    sock = _tls(cloud)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        took = _closed_within(sock, 5 * TIMEOUT_S, drip=b"GET /healthz HTTP/1.1\r\nX-Slow: yes\r\n")
        assert took < TIMEOUT_S + 1.0, took
    finally:
        sock.close()


def test_well_behaved_requests_are_unaffected(cloud_factory):
    cloud = cloud_factory(header_timeout_s=TIMEOUT_S)
    slow = [_tls(cloud) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: loc")
        op = cloud.client(cloud.cloud_pki.gateway(), token=OPERATOR_TOKEN)
        # Keep-alive: a second request later than the header timeout after the first still works.
        assert op.get("/healthz").status_code == 200
        time.sleep(TIMEOUT_S * 1.5)  # must pass: the header timeout gone by on the kept-alive connection
        assert op.get("/healthz").status_code == 200
        # Headers in time, however the bytes are split, are fine.
        sock = _tls(cloud)
        for part in (b"GET /healthz HT", b"TP/1.1\r\nHost: local", b"host\r\n\r\n"):
            sock.sendall(part)
            time.sleep(TIMEOUT_S / 5)  # must pass: the headers spread over time, all within the timeout
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
    finally:
        for s in slow:
            s.close()


def test_settings_bound_the_timeout_and_the_connections():
    from citygate.cloud.settings import CloudSettings

    fields = CloudSettings.model_fields
    assert fields["header_timeout_s"].default == 10.0
    assert fields["max_connections"].default == 1000
