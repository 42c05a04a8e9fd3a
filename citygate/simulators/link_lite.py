"""The :class:`~citygate.simulators.link.DeviceLink` over :mod:`.mqtt_lite`: a callback per
PUBACK, no Task or Future per publish."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

from citygate.simulators import mqtt_lite
from citygate.simulators.link import (
    ConnackRefusedError,
    LinkClosedError,
    LinkError,
    LinkOptions,
)


class LiteLink:
    """A :class:`~citygate.simulators.mqtt_lite.LiteClient` with the link's errors."""

    def __init__(self, options: LinkOptions) -> None:
        will = options.will
        self._on_sent = options.on_sent
        self._client = mqtt_lite.LiteClient(
            options.client_id,
            keepalive=options.keepalive,
            clean_session=options.clean_session,
            will=mqtt_lite.Will(will.topic, will.payload, 1, will.retain) if will is not None else None,
            on_message=options.on_message,
            publish_timeout_s=options.publish_timeout_s,
        )
        self._connect_timeout_s = options.connect_timeout_s

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    async def connect(self, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        with _link_errors():
            await self._client.connect(host, port, ssl_context=ssl_context, timeout=self._connect_timeout_s)

    async def subscribe(self, topic: str) -> None:
        with _link_errors():
            await self._client.subscribe(topic, qos=1)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        with _link_errors():
            await self._client.publish(topic, payload, qos=1, retain=retain)

    def send(self, topic: str, payload: bytes, token: Any) -> None:
        self._client.publish_nowait(topic, payload, self._sent, token)

    def _sent(self, token: Any, exc: BaseException | None) -> None:
        if exc is None:  # the common case first: a PUBACK
            self._on_sent(token, None)
        elif isinstance(exc, mqtt_lite.DisconnectedError):
            self._on_sent(token, LinkClosedError(str(exc)))
        else:
            self._on_sent(token, LinkError(str(exc)))

    async def wait_closed(self) -> None:
        await self._client.wait_closed()

    async def close(self) -> None:
        await self._client.disconnect()  # bounded, and never raises


@contextlib.contextmanager
def _link_errors() -> Iterator[None]:
    """mqtt_lite's errors as the link's (same text: the fleet counts them by it)."""
    try:
        yield
    except mqtt_lite.ConnectRefusedError as e:
        raise ConnackRefusedError(str(e)) from e
    except mqtt_lite.MqttLiteError as e:
        raise LinkError(str(e)) from e
