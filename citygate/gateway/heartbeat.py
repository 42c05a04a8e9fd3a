"""The heartbeat worker: the gateway's health snapshot to the cloud every interval.

The first heartbeat goes at once, so the fleet view learns of a (re)started gateway
right away. The cloud's answer carries its ``contract_version``; it is passed on (to
the forwarder, which retries held readings when it changes).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Protocol

import structlog

from citygate.contract.wire import GatewayHealth
from citygate.gateway.cloud_client import PostOutcome
from citygate.gateway.worker import Worker

log = structlog.get_logger("citygate.gateway.agent")


class HeartbeatPoster(Protocol):
    """What the heartbeat needs from the cloud client."""

    def post_heartbeat(self, gateway_id: str, health: GatewayHealth) -> PostOutcome: ...


class Heartbeat(Worker):
    def __init__(
        self,
        *,
        gateway_id: str,
        client: HeartbeatPoster,
        snapshot: Callable[[], GatewayHealth],
        interval_s: float,
        request_timeout_s: float,
        on_contract_version: Callable[[str | None], None] = lambda v: None,
    ) -> None:
        super().__init__("citygate-heartbeat")
        self.gateway_id = gateway_id
        self.client = client
        self.snapshot = snapshot
        self.interval_s = interval_s
        self.request_timeout_s = request_timeout_s
        self.on_contract_version = on_contract_version
        self.heartbeats_ok = 0

    def _loop(self) -> None:
        interval = self.interval_s
        while True:
            self.progress.within(4 * self.request_timeout_s)
            try:
                snapshot = self.snapshot()
            except (sqlite3.Error, OSError, ValueError) as e:  # pydantic's ValidationError too
                # Not this thread's end: the fleet view would take the gateway for dead.
                log.error("could not build the heartbeat; trying again next interval", error=str(e))
            else:
                outcome = self.client.post_heartbeat(self.gateway_id, snapshot)
                if outcome.ok:
                    self.heartbeats_ok += 1
                    self.on_contract_version(outcome.contract_version)
                else:
                    log.warning("heartbeat failed", status=outcome.status, error=outcome.error)
            self.progress.within(interval)
            if self._stop.wait(interval):
                return
