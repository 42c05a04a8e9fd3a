"""The provisioned Grafana dashboard is generated from the profiles and kept in sync."""

import importlib.util
import json
from pathlib import Path

from citygate.contract.profiles import ProfileRegistry

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"


def _builder():
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_dashboard_is_up_to_date():
    assert (GRAFANA / "dashboards" / "citygate.json").read_text() == _builder().render()


def test_dashboard_queries_name_real_measurements_and_fields():
    doc = json.loads((GRAFANA / "dashboards" / "citygate.json").read_text())
    queries = [t["query"] for p in doc["panels"] for t in p["targets"]]
    reg = ProfileRegistry()
    for name in reg.names():
        p = reg.latest(name)
        assert any(f'"{p.measurement}"' in q or p.measurement in q for q in queries), name
    assert any("citygate_gateway_health" in q and "outbox_depth" in q for q in queries)
    assert all("$timeFilter" in q for q in queries)
