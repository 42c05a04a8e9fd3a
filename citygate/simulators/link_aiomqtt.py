"""The :class:`~citygate.simulators.link.DeviceLink` over aiomqtt 2.x (paho underneath): a Task
per publish, and a Task that reads the incoming messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from typing import Any

import aiomqtt

from citygate.simulators.link import LinkClosedError, LinkError, LinkOptions

INCOMING_QUEUE = 64  # bounded: a dropped ack costs a resend of its readings, never the readings


class _ErrorCatcher(logging.Logger):
    """The logger of one connection attempt: keeps paho's last error instead of printing it.

    A refused client certificate shows up as a TLS alert on the first read after the
    handshake; paho only logs it and aiomqtt would wait out its whole timeout for the
    CONNACK. Catching the error lets the attempt fail at once, with the real reason.
    """

    def __init__(self, failed: asyncio.Future[None]) -> None:
        super().__init__("citygate.sim.mqtt", logging.ERROR)
        self.last_error: str | None = None
        self.failed = failed

    def handle(self, record: logging.LogRecord) -> None:
        self.last_error = record.getMessage()
        if not self.failed.done():
            self.failed.set_result(None)


class AiomqttLink:
    """An ``aiomqtt.Client`` entered on connect and exited on close."""

    def __init__(self, options: LinkOptions) -> None:
        self._options = options
        self._client: aiomqtt.Client | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_connected(self) -> bool:
        # aiomqtt says nothing else: its message stream ends when the connection is lost.
        return self._consumer is not None and not self._consumer.done()

    async def connect(self, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        o = self._options
        will = o.will
        catcher = _ErrorCatcher(loop.create_future())
        client = aiomqtt.Client(
            host,
            port,
            identifier=o.client_id,
            tls_context=ssl_context,
            clean_session=o.clean_session,
            keepalive=o.keepalive,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=will.retain) if will else None,
            max_queued_incoming_messages=INCOMING_QUEUE,
            max_inflight_messages=o.inflight,
            logger=catcher,
            timeout=o.connect_timeout_s,
        )
        client.pending_calls_threshold = o.inflight + 16
        enter = loop.create_task(client.__aenter__())
        waiters: set[asyncio.Future[object]] = {enter, catcher.failed}  # type: ignore[arg-type]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not enter.done():
                enter.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await enter
        if enter.cancelled() or enter.exception() is not None:
            exc = None if enter.cancelled() else enter.exception()
            raise LinkError(catcher.last_error or str(exc) or "connect failed")
        self._client = client
        self._consumer = loop.create_task(self._consume(client))

    async def _consume(self, client: aiomqtt.Client) -> None:
        on_message = self._options.on_message
        try:
            async for msg in client.messages:
                p = msg.payload
                on_message(str(msg.topic), bytes(p) if isinstance(p, bytes | bytearray) else b"")
        except aiomqtt.MqttError:
            return  # the connection is lost

    async def subscribe(self, topic: str) -> None:
        with _link_errors():
            await self._connected().subscribe(topic, qos=1)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        with _link_errors():
            await self._connected().publish(topic, payload, qos=1, retain=retain)

    def send(self, topic: str, payload: bytes, token: Any) -> None:
        publish = self._connected().publish(topic, payload, qos=1, timeout=self._options.publish_timeout_s)
        task = asyncio.get_running_loop().create_task(publish)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._sent(t, token))

    def _sent(self, task: asyncio.Task[None], token: Any) -> None:
        self._tasks.discard(task)
        on_sent = self._options.on_sent
        if task.cancelled():
            on_sent(token, LinkClosedError("closed"))
        elif (exc := task.exception()) is None:
            on_sent(token, None)
        else:
            on_sent(token, LinkError(str(exc)) if isinstance(exc, aiomqtt.MqttError) else exc)

    async def wait_closed(self) -> None:
        if self._consumer is not None:
            await asyncio.shield(self._consumer)

    async def close(self) -> None:
        client = self._client
        if client is None:
            return
        if self._consumer is not None:
            self._consumer.cancel()
        try:
            with _link_errors():
                await client.__aexit__(None, None, None)
        finally:
            for t in list(self._tasks):  # their PUBACKs will never come on a closed connection
                t.cancel()

    def _connected(self) -> aiomqtt.Client:
        if self._client is None:
            raise LinkError("not connected")
        return self._client


@contextlib.contextmanager
def _link_errors() -> Iterator[None]:
    """aiomqtt's errors as the link's (same text: the fleet counts them by it)."""
    try:
        yield
    except aiomqtt.MqttError as e:
        raise LinkError(str(e)) from e
