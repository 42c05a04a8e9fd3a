"""The report path on PostgreSQL: a cloud whose store is a real PostgreSQL takes reports,
joins the one nearby, answers them as service requests and keeps the reporter apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from citygate.servers.postgres import LocalPostgres
from citygate.service.schema import citizen_reports, reporters
from tests.cloud.conftest import CloudPki
from tests.open311.conftest import CENTRE, start_open311_cloud

pytestmark = pytest.mark.servers


def test_reports_on_postgresql(cloud_pki: CloudPki, postgres: LocalPostgres, tmp_path: Path) -> None:
    o = start_open311_cloud(cloud_pki, tmp_path, store_url=postgres.create_database("open311_reports"))
    try:
        (first,) = o.report(description="Deep", email="ann@example.org").json()
        (again,) = o.report(lat=f"{CENTRE[0] + 0.0001:.5f}").json()
        (other,) = o.post(service_code="bin-full", address_string="Market square").json()
        assert again["service_request_id"] == first["service_request_id"] and "token" in other
        c = o.client()
        (req,) = c.get(
            f"/open311/v2/requests/{first['service_request_id']}.json", params={"extensions": "true"}
        ).json()
        assert req["extended_attributes"] == {"source": "citizen", "occurrences": 2, "severity": "warning"}
        assert [n["summary"] for n in req["notes"]] == ["Request opened", "Reported again"]
        listed = c.get("/open311/v2/requests.xml")
        assert listed.status_code == 200 and listed.text.count("<request>") == 2
        with o.store.engine.connect() as conn:
            assert len(conn.execute(select(citizen_reports)).all()) == 3
            (who,) = conn.execute(select(reporters)).mappings()
        assert who["email"] == "ann@example.org"
        assert o.store.prune_reporters(who["expires_ms"]) == 1
    finally:
        o.cloud.stop()
        o.store.engine.dispose()
