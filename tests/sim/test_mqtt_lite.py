"""mqtt_lite against the real Mosquitto with mTLS (and a fake broker for the CONNACK codes)."""

from __future__ import annotations

import asyncio
import signal
import ssl

import orjson
import pytest

from citygate.certs.pki import CaName, Pki
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.topics import ack_topic, telemetry_topic
from citygate.servers.mosquitto import LocalMosquitto
from citygate.simulators import provision
from citygate.simulators.faults import FaultKind, resolve
from citygate.simulators.fleet import SimDevice
from citygate.simulators.link import classify
from citygate.simulators.mqtt_lite import (
    ConnectionLostError,
    ConnectRefusedError,
    LiteClient,
    MqttLiteError,
    SubscribeRefusedError,
    Will,
)
from tests.sim.conftest import StandInGateway, reload_broker

REGISTRY = ProfileRegistry()


def device(pki: Pki, prefix: str, fault: FaultKind | None = None) -> SimDevice:
    if fault is None:
        records = provision.ensure_devices(pki, prefix, 1, provision.parse_mix(None, REGISTRY), REGISTRY)
    else:
        records = provision.ensure_cert_fault_devices(pki, prefix, fault, 1, REGISTRY)
    refused = {r.device_id: fault for r in records} if fault is not None else {}
    plan = resolve([], [r.device_id for r in records], 1)
    return provision.build_fleet(pki, records, REGISTRY, plan, refused)[0]


def context(pki: Pki, d: SimDevice) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=pki.ca_cert_path(CaName.INFRA))
    ctx.load_cert_chain(d.cert, d.key)
    return ctx


def payload(seq: int) -> bytes:
    return orjson.dumps({"seq": seq, "ts": 1_700_000_000_000 + seq, "values": {}})


@pytest.mark.servers
def test_connect_publish_puback_and_receive_ack(
    sim_pki: Pki, sim_broker: LocalMosquitto, gateway: StandInGateway
) -> None:
    gateway.ack = False  # the test publishes the ack itself
    d = device(sim_pki, "lite")

    async def main() -> None:
        got: list[tuple[str, bytes]] = []
        arrived = asyncio.Event()

        def on_message(topic: str, data: bytes) -> None:
            got.append((topic, data))
            arrived.set()

        c = LiteClient(
            d.device_id, keepalive=5, will=Will(f"devices/{d.device_id}/status", b"offline", 1, True)
        )
        c.on_message = on_message
        await c.connect("127.0.0.1", sim_broker.device_port, ssl_context=context(sim_pki, d))
        assert c.is_connected
        assert await c.subscribe(ack_topic(d.device_id), qos=1) == 1
        # QoS 1 with a future, and many fire-and-forget publishes with a callback.
        await asyncio.wait_for(c.publish(telemetry_topic(d.device_id), payload(0)), 5)
        results: list[tuple[int, BaseException | None]] = []
        done = asyncio.Event()

        def cb(token: int, exc: BaseException | None) -> None:
            results.append((token, exc))
            if len(results) == 200:
                done.set()

        for i in range(1, 201):
            c.publish_nowait(telemetry_topic(d.device_id), payload(i), cb, i)
        assert c.inflight > 0
        await asyncio.wait_for(done.wait(), 10)
        assert sorted(t for t, _ in results) == list(range(1, 201))
        assert all(e is None for _, e in results)
        assert c.inflight == 0
        # A message on the ack topic from another client (the gateway) reaches the callback.
        await asyncio.to_thread(lambda: gateway.client.publish(ack_topic(d.device_id), b"\x01ack", qos=1))
        await asyncio.wait_for(arrived.wait(), 5)
        assert got == [(ack_topic(d.device_id), b"\x01ack")]
        await c.disconnect()
        assert not c.is_connected
        assert await c.wait_closed() is None
        with pytest.raises(ConnectionLostError):
            c.publish_nowait(telemetry_topic(d.device_id), payload(999))

    asyncio.run(main())
    gateway.wait_quiet()
    seqs = sorted(orjson.loads(p)["seq"] for p in gateway.by_device().get(d.device_id, []))
    assert seqs == list(range(201))


@pytest.mark.servers
@pytest.mark.parametrize("fault", [FaultKind.EXPIRED_CERT, FaultKind.REVOKED_CERT])
def test_refused_certificate_raises(sim_pki: Pki, sim_broker: LocalMosquitto, fault: FaultKind) -> None:
    d = device(sim_pki, "litebad", fault)
    if fault is FaultKind.REVOKED_CERT:
        reload_broker(sim_broker)  # the new CRL names the certificate

    async def main() -> BaseException:
        c = LiteClient(d.device_id)
        with pytest.raises((MqttLiteError, OSError)) as info:
            await c.connect("127.0.0.1", sim_broker.device_port, ssl_context=context(sim_pki, d), timeout=5)
        assert not c.is_connected
        return info.value

    exc = asyncio.run(main())
    # The broker's TLS alert names the reason (the client waits for the session ticket before
    # CONNECT, so no RST overtakes the alert).
    text = str(exc).lower()
    assert ("expired" if fault is FaultKind.EXPIRED_CERT else "revoked") in text, text
    assert classify(exc) == ("tls_expired" if fault is FaultKind.EXPIRED_CERT else "tls_revoked")


@pytest.mark.servers
def test_connection_loss_fails_pending_publishes(sim_pki: Pki, sim_broker: LocalMosquitto) -> None:
    d = device(sim_pki, "litelost")

    async def main() -> None:
        c = LiteClient(d.device_id, keepalive=30)
        await c.connect("127.0.0.1", sim_broker.device_port, ssl_context=context(sim_pki, d))
        failures: list[BaseException | None] = []
        sim_broker.process.signal(signal.SIGSTOP)  # no PUBACK will come
        try:
            fut = c.publish(telemetry_topic(d.device_id), payload(1))
            c.publish_nowait(telemetry_topic(d.device_id), payload(2), lambda _t, e: failures.append(e))
            await asyncio.sleep(0.2)
            assert not fut.done()
            await asyncio.to_thread(sim_broker.kill)
        finally:
            sim_broker.process.signal(signal.SIGCONT)
        with pytest.raises(ConnectionLostError):
            await asyncio.wait_for(fut, 10)
        assert len(failures) == 1 and isinstance(failures[0], ConnectionLostError)
        assert isinstance(await c.wait_closed(), ConnectionLostError)
        assert not c.is_connected

    try:
        asyncio.run(main())
    finally:
        if not sim_broker.process.running:
            sim_broker.start()


# -- a fake broker, for what Mosquitto with mTLS will not do on demand ---------------------------------


async def fake_broker(connack: bytes, suback: bytes | None = None) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # CONNECT
        writer.write(connack)
        if suback is not None:
            data = await reader.read(1024)  # SUBSCRIBE: 0x82 len pid(2) ...
            writer.write(b"\x90\x03" + data[2:4] + suback)
        await writer.drain()
        await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_connack_refused_raises_with_its_code() -> None:
    async def main() -> None:
        server, port = await fake_broker(b"\x20\x02\x00\x05")
        async with server:
            c = LiteClient("dev-x")
            with pytest.raises(ConnectRefusedError) as info:
                await c.connect("127.0.0.1", port, timeout=5)
            assert info.value.code == 5
            assert "not authorized" in str(info.value)

    asyncio.run(main())


def test_subscribe_refused_raises() -> None:
    async def main() -> None:
        server, port = await fake_broker(b"\x20\x02\x00\x00", suback=b"\x80")
        async with server:
            c = LiteClient("dev-x")
            await c.connect("127.0.0.1", port, timeout=5)
            with pytest.raises(SubscribeRefusedError):
                await asyncio.wait_for(c.subscribe("devices/dev-x/ack", qos=1), 5)
            await c.disconnect()

    asyncio.run(main())


def test_connect_times_out_without_connack() -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        async with server:
            c = LiteClient("dev-x")
            with pytest.raises(MqttLiteError, match="timed out"):
                await c.connect("127.0.0.1", server.sockets[0].getsockname()[1], timeout=0.3)

    asyncio.run(main())
