"""A real cloud with the service layer on (SQLite store), and cases seeded straight into its store.

The cloud migrates the store when it starts; the tests then open their own CaseStore on the
same file and record conditions as the rules would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from citygate.service.case_model import Condition
from citygate.service.cases import CaseStore
from citygate.service.db import make_engine, sqlite_url
from citygate.service.settings import ServiceSettings
from citygate.service.subscriptions import Subscription
from tests.cloud.conftest import RunningCloud

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def condition(
    subject: str = "bin-1",
    *,
    rule_id: str = "waste_bin.bin_full",
    service: str = "waste",
    district: str | None = "north",
    title: str = "Bin full",
    at_ns: int | None = None,
) -> Condition:
    return Condition(
        kind="opened",
        rule_id=rule_id,
        subject=subject,
        service=service,
        severity="warning",
        title=title,
        at_ns=at_ns if at_ns is not None else time.time_ns(),
        detail="fill_level 91 > 85",
        value=91.0,
        district=district,
        site="market square",
    )


def service_cloud(
    cloud_factory: Callable[..., RunningCloud],
    tmp_path: Path,
    subscriptions: Sequence[Subscription] = (),
    **overrides: Any,
) -> tuple[RunningCloud, CaseStore]:
    """The cloud with ``[cloud.service]`` on, and a CaseStore on its store (knowing the same
    subscriptions, so what it records is delivered like what the cloud records)."""
    url = sqlite_url(tmp_path / "service.db")
    service = ServiceSettings(
        enabled=True,
        store_url=url,
        subscriptions=list(subscriptions),
        webhook_allow_http_loopback=True,
    )
    cloud = cloud_factory(service=service, **overrides)
    return cloud, CaseStore(make_engine(url), subscriptions)


def seed(store: CaseStore, *conditions: Condition) -> list[int]:
    """Record the conditions; the ids of the cases they opened."""
    ids = []
    for c in conditions:
        t = store.record(c)
        assert t is not None and t.action == "opened", t
        ids.append(t.case_id)
    return ids
