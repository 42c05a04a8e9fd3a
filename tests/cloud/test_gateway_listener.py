"""Gateways get their own listener; anonymous connections get short limits.

With ``client_cert_mode = "optional"`` (the demo's), anonymous TLS connections could take
every connection of the one listener, and every gateway batch was answered 503. With
``gateway_port`` set, gateways connect to a listener of their own: a certificate is always
required there, it has its own connection budget, and it serves only the gateway routes
(the main listener refuses those with 403 ``use_gateway_listener``). Every listener drops a
TLS handshake after ``tls_handshake_timeout_s``, and a connection without a client
certificate is kept alive for ``anonymous_keep_alive_s`` only. None of these settings
existed before (the old code refuses them at load).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest

from citygate.servers.process import free_port
from tests.cloud.conftest import (
    OPERATOR_TOKEN,
    READER_TOKEN,
    RunningCloud,
    make_settings,
    post_batch,
    reading,
)
from tests.cloud.test_identity import HEALTH

pytestmark = pytest.mark.servers


def _client(cloud, port: int, *, cert: bool = True, token: str | None = None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(cloud.cloud_pki.infra_ca))
    if cert:
        gw = cloud.cloud_pki.gateway()
        ctx.load_cert_chain(str(gw.cert), str(gw.key))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    c = httpx.Client(
        base_url=f"https://localhost:{port}", verify=ctx, headers=headers, timeout=30, trust_env=False
    )
    cloud._clients.append(c)
    return c


def _tls(port: int, ca: Path, cert=None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _wait_closed(sock: socket.socket, within_s: float) -> float | None:
    """Seconds until the peer closes ``sock`` (reading whatever comes), None if not within ``within_s``."""
    t0 = time.monotonic()
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    return time.monotonic() - t0


@pytest.fixture
def split_cloud(cloud_factory, influxdb):
    influxdb.create_database("gwlistener")
    return cloud_factory(
        gateway_port=free_port(),
        client_cert_mode="optional",
        influx_url=influxdb.url,
        influx_db="gwlistener",
        max_connections=16,
        header_timeout_s=60.0,
    )


def test_gateways_are_served_on_their_own_listener_only(split_cloud):
    cloud = split_cloud
    gp = cloud.settings.gateway_port
    gw = _client(cloud, gp)
    resp = post_batch(gw, [reading()])
    assert resp.status_code == 200 and resp.json()["accepted"] == 1, resp.text
    assert resp.headers.get("date")  # gateways anchor their clock to it
    assert gw.post("/v1/gateways/gw-test/heartbeat", json=HEALTH).status_code == 200
    assert gw.get("/healthz").status_code == 200 and gw.get("/readyz").status_code == 200
    # Nothing else there: readers, the dashboard and /metrics live on the main listener.
    for path in ("/v1/devices/dev-a/series", "/dashboard", "/metrics", "/v1/gateways", "/openapi.json"):
        assert _client(cloud, gp, token=OPERATOR_TOKEN).get(path).status_code == 404, path
    # On the main listener the gateway routes are refused, with a reason the gateway retries on.
    main = cloud.gateway()
    resp = post_batch(main, [reading()])
    assert resp.status_code == 403 and resp.json()["error"] == "use_gateway_listener", resp.text
    assert str(gp) in resp.json()["detail"]
    assert main.post("/v1/gateways/gw-test/heartbeat", json=HEALTH).status_code == 403
    # ... and everything else works there, with or without a certificate.
    assert cloud.reader().get("/v1/devices/dev-a/series").status_code == 200
    anon = cloud.client(None, token=READER_TOKEN)
    assert anon.get("/v1/devices/dev-a/series").status_code == 200
    metrics = cloud.operator().get("/metrics").text
    assert 'citygate_cloud_auth_failures_total{reason="wrong_listener"} 2.0' in metrics


def test_the_gateway_listener_requires_a_certificate(split_cloud):
    anon = _client(split_cloud, split_cloud.settings.gateway_port, cert=False)
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)):
        anon.get("/healthz")


def test_anonymous_connections_filling_the_main_listener_leave_gateways_alone(split_cloud):
    """The issue's situation at the smallest budget (16): the main listener full of anonymous clients."""
    cloud = split_cloud
    held = []
    try:
        for _ in range(cloud.settings.max_connections):
            s = _tls(cloud.settings.port, cloud.cloud_pki.infra_ca)  # no certificate
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: loc")  # headers never finished
            held.append(s)
        # The main listener is full: a new request there gets uvicorn's 503 ...
        with _tls(cloud.settings.port, cloud.cloud_pki.infra_ca) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            extra.settimeout(10)
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        # ... while gateways, on their own listener, are answered as usual.
        gw = _client(cloud, cloud.settings.gateway_port)
        for _ in range(3):
            resp = post_batch(gw, [reading()])
            assert resp.status_code == 200, resp.text
    finally:
        for s in held:
            s.close()


def test_without_gateway_port_gateways_use_the_one_listener_as_before(cloud_v1):
    assert cloud_v1.settings.gateway_port == 0
    assert post_batch(cloud_v1.gateway(), [reading()]).status_code == 200


def test_gateway_port_must_differ_from_port(cloud_pki, tmp_path):
    from citygate.cloud.app import create_app
    from citygate.errors import ConfigError

    s = make_settings(cloud_pki, tmp_path)
    with pytest.raises(ConfigError, match="gateway_port"):
        create_app(s.model_copy(update={"gateway_port": s.port}))


def test_anonymous_connections_are_not_kept_alive_long(cloud_factory):
    cloud = cloud_factory(client_cert_mode="optional", anonymous_keep_alive_s=0.5)
    with _tls(cloud.settings.port, cloud.cloud_pki.infra_ca) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        # Closed after the short keep-alive, far before the 30 s of a connection with a certificate.
        assert _wait_closed(s, 20) is not None
    # A gateway's connection stays usable across the anonymous keep-alive.
    with _tls(cloud.settings.port, cloud.cloud_pki.infra_ca, cloud.cloud_pki.gateway()) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        # Still open after four anonymous keep-alives (it is closed at 30 s).
        assert _wait_closed(s, 2) is None
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")


class _ProductionServer(RunningCloud):
    """RunningCloud with the server ``citygate cloud run`` uses (cloud_server: the handshake timeout)."""

    def __init__(self, settings, cloud_pki) -> None:
        super().__init__(settings, cloud_pki)
        from citygate.cloud.server import cloud_server

        self.server = cloud_server(self.config, settings)
        self.thread = threading.Thread(target=self.server.run, name="cloud", daemon=True)


@pytest.mark.parametrize("listener", ["main", "gateway"])
def test_a_tls_handshake_that_never_happens_is_dropped(cloud_pki, tmp_path, listener):
    settings = make_settings(
        cloud_pki,
        tmp_path,
        tls_handshake_timeout_s=0.5,
        gateway_port=free_port(),
        client_cert_mode="optional",
    )
    cloud = _ProductionServer(settings, cloud_pki).start()
    try:
        port = settings.port if listener == "main" else settings.gateway_port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            # TCP only, never a ClientHello: asyncio's own limit would hold it for 60 s.
            assert _wait_closed(raw, 20) is not None
        # A real handshake is unaffected.
        c = _client(cloud, port)
        assert c.get("/healthz").status_code == 200
    finally:
        cloud.stop()
