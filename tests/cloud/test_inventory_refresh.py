"""A device registered a moment ago is accepted at once, not refused until the next periodic reload."""

import pytest

from citygate.contract.inventory import DeviceRecord, Inventory
from tests.cloud.conftest import aq_values, batch_body, reading
from tests.conftest import GATEWAY_ID

pytestmark = pytest.mark.servers


def test_new_device_is_accepted_before_the_periodic_reload(cloud_factory, influxdb):
    influxdb.create_database("refresh")
    rc = cloud_factory(influx_url=influxdb.url, influx_db="refresh", inventory_reload_s=3600)
    gw = rc.gateway()
    r = gw.post(
        "/v1/ingest",
        content=batch_body([reading("dev-new", values=aq_values())]),
        headers={"Content-Encoding": "gzip"},
    )
    assert r.json()["rejected"][0]["reason"] == "unknown_device"  # not registered yet
    inv = Inventory.load(rc.settings.inventory)
    inv.with_devices(
        DeviceRecord(device_id="dev-new", profile="air_quality", profile_version=1, gateways=(GATEWAY_ID,))
    ).save(rc.settings.inventory)
    r = gw.post(
        "/v1/ingest",
        content=batch_body([reading("dev-new", values=aq_values())]),
        headers={"Content-Encoding": "gzip"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.json()
