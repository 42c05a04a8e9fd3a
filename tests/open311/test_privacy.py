"""Personal data: stored apart from the case, never in a public answer (any resource, either
format), never in a log line, and gone once its retention has passed."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from sqlalchemy import select

from citygate.certs.pki import CaName
from citygate.servers.process import free_port
from citygate.service.db import sqlite_url
from citygate.service.schema import citizen_reports, reporters
from tests.cloud.conftest import CloudPki, write_inventory
from tests.open311.conftest import API_KEY, CENTRE, Open311Cloud
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

PERSON = {
    "email": "ann.smith@example.org",
    "first_name": "Annemarie",
    "last_name": "Smithfield",
    "phone": "+49 30 9876543",
    "device_id": "device-5f0c2a9e",
    "account_id": "account-77d1e3",
}
V2 = "/open311/v2"


def test_personal_data_is_stored_apart_and_never_answered(o311: Open311Cloud) -> None:
    (answer,) = o311.report(description="Deep", **PERSON).json()
    case_id = answer["service_request_id"]
    with o311.store.engine.connect() as conn:
        (who,) = conn.execute(select(reporters)).mappings()
        (rep,) = conn.execute(select(citizen_reports)).mappings()
    assert (
        who["report_id"] == rep["id"] and who["email"] == PERSON["email"] and who["phone"] == PERSON["phone"]
    )
    c = o311.client()
    bodies = [str(answer)]
    for fmt in ("json", "xml"):
        for path, params in (
            (f"requests.{fmt}", {}),
            (f"requests.{fmt}", {"extensions": "true"}),
            (f"requests/{case_id}.{fmt}", {"extensions": "true"}),
            (f"servicerequestupdates.{fmt}", {}),
            (f"tokens/{rep['token']}.{fmt}", {}),
        ):
            r = c.get(f"{V2}/{path}", params=params)
            assert r.status_code == 200, r.text
            bodies.append(r.text)
    detail = o311.cloud.operator().get(f"/v1/cases/{case_id}")  # not even to operators
    bodies.append(detail.text)
    assert case_id in bodies[1]
    for body in bodies:
        for value in PERSON.values():
            assert value not in body


def test_personal_data_is_deleted_after_its_retention(open311_factory: Any) -> None:
    o = open311_factory(service={"escalate_every_s": 0.2}, personal_data_retention_s=0.5)
    (answer,) = o.report(**PERSON).json()
    layer = o.cloud.app.state.cloud.service

    def gone() -> bool:
        with o.store.engine.connect() as conn:
            return conn.execute(select(reporters)).first() is None and layer.stats.reporters_pruned >= 1

    wait_until(gone, timeout=20, message="the reporter's details deleted by the escalation pass")
    with o.store.engine.connect() as conn:
        (rep,) = conn.execute(select(citizen_reports)).mappings()  # the report itself stays
    assert rep["case_id"] == int(answer["service_request_id"])
    r = o.client().get(f"{V2}/requests/{answer['service_request_id']}.json")
    assert r.status_code == 200


def test_no_log_line_carries_personal_data(cloud_pki: CloudPki, tmp_path: Path) -> None:
    """The real `citygate cloud run`, its logging as deployed (JSON on stderr), at debug level."""
    port = free_port()
    config = {
        "cloud": {
            "host": "127.0.0.1",
            "port": port,
            "tls_cert": str(cloud_pki.server.cert),
            "tls_key": str(cloud_pki.server.key),
            "client_ca": str(cloud_pki.infra_ca),
            "client_crl": str(cloud_pki.bundle.pki.crl_path(CaName.INFRA)),
            "inventory": str(write_inventory(tmp_path / "inventory.json")),
            "client_cert_mode": "optional",
            "log_level": "debug",
            "service": {"enabled": True, "store_url": sqlite_url(tmp_path / "service.db")},
            "open311": {
                "enabled": True,
                "api_keys": {"fixmystreet": API_KEY},
                "services": [{"code": "pothole", "name": "Pothole", "feeds": "roads"}],
            },
        }
    }
    (tmp_path / "cloud.toml").write_text(tomli_w.dumps(config))
    log = (tmp_path / "cloud.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYGATE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "citygate", "cloud", "run", "--config", str(tmp_path / "cloud.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        c = httpx.Client(
            base_url=f"https://localhost:{port}",
            verify=ssl.create_default_context(cafile=str(cloud_pki.infra_ca)),
            timeout=10,
            trust_env=False,
        )

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "cloud.log").read_text()[-2000:]
            try:
                return c.get(f"{V2}/services.json").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=30, interval=0.1, message="the cloud answering")
        good = {"api_key": API_KEY, "service_code": "pothole", "lat": str(CENTRE[0]), "long": str(CENTRE[1])}
        assert (
            c.post(f"{V2}/requests.json", data={**good, **PERSON, "description": "Deep"}).status_code == 200
        )
        refused = c.post(f"{V2}/requests.json", data={**good, **PERSON, "email": "not an e-mail"})
        assert refused.status_code == 400
        assert c.get(f"{V2}/requests.json").status_code == 200
        c.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        log.close()
    text = (tmp_path / "cloud.log").read_text()
    assert '"event": "open311_report"' in text and '"client": "fixmystreet"' in text  # the log was captured
    for value in (*PERSON.values(), "not an e-mail", API_KEY):
        assert value not in text
