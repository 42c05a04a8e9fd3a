"""A small asyncio MQTT 3.1.1 client: just what a simulated device needs, and fast.

aiomqtt (over paho) costs ~150-250 µs of CPU per QoS 1 publish, which caps one
process at a few thousand publishes/s. This client is an :class:`asyncio.Protocol`
on a TLS transport (``loop.create_connection(..., ssl=ctx)``) that:

- encodes packets straight into a list of byte strings and writes them to the
  transport once per event-loop iteration (one TLS record for many packets);
- keeps QoS 1 publishes in a dict by packet id and calls a plain callback on PUBACK
  (:meth:`LiteClient.publish_nowait`: no Task, no Future per publish), or resolves a
  Future (:meth:`LiteClient.publish`);
- delivers incoming PUBLISH (QoS 0/1, PUBACK sent for QoS 1) to a callback;
- sends PINGREQ when nothing was sent for half the keepalive, and drops the
  connection when a PINGRESP or a PUBACK is overdue;
- on connection loss fails everything pending with :class:`ConnectionLostError`.

Not supported (a simulated device does not need them): QoS 2, username/password,
persistent sessions (``clean_session=False`` is sent but nothing is resent by the
client: the device's own memory does that), MQTT 5.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT = b"\xe0\x00"

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

DISCONNECT_WAIT_S = 5.0  # bound on the close handshake
TICKET_WAIT_S = 0.25  # at most, for the TLS 1.3 session ticket before CONNECT (see connection_made)

PublishCallback = Callable[[Any, BaseException | None], None]
"""Called as ``callback(token, None)`` on PUBACK, ``callback(token, exc)`` on failure."""
MessageCallback = Callable[[str, bytes], None]


class MqttLiteError(Exception):
    """Base of this client's errors."""


class ConnectRefusedError(MqttLiteError):
    """The broker answered CONNECT with a non-zero CONNACK return code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"connection refused by the broker: {CONNACK_REASONS.get(code, 'code')} ({code})")
        self.code = code


class ConnectionLostError(MqttLiteError):
    """The connection closed (or was closed) with this operation still pending."""


class DisconnectedError(ConnectionLostError):
    """We disconnected on purpose (:meth:`LiteClient.disconnect`) with this operation pending."""


class SubscribeRefusedError(MqttLiteError):
    """SUBACK refused the subscription (0x80) or granted less than asked."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def _remaining_length(n: int) -> bytes:
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("string too long for MQTT")
    return len(b).to_bytes(2, "big") + b


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


_PendingPublish = tuple[PublishCallback, Any, float]


class LiteClient(asyncio.Protocol):
    """One MQTT 3.1.1 connection. ``await connect()``, publish, subscribe, ``await disconnect()``.

    A client is used for one connection only: make a new one to reconnect.
    """

    def __init__(
        self,
        client_id: str,
        *,
        keepalive: int = 60,
        clean_session: bool = True,
        will: Will | None = None,
        on_message: MessageCallback | None = None,
        publish_timeout_s: float | None = None,
    ) -> None:
        self.client_id = client_id
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.will = will
        self.on_message = on_message
        self.publish_timeout_s = publish_timeout_s
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[BaseException | None] = self.loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[None] = self.loop.create_future()
        self._connected = False
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._buf = bytearray()
        self._pending: dict[int, _PendingPublish] = {}
        self._subs: dict[int, tuple[asyncio.Future[int], int]] = {}
        self._next_pid = 0
        self._topics: dict[str, bytes] = {}
        self._last_send = 0.0
        self._ping_sent_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing_exc: BaseException | None = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def inflight(self) -> int:
        return len(self._pending)

    async def connect(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Open the connection, send CONNECT and wait for a CONNACK that accepts it.

        Raises :class:`ConnectRefusedError` (CONNACK code), :class:`ConnectionLostError` (closed before
        the CONNACK, e.g. the broker refused the client certificate), ``OSError`` (TCP/TLS) or
        :class:`MqttLiteError` on timeout.
        """
        try:
            async with asyncio.timeout(timeout):
                kwargs: dict[str, Any] = {}
                if ssl_context is not None:
                    kwargs["ssl"] = ssl_context
                    kwargs["server_hostname"] = server_hostname or host
                await self.loop.create_connection(lambda: self, host, port, **kwargs)
                await self._connack
        except TimeoutError:
            self._abort(MqttLiteError("connect timed out"))
            raise MqttLiteError("connect timed out") from None
        except BaseException:
            self._abort(ConnectionLostError("connect failed"))
            raise
        self._connected = True
        self._schedule_tick()

    def publish_nowait(
        self,
        topic: str,
        payload: bytes,
        callback: PublishCallback | None = None,
        token: Any = None,
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Queue a publish. For QoS 1, ``callback(token, exc)`` runs once: exc None on PUBACK,
        else the reason (:class:`ConnectionLostError`, :class:`DisconnectedError`). QoS 0 calls nothing.

        Raises :class:`ConnectionLostError` at once when not connected.
        """
        if not self._connected:
            raise ConnectionLostError("not connected")
        t = self._topics.get(topic)
        if t is None:
            t = self._topics[topic] = _string(topic)
        flags = PUBLISH | (qos << 1) | (1 if retain else 0)
        out = self._out
        if qos:
            pid = self._alloc_pid()
            out.append(bytes((flags,)) + _remaining_length(len(t) + 2 + len(payload)))
            out.append(t)
            out.append(pid.to_bytes(2, "big"))
            if callback is not None:
                self._pending[pid] = (callback, token, self.loop.time())
            else:
                self._pending[pid] = (_ignore, None, self.loop.time())
        else:
            out.append(bytes((flags,)) + _remaining_length(len(t) + len(payload)))
            out.append(t)
        out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a publish; the future resolves on PUBACK (QoS 1) or once queued (QoS 0)."""
        fut: asyncio.Future[None] = self.loop.create_future()
        if qos:
            self.publish_nowait(topic, payload, _resolve, fut, qos=qos, retain=retain)
        else:
            self.publish_nowait(topic, payload, qos=0, retain=retain)
            fut.set_result(None)
        return fut

    async def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribe and wait for the SUBACK; returns the granted QoS.

        Raises :class:`SubscribeRefusedError` when refused or granted less than ``qos``.
        """
        if not self._connected:
            raise ConnectionLostError("not connected")
        pid = self._alloc_pid()
        fut: asyncio.Future[int] = self.loop.create_future()
        self._subs[pid] = (fut, qos)
        body = pid.to_bytes(2, "big") + _string(topic) + bytes((qos,))
        self._send(bytes((SUBSCRIBE,)) + _remaining_length(len(body)) + body)
        return await fut

    async def disconnect(self) -> None:
        """Send DISCONNECT, flush and close. Pending publishes fail with :class:`DisconnectedError`."""
        if self._transport is not None and self._connected:
            self._out.append(DISCONNECT)
            self._flush()
        self._abort(DisconnectedError("disconnected"), graceful=True)
        if self._transport is None:
            return  # never connected: there is no connection_lost to wait for
        try:
            # A graceful TLS close waits for the peer; a dead or restarted broker may never answer.
            await asyncio.wait_for(asyncio.shield(self.closed), DISCONNECT_WAIT_S)
        except TimeoutError:
            self._transport.abort()

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection is closed; returns why (None: closed cleanly by us)."""
        return await asyncio.shield(self.closed)

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        so = transport.get_extra_info("ssl_object")
        if isinstance(so, ssl.SSLObject) and so.version() == "TLSv1.3":
            # TLS 1.3: the broker checks our certificate after our side of the handshake is
            # done, and refuses it with an alert. A CONNECT sent before that alert makes the
            # broker's close an RST, which can overtake the alert (then the reason is lost).
            # The broker's session ticket comes after it accepted the certificate: wait for it.
            self._await_ticket(so, self.loop.time() + TICKET_WAIT_S)
        else:
            self._send_connect()

    def _await_ticket(self, so: ssl.SSLObject, deadline: float) -> None:
        if self._transport is None or self._connack.done():
            return
        session = so.session
        if (session is not None and session.has_ticket) or self.loop.time() >= deadline:
            self._send_connect()
        else:
            self.loop.call_later(0.001, self._await_ticket, so, deadline)

    def _send_connect(self) -> None:
        flags = 0x02 if self.clean_session else 0
        payload = _string(self.client_id)
        w = self.will
        if w is not None:
            flags |= 0x04 | (w.qos << 3) | (0x20 if w.retain else 0)
            payload += _string(w.topic) + _string(w.payload)
        body = b"\x00\x04MQTT\x04" + bytes((flags,)) + self.keepalive.to_bytes(2, "big") + payload
        self._send(bytes((CONNECT,)) + _remaining_length(len(body)) + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        reason = self._closing_exc
        if reason is None:
            reason = ConnectionLostError(
                f"connection lost: {exc}" if exc else "connection closed by the broker"
            )
            if exc is not None:
                reason.__cause__ = exc
        self._fail_all(reason)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        n = len(buf)
        i = 0
        while n - i >= 2:
            first = buf[i]
            length = buf[i + 1]
            j = i + 2
            if length & 0x80:  # remaining length of 2-4 bytes
                length &= 0x7F
                shift = 7
                complete = False
                while j < n:
                    b = buf[j]
                    j += 1
                    length |= (b & 0x7F) << shift
                    if not b & 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        self._protocol_error("bad remaining length")
                        return
                if not complete:
                    break
            end = j + length
            if end > n:
                break
            kind = first & 0xF0
            if kind == PUBACK:
                self._on_puback((buf[j] << 8) | buf[j + 1])
            elif kind == PUBLISH:
                self._on_publish(first, bytes(buf[j:end]))
            elif kind == CONNACK:
                self._on_connack(buf[j + 1])
            elif kind == SUBACK:
                self._on_suback((buf[j] << 8) | buf[j + 1], bytes(buf[j + 2 : end]))
            elif kind == PINGRESP:
                self._ping_sent_at = None
            else:
                self._protocol_error(f"unexpected packet type 0x{first:02x}")
                return
            i = end
            if self._transport is None:
                return
        if i:
            del buf[:i]

    def eof_received(self) -> bool | None:
        return None  # close the transport

    # -- internals -----------------------------------------------------------------------------------

    def _alloc_pid(self) -> int:
        pending, subs = self._pending, self._subs
        if len(pending) + len(subs) >= 0xFFFF:
            raise MqttLiteError("no packet id left")
        pid = self._next_pid
        while True:
            pid = pid + 1 if pid < 0xFFFF else 1
            if pid not in pending and pid not in subs:
                self._next_pid = pid
                return pid

    def _send(self, packet: bytes) -> None:
        self._out.append(packet)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        t = self._transport
        if t is None or t.is_closing():
            out.clear()
            return
        t.write(b"".join(out))
        out.clear()
        self._last_send = self.loop.time()

    def _on_puback(self, pid: int) -> None:
        entry = self._pending.pop(pid, None)
        if entry is not None:
            entry[0](entry[1], None)

    def _on_publish(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 0x03
        tlen = (body[0] << 8) | body[1]
        topic = body[2 : 2 + tlen].decode("utf-8", "replace")
        pos = 2 + tlen
        if qos == 1:
            self._send(bytes((PUBACK, 2)) + body[pos : pos + 2])
            pos += 2
        elif qos:
            self._protocol_error("QoS 2 not supported")
            return
        if self.on_message is not None:
            self.on_message(topic, body[pos:])

    def _on_connack(self, code: int) -> None:
        if self._connack.done():
            self._protocol_error("second CONNACK")
            return
        if code:
            exc = ConnectRefusedError(code)
            self._connack.set_exception(exc)
            self._abort(exc)
        else:
            self._connack.set_result(None)

    def _on_suback(self, pid: int, codes: bytes) -> None:
        entry = self._subs.pop(pid, None)
        if entry is None:
            return
        fut, wanted = entry
        if fut.done():
            return
        granted = codes[0] if codes else 0x80
        if granted == 0x80 or granted < wanted:
            fut.set_exception(SubscribeRefusedError(f"subscription refused (granted 0x{granted:02x})"))
        else:
            fut.set_result(granted)

    def _schedule_tick(self) -> None:
        interval = 1.0
        if self.keepalive:
            interval = min(interval, self.keepalive / 2)
        self._timer = self.loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        now = self.loop.time()
        ka = self.keepalive
        if ka:
            if self._ping_sent_at is not None and now - self._ping_sent_at > ka:
                self._abort(ConnectionLostError("no PINGRESP within the keepalive"))
                return
            if self._ping_sent_at is None and now - self._last_send >= ka / 2:
                self._ping_sent_at = now
                self._send(PINGREQ)
        limit = self.publish_timeout_s
        if limit is not None and self._pending:
            oldest = next(iter(self._pending.values()))[2]
            if now - oldest > limit:
                self._abort(ConnectionLostError("no PUBACK within the publish timeout"))
                return
        self._schedule_tick()

    def _protocol_error(self, why: str) -> None:
        self._abort(ConnectionLostError(f"protocol error: {why}"))

    def _abort(self, reason: BaseException, *, graceful: bool = False) -> None:
        """Close now (``graceful``: after what is written) and fail everything pending with ``reason``."""
        if self._closing_exc is None:
            self._closing_exc = reason
        t = self._transport
        if t is not None and not t.is_closing():
            if graceful:
                t.close()
            else:
                t.abort()
        self._fail_all(self._closing_exc)

    def _fail_all(self, reason: BaseException) -> None:
        self._connected = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out.clear()
        if not self._connack.done():
            self._connack.set_exception(reason)
            self._connack.exception()  # retrieved: no "never retrieved" warning
        pending, self._pending = self._pending, {}
        for cb, token, _ in pending.values():
            cb(token, reason)
        subs, self._subs = self._subs, {}
        for fut, _ in subs.values():
            if not fut.done():
                fut.set_exception(reason)
        if not self.closed.done():
            self.closed.set_result(None if isinstance(reason, DisconnectedError) else reason)


def _ignore(token: Any, exc: BaseException | None) -> None:
    return None
