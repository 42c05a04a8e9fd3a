"""The demo's service layer: the shipped rules on the simulated fleet, a local receiver
standing in for the city's systems, and the audit of the events it got."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from citygate.service.signing import WebhookSecret
from citygate.testing.webhook_receiver import WebhookReceiver

# Demo targets: short, so that escalation shows within minutes.
TARGETS = {
    service: {"acknowledge_s": 120.0, "resolve_s": 600.0}
    for service in ("waste", "flood", "noise", "environment", "field-ops", "traffic", "lighting", "fire")
}


@dataclass
class DemoService:
    directory: Path
    receiver: WebhookReceiver = field(default_factory=WebhookReceiver)
    secret: str = field(default_factory=lambda: WebhookSecret.generate().reveal())
    # Chaos runs: another store (PostgreSQL), the city's own rules, more subscriptions.
    store_url_override: str | None = None
    rules_dir: Path | None = None
    extra_subscriptions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def store_path(self) -> Path:
        return self.directory / "service.db"

    @property
    def store_url(self) -> str:
        return self.store_url_override or f"sqlite:///{self.store_path}"

    def start(self) -> None:
        self.receiver.start()

    def stop(self) -> None:
        self.receiver.stop()

    def settings(self) -> dict[str, Any]:
        """The cloud's [cloud.service] table."""
        extra: dict[str, Any] = {"rules_dirs": [str(self.rules_dir)]} if self.rules_dir else {}
        return extra | {
            "enabled": True,
            "store_url": self.store_url,
            "evaluate_every_s": 0.5,
            "escalate_every_s": 10.0,
            "webhook_allow_http_loopback": True,  # the receiver is on loopback, plain HTTP
            "targets": TARGETS,
            "subscriptions": [
                {"name": "city-systems", "url": f"{self.receiver.url}/events", "secrets": [self.secret]},
                *self.extra_subscriptions,
            ],
        }

    def latest(self, n: int = 4) -> list[str]:
        """The newest events the receiver got, one line each."""
        lines = []
        for r in self.receiver.requests[-n:]:
            try:
                doc = orjson.loads(r.body)
            except orjson.JSONDecodeError:
                continue
            case = doc.get("data", {}).get("case", {})
            lines.append(
                f"{doc.get('type', '?').removeprefix('org.citygate.')} #{case.get('id')} "
                f"{case.get('title', '')} [{case.get('subject', '')}, {case.get('district') or '-'}]"
            )
        return lines

    def audit(self) -> dict[str, int]:
        """Transitions the store made, events the receiver got: delivered, lost, and any
        transition that arrived under two different ids."""
        from sqlalchemy import select

        from citygate.service.db import make_engine
        from citygate.service.schema import events

        engine = make_engine(self.store_url)
        try:
            with engine.connect() as conn:
                made = {r.id: r.history_id for r in conn.execute(select(events.c.id, events.c.history_id))}
        finally:
            engine.dispose()
        got_ids: set[str] = set()
        ids_per_transition: dict[int, set[str]] = {}
        for r in self.receiver.requests:
            if not r.path.startswith("/events"):
                continue  # another subscription's, on the same receiver
            try:
                doc = orjson.loads(r.body)
            except orjson.JSONDecodeError:
                continue
            got_ids.add(str(doc.get("id")))
        for event_id in got_ids:
            if event_id in made:
                ids_per_transition.setdefault(made[event_id], set()).add(event_id)
        return {
            "transitions": len(made),
            "delivered": len(got_ids & made.keys()),
            "lost": len(made.keys() - got_ids),
            "twice_with_different_ids": sum(1 for ids in ids_per_transition.values() if len(ids) > 1),
            "requests": len(self.receiver.requests),
        }
