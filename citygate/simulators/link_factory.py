"""Which :class:`~citygate.simulators.link.DeviceLink` adapter makes a device's connections."""

from __future__ import annotations

from typing import assert_never

from citygate.simulators.link import ClientKind, LinkFactory


def link_factory(kind: ClientKind) -> LinkFactory:
    """The factory of ``kind``'s links (the adapter class itself: ``factory(options)``).

    The adapter is imported here, on first use, so that a lite fleet never loads paho.
    """
    match kind:
        case "lite":
            from citygate.simulators.link_lite import LiteLink

            return LiteLink
        case "aiomqtt":
            from citygate.simulators.link_aiomqtt import AiomqttLink

            return AiomqttLink
        case _:
            assert_never(kind)
