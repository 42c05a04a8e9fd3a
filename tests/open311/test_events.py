"""A citizen case's transitions are CloudEvents like any other, sent by the existing dispatcher
(signed, to the subscriptions that want the service), and they carry no personal data."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from citygate.service.subscriptions import Subscription
from citygate.testing.webhook_receiver import WebhookReceiver
from tests.open311.conftest import CENTRE

pytestmark = pytest.mark.servers

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EMAIL = "ann.smith@example.org"


def test_a_report_is_delivered_as_case_events(open311_factory: Any) -> None:
    with WebhookReceiver() as receiver:
        sub = Subscription(
            name="roads-team", url=receiver.url + "/hook", secrets=(SECRET,), services=("roads",)
        )
        o = open311_factory(subscriptions=(sub,))
        person = {"email": EMAIL, "first_name": "Ann", "last_name": "Smith", "phone": "+49 30 98765"}
        (first,) = o.report(description="Deep", **person).json()
        (again,) = o.report(lat=f"{CENTRE[0] + 0.0001:.5f}", **person).json()  # 11 m away: joins it
        assert again["service_request_id"] == first["service_request_id"]
        got = receiver.wait_for(2, timeout=20)
        events = sorted((orjson.loads(r.body) for r in got), key=lambda e: e["sequence"])
        assert [e["type"] for e in events] == ["org.citygate.case.opened", "org.citygate.case.recurred"]
        for e, r in zip(events, got, strict=False):
            assert e["subject"] == f"cases/{first['service_request_id']}" and e["service"] == "roads"
            assert e["data"]["case"]["source"] == "citizen" and e["data"]["actor"] == "open311:fixmystreet"
            assert r.headers["webhook-signature"].startswith("v1,")
        for r in got:  # who reported is in no event, header or body
            raw = r.body + orjson.dumps(r.headers)
            for value in person.values():
                assert value.encode() not in raw
