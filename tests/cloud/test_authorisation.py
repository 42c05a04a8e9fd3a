"""Authorisation, not only authentication: a gateway reports only the devices assigned to it, only
registered gateways ingest, revocation reaches the inventory, and a certificate's identity must be
exactly one clear id. Real uvicorn with mTLS, real InfluxDB, certificates from the project's PKI."""

from __future__ import annotations

import uuid

import pytest

from citygate.certs.pki import CertKind
from citygate.chaos.forge import unclear_identity_certificates
from citygate.contract.inventory import DeviceRecord, GatewayRecord, Inventory
from tests.cloud.conftest import OTHER_GATEWAY, aq_values, post_batch, reading, unique_ts_ns
from tests.conftest import GATEWAY_ID

pytestmark = pytest.mark.servers


def _pm25(influxdb, db: str, device: str) -> list[float]:
    doc = influxdb.query(f'SELECT "pm2_5" FROM "air_quality" WHERE "device_id" = \'{device}\'', db=db)
    series = doc["results"][0].get("series") or []
    return [row[1] for s in series for row in s["values"]]


def _db(influxdb) -> str:
    db = f"authz_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    return db


def test_a_gateway_cannot_write_or_overwrite_another_gateways_device(cloud_factory, influxdb, tmp_path):
    db = _db(influxdb)
    rc = cloud_factory(influx_url=influxdb.url, influx_db=db)
    inv = Inventory.load(rc.settings.inventory)
    b_device = DeviceRecord(
        device_id="dev-of-b", profile="air_quality", profile_version=1, gateways=(OTHER_GATEWAY,)
    )
    inv.with_devices(b_device).save(rc.settings.inventory)
    rc.app.state.cloud.inventory.refresh()
    ts = unique_ts_ns()
    assert (
        post_batch(rc.gateway(), [reading("dev-a", ts_ns=ts, values=aq_values(10.0))]).json()["accepted"] == 1
    )
    # Gateway B forges dev-a (gateway A's) at the same timestamp, beside a reading of its own device.
    forged = reading("dev-a", ts_ns=ts, values=aq_values(999.0))
    answer = post_batch(rc.gateway(OTHER_GATEWAY), [forged, reading("dev-of-b")]).json()
    assert answer["accepted"] == 1  # the rest of the batch flows on
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(0, "not_assigned")]
    assert _pm25(influxdb, db, "dev-a") == [aq_values(10.0)["pm2_5"]]  # not replaced by the forged value
    assert len(_pm25(influxdb, db, "dev-of-b")) == 1
    metrics = rc.operator().get("/metrics").text
    assert 'citygate_cloud_readings_rejected_total{reason="not_assigned"} 1.0' in metrics


def test_a_device_moved_between_gateways_is_taken_from_its_new_gateway_only(
    cloud_factory, influxdb, test_pki
):
    rc = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb))
    inventory = rc.settings.inventory
    Inventory.load(inventory).assigned("dev-b", (GATEWAY_ID, OTHER_GATEWAY)).save(inventory)  # a planned move
    rc.app.state.cloud.inventory.refresh()
    assert post_batch(rc.gateway(OTHER_GATEWAY), [reading("dev-b")]).json()["accepted"] == 1
    assert post_batch(rc.gateway(), [reading("dev-b")]).json()["accepted"] == 1
    Inventory.load(inventory).assigned("dev-b", (OTHER_GATEWAY,)).save(inventory)
    rc.app.state.cloud.inventory.refresh()
    assert post_batch(rc.gateway(), [reading("dev-b")]).json()["rejected"][0]["reason"] == "not_assigned"


def test_a_gateway_the_cloud_has_not_registered_cannot_ingest_or_heartbeat(cloud_factory, influxdb, test_pki):
    pki = test_pki.pki
    name = "gw-spare"
    if (CertKind.GATEWAY, name) not in {(c.kind, c.name) for c in pki.certificates()}:
        pki.issue_gateway(name)  # a valid certificate of the city's CA, never registered at this cloud
    rc = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb))
    spare = rc.gateway(name)
    old = unique_ts_ns() - 29 * 86400 * 10**9
    resp = post_batch(spare, [reading("dev-a", ts_ns=old)])
    assert resp.status_code == 403 and resp.json()["error"] == "gateway_not_registered"
    resp = spare.post(f"/v1/gateways/{name}/heartbeat", json={})
    assert resp.status_code == 403 and resp.json()["error"] == "gateway_not_registered"
    # Registered: in it comes, without a restart.
    inventory = rc.settings.inventory
    Inventory.load(inventory).with_gateways(GatewayRecord(gateway_id=name)).save(inventory)
    assert post_batch(spare, [reading("dev-a")]).status_code == 200


def test_revoking_a_device_or_a_gateway_takes_it_out_of_the_inventory(cloud_factory, influxdb, test_pki):
    pki = test_pki.pki
    pki.issue_gateway("gw-to-revoke")
    pki.issue_device(
        DeviceRecord(
            device_id="dev-to-revoke", profile="air_quality", profile_version=1, gateways=(GATEWAY_ID,)
        )
    )
    rc = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb), inventory=pki.inventory_path)
    assert post_batch(rc.gateway(), [reading("dev-to-revoke")]).json()["accepted"] == 1
    pki.revoke("dev-to-revoke", kind=CertKind.DEVICE)
    assert "dev-to-revoke" not in Inventory.load(pki.inventory_path)
    rc.app.state.cloud.inventory.refresh()  # what its periodic reload does within inventory_reload_s
    answer = post_batch(rc.gateway(), [reading("dev-to-revoke")]).json()
    assert answer["rejected"][0]["reason"] == "unknown_device"
    pki.revoke("gw-to-revoke", kind=CertKind.GATEWAY)
    assert "gw-to-revoke" not in Inventory.load(pki.inventory_path).gateways
    audit = (pki.settings.dir / "audit.log").read_text()
    assert '"action":"revoke"' in audit and "dev-to-revoke" in audit and "gw-to-revoke" in audit


def test_certificates_with_an_unclear_identity_are_refused(cloud_factory, influxdb, test_pki, tmp_path):
    rc = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb))
    certs = unclear_identity_certificates(test_pki.pki, tmp_path, GATEWAY_ID, OTHER_GATEWAY)
    assert len(certs) == 4
    for label, files in certs.items():
        resp = post_batch(rc.client(files), [reading()])
        assert resp.status_code == 403, (label, resp.text)
        assert resp.json()["error"] == "bad_identity", (label, resp.text)
