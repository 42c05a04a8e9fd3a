"""A device's MQTT connection as the fleet sees it: the :class:`DeviceLink` protocol.

The fleet runs every device the same way whichever client library carries it; each
library has an adapter (:mod:`.link_lite`, :mod:`.link_aiomqtt`) and
:mod:`.link_factory` picks one by :data:`ClientKind`. Every publish is QoS 1: the
device lets a reading go on its PUBACK (or on the gateway's ack), never before.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

ClientKind = Literal["lite", "aiomqtt"]
"""``lite``: :mod:`.mqtt_lite` (~6x faster; the benchmarks use it); ``aiomqtt``: aiomqtt 2.x over paho."""
CLIENTS: tuple[ClientKind, ...] = get_args(ClientKind)

MessageCallback = Callable[[str, bytes], None]
"""``on_message(topic, payload)`` for every message the broker delivers (the gateway's acks)."""
SentCallback = Callable[[Any, BaseException | None], None]
"""``on_sent(token, None)`` on PUBACK; ``on_sent(token, exc)`` when the publish failed, where a
:class:`LinkClosedError` means we closed the link with it pending (nothing failed)."""


class LinkError(Exception):
    """A connection, publish or subscribe failed; the text is the client library's."""


class ConnackRefusedError(LinkError):
    """The broker answered CONNECT with a refusal."""


class LinkClosedError(LinkError):
    """The publish was pending when we closed the link on purpose."""


@dataclass(frozen=True, slots=True)
class Will:
    """The last will: published QoS 1 by the broker when the link dies without a DISCONNECT."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """Who the device is and how its connection behaves; one link per connection attempt."""

    client_id: str
    on_message: MessageCallback
    on_sent: SentCallback
    keepalive: int = 60
    clean_session: bool = True
    will: Will | None = None
    inflight: int = 16  # unanswered publishes the device allows itself
    connect_timeout_s: float = 10.0
    publish_timeout_s: float = 15.0  # a PUBACK later than this is a failure


class DeviceLink(Protocol):
    """One MQTT connection of one device. Used once: a reconnect makes a new link."""

    @property
    def is_connected(self) -> bool:
        """False once the connection is known to be lost or closed."""
        ...

    async def connect(self, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        """Connect and wait for the CONNACK; raises :class:`LinkError` or ``OSError``."""
        ...

    async def subscribe(self, topic: str) -> None:
        """Subscribe (QoS 1) and wait for the SUBACK; raises :class:`LinkError`."""
        ...

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish and wait for the PUBACK; raises :class:`LinkError`."""
        ...

    def send(self, topic: str, payload: bytes, token: Any) -> None:
        """Publish without waiting: ``on_sent(token, ...)`` runs once, later. Only while connected."""
        ...

    async def wait_closed(self) -> None:
        """Return when the connection is lost (or closed)."""
        ...

    async def close(self) -> None:
        """Disconnect; pending sends end with :class:`LinkClosedError`. Raises :class:`LinkError`
        when the graceful close failed (the connection is released anyway)."""
        ...


LinkFactory = Callable[[LinkOptions], DeviceLink]
"""Makes the (unconnected) link of one connection attempt, like Telegraf's ClientFactory."""


def classify(exc: BaseException) -> str:
    """A short, countable kind for a connection error."""
    if isinstance(exc, ConnackRefusedError):
        return "connack_refused"
    text = str(exc).lower()
    for needle, kind in (
        ("revoked", "tls_revoked"),
        ("expired", "tls_expired"),
        ("unknown ca", "tls_unknown_ca"),
        ("certificate verify failed", "tls_server_unverified"),
        ("ssl", "tls_error"),
        ("refused", "tcp_refused"),
        ("timed out", "timeout"),
        ("reset", "reset"),
    ):
        if needle in text:
            return kind
    return "connect_error"
