"""The service layer's settings: ``[cloud.service]`` in the cloud's configuration file.

Off by default: a cloud without it is an ingestion service only. On, it needs a store
(``store_url``: a SQLite file for the demo and small cities, PostgreSQL in production).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citygate.service.delivery import UrlPolicy, UrlRefusedError
from citygate.service.subscriptions import Subscription


class ServiceTarget(BaseModel):
    """How fast a service must act: past these, its open cases escalate."""

    model_config = ConfigDict(extra="forbid")

    acknowledge_s: float = Field(default=3600.0, gt=0)
    resolve_s: float = Field(default=86_400.0, gt=0)


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = False
    # Where the evaluator, the dispatcher and escalation run: in each cloud replica's
    # process ("in_process", the default: nothing more to run), or in their own process
    # (`citygate service run`, "separate"): the evaluator then has its own core and
    # interpreter lock, and ingest at high rates does not share them (bench/RESULTS.md).
    runner: Literal["in_process", "separate"] = "in_process"
    # sqlite:////var/lib/citygate/service.db, or postgresql+psycopg://user@host/db (the
    # password from PGPASSWORD or ~/.pgpass, never in this file).
    store_url: str | None = None
    # The city's own rule files, read after (and overriding) the shipped ones in citygate/rules/.
    rules_dirs: list[Path] = Field(default_factory=list)
    shipped_rules: bool = True
    timezone: str = "UTC"  # of rules' active_hours
    # A reading more than this behind the newest one seen is evaluated but marked late.
    lateness_s: float = Field(default=300.0, ge=0)
    evaluate_every_s: float = Field(default=0.5, gt=0, le=60)
    # Ingest before the rules. With the workers in the cloud's process, while ingest is at
    # ingest_full_load the evaluator takes at most this share of the time (it shares the
    # interpreter lock with ingest) and catches up when the burst is over: the feed is its
    # buffer, its depth the lag. In `citygate service run`, the workers' niceness does the
    # same for the CPU (the cloud and InfluxDB on the same machine win under load).
    evaluator_share_busy: float = Field(default=0.05, gt=0, le=1)
    # Ingest counts as busy until this long after its last request ended: the gaps between
    # a gateway's batches are not quiet (citygate/cloud/ingest_activity.py).
    ingest_quiet_s: float = Field(default=1.0, ge=0, le=60)
    # While ingest is busy, the evaluator's share of the time falls from all of it to
    # evaluator_share_busy as ingest's requests use from none to this much CPU per second
    # (averaged over a second): an evaluator held to its minimum whenever ingest was busy fell
    # behind a steady 5,000 readings/s (citygate/cloud/ingest_activity.py).
    ingest_full_load: float = Field(default=0.25, ge=0, le=4)
    worker_nice: int = Field(default=10, ge=0, le=19)
    # In `citygate service run`, the evaluator's share of the time falls the same way as the
    # other processes' use of the machine's CPUs rises: from all of it at none to
    # evaluator_share_busy at this share of all the cores (niceness alone does not keep it out
    # of ingest's way: citygate/service/machine_load.py).
    machine_full_load: float = Field(default=0.75, gt=0, le=1)
    # The evaluator's state (its windows: megabytes for thousands of devices) is saved, and the
    # batches it evaluated deleted, this often; a crash re-evaluates at most this much (its
    # case effects are not repeated: re-recording a change is a no-op).
    checkpoint_every_s: float = Field(default=5.0, gt=0, le=600)
    # While readings keep arriving, the checkpoint (a write the size of the state, which
    # competes with ingest for the store and the disk) waits, up to this long.
    checkpoint_max_s: float = Field(default=60.0, gt=0, le=3600)
    # Feed bound: past this many waiting batches, new batches are not evaluated (counted,
    # and an operator case says so); ingest itself never waits on the rules.
    feed_max_batches: int = Field(default=100_000, ge=100)
    escalate_every_s: float = Field(default=30.0, gt=0)
    targets: dict[str, ServiceTarget] = Field(default_factory=dict)
    subscriptions: list[Subscription] = Field(default_factory=list)
    # Receivers' hosts (exact, or *.suffix; host:port for another port than 443).
    webhook_allowlist: list[str] = Field(default_factory=list)
    webhook_allow_http_loopback: bool = False  # tests and the demo only
    event_source: str = "/citygate"
    # Retention (the store stays bounded): delivery attempts, and events whose deliveries are
    # all finished (replay reaches back this far). Cases and their history are kept.
    attempts_retention_s: float = Field(default=30 * 86_400.0, gt=0)
    events_retention_s: float = Field(default=90 * 86_400.0, gt=0)

    @model_validator(mode="after")
    def _store_when_enabled(self) -> ServiceSettings:
        if self.enabled and not self.store_url:
            raise ValueError(
                "[cloud.service] enabled needs store_url (sqlite:///path or postgresql+psycopg://...)"
            )
        names = [s.name for s in self.subscriptions]
        if len(names) != len(set(names)):
            raise ValueError("[cloud.service] subscriptions: names must be unique")
        policy = self.url_policy()
        for sub in self.subscriptions:  # refused at load, not at the first delivery
            try:
                policy.check(sub.url)
            except UrlRefusedError as e:
                raise ValueError(f"[cloud.service] subscription {sub.name!r}: {e}") from None
        return self

    def url_policy(self) -> UrlPolicy:
        return UrlPolicy(
            allowed_hosts=tuple(self.webhook_allowlist), allow_http_loopback=self.webhook_allow_http_loopback
        )
