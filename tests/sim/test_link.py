"""The fleet over an injected DeviceLink: its logic with no client library and no broker."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import orjson

from citygate.certs.pki import CaName, Pki
from citygate.contract.acks import encode_acks
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.topics import ack_topic, status_topic
from citygate.simulators import provision
from citygate.simulators.faults import resolve
from citygate.simulators.fleet import Fleet, FleetSettings
from citygate.simulators.link import LinkOptions, Will
from citygate.simulators.link_aiomqtt import AiomqttLink
from citygate.simulators.link_factory import link_factory
from citygate.simulators.link_lite import LiteLink

REGISTRY = ProfileRegistry()


class AckingLink:
    """A broker and gateway in one: a PUBACK and then an ack for every reading sent."""

    def __init__(self, options: LinkOptions) -> None:
        self.options = options
        self.published: list[tuple[str, bytes, bool]] = []
        self.subscribed: list[str] = []
        self.sent = 0
        self._closed = asyncio.Event()

    @property
    def is_connected(self) -> bool:
        return not self._closed.is_set()

    async def connect(self, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        assert isinstance(ssl_context, ssl.SSLContext)

    async def subscribe(self, topic: str) -> None:
        self.subscribed.append(topic)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.published.append((topic, payload, retain))

    def send(self, topic: str, payload: bytes, token: Any) -> None:
        self.sent += 1
        loop = asyncio.get_running_loop()
        loop.call_soon(self.options.on_sent, token, None)
        for ack in encode_acks([orjson.loads(payload)["seq"]]):
            loop.call_soon(self.options.on_message, ack_topic(self.options.client_id), ack)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self._closed.set()


def test_the_fleet_runs_over_an_injected_link(sim_pki: Pki) -> None:
    records = provision.ensure_devices(sim_pki, "fake", 3, provision.parse_mix(None, REGISTRY), REGISTRY)
    devices = provision.build_fleet(sim_pki, records, REGISTRY, resolve([], [], seed=3), {})
    fs = FleetSettings(
        host="127.0.0.1",
        port=1,  # never dialled: the fake link connects to nothing
        ca=sim_pki.ca_cert_path(CaName.INFRA),
        interval_s=0.02,
        count=5,
        ramp_s=0.0,
        drain_s=2.0,
    )
    links: list[AckingLink] = []

    def factory(options: LinkOptions) -> AckingLink:
        links.append(AckingLink(options))
        return links[-1]

    stats = asyncio.run(Fleet(fs, devices, link_factory=factory).run())
    assert stats.produced == stats.confirmed == stats.pubacks == 3 * 5
    assert stats.acks_received == 3 * 5
    assert stats.held_at_end == 0
    assert stats.errors == {}
    assert sorted(link.options.client_id for link in links) == [r.device_id for r in records]
    for link in links:
        device_id = link.options.client_id
        assert link.options.will == Will(status_topic(device_id), b"offline")
        assert link.subscribed == [ack_topic(device_id)]
        assert link.published == [
            (status_topic(device_id), b"online", True),
            (status_topic(device_id), b"offline", True),
        ]
        assert link.sent == 5


def test_the_factory_of_each_client() -> None:
    assert link_factory("lite") is LiteLink
    assert link_factory("aiomqtt") is AiomqttLink
