"""HTTPS clients of the cloud: a gateway's (or an impostor's), and raw TLS requests beyond what
httpx would send."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx

from citygate.certs.pki import CertFiles
from citygate.chaos.harness import ChaosContext


def https(
    ctx: ChaosContext, cert: CertFiles | None, *, timeout: float = 15.0, readers: bool = False
) -> httpx.Client:
    """A client of the gateways' listener (what a gateway, or an impostor, talks to), or with
    ``readers`` of the readers' and operators' listener."""
    assert ctx.stack is not None
    sctx = ssl.create_default_context(cafile=str(ctx.infra_ca))
    if cert is not None:
        sctx.load_cert_chain(str(cert.cert), str(cert.key))
    url = ctx.stack.cloud_url if readers else ctx.stack.gateway_url
    return httpx.Client(base_url=url, verify=sctx, timeout=timeout, trust_env=False)


def outcome(fn: Callable[[], httpx.Response]) -> int | str:
    """The status code, or ``refused`` when the TLS handshake or the connection was refused."""
    try:
        return fn().status_code
    except httpx.TransportError:
        return "refused"


def raw_request(port: int, ca: Path, request: bytes) -> int | str:
    """Send ``request`` over TLS and read the status code; ``closed`` if the server hung up first."""
    sctx = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            sctx.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(request)
            head = sock.recv(64)
    except OSError:
        return "closed"
    if not head.startswith(b"HTTP/1.1 "):
        return "closed"
    return int(head[9:12])
