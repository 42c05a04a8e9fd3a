"""Ports for the servers the tests start: out of the way of outgoing connections, never twice.

A CI run lost a Mosquitto start to "Address already in use": the port the OS picked for it
came from the ephemeral range, and some client's outgoing connection took it before the
broker bound it. The error said only "exited with code 1", because Mosquitto writes its
own log to a file.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from citygate.errors import ServerStartError
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import _ephemeral_range, free_port
from tests.conftest import PkiBundle


def test_free_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(p < low or p > high for p in ports), sorted(ports)[-5:]


def test_a_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.servers
def test_a_broker_that_cannot_bind_says_why(test_pki: PkiBundle, tmp_path: Path) -> None:
    broker = LocalMosquitto(tmp_path / "mosquitto", test_pki.pki)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", broker.device_port))
        taken.listen()
        with pytest.raises(ServerStartError, match="Address already in use"):
            broker.start()
