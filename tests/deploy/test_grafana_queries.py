"""Every query of the Grafana dashboard runs on a real InfluxDB 1.x (macros filled in as Grafana would)."""

import json
import time
import uuid
from pathlib import Path

import pytest

from citygate.contract.profiles import ProfileRegistry

pytestmark = pytest.mark.servers
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "citygate.json"


def test_dashboard_queries_run_on_influxdb(influxdb):
    db = f"g_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    now = time.time_ns()
    lines = []
    for p in ProfileRegistry():
        fields = ",".join(
            f"{n}={'true' if f.type == 'bool' else ('1i' if f.type == 'int' else '1.0')}"
            for n, f in p.fields.items()
            if f.type != "string"
        )
        lines.append(f"{p.measurement},device_id=d1,district=centre,site=s1 {fields},seq=1i {now}")
    lines.append(
        "citygate_gateway_health,gateway_id=gw-1 outbox_depth=5i,oldest_unsent_age_s=1.5,"
        f"readings_in=10i,rss_bytes=1i,disk_free_bytes=1i,cert_days_left_reported=30.0,"
        f"dropped_max_age=1i {now}"
    )
    assert influxdb.write(db, "\n".join(lines).encode()) == 204
    doc = json.loads(DASHBOARD.read_text())
    answered = 0
    for panel in doc["panels"]:
        for t in panel["targets"]:
            q = t["query"].replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")
            res = influxdb.query(q, db=db)["results"][0]
            assert "error" not in res, (panel["title"], q, res)
            answered += bool(res.get("series"))
    assert answered == sum(len(p["targets"]) for p in doc["panels"])
