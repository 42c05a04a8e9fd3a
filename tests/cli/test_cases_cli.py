"""``citygate cases list|show|act`` against a real cloud with the service layer on.

The commands run as a separate process, as an operator runs them: the token comes from
CITYGATE_OPERATOR_TOKEN only, the cloud's CA and a client certificate from options.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cloud.conftest import OPERATOR_TOKEN, READER_TOKEN, RunningCloud
from tests.cloud.service_cloud import condition, seed, service_cloud

pytestmark = pytest.mark.servers

RUN = "from citygate.cli.cases import app; app(prog_name='citygate cases')"


def _cases(
    cloud: RunningCloud | None, *args: str, token: str | None = OPERATOR_TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYGATE_")}
    env["COLUMNS"] = "400"  # one line per row: nothing folded
    if token is not None:
        env["CITYGATE_OPERATOR_TOKEN"] = token
    conn: list[str] = []
    if cloud is not None:
        gw = cloud.cloud_pki.gateway()  # the cloud requires a client certificate (client_cert_mode)
        conn = [
            "--url",
            cloud.url,
            "--ca",
            str(cloud.cloud_pki.infra_ca),
            "--cert",
            str(gw.cert),
            "--key",
            str(gw.key),
        ]
    return subprocess.run(
        [sys.executable, "-c", RUN, *args, *conn],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cloud_and_store(cloud_factory: Any, tmp_path: Path) -> Any:
    return service_cloud(cloud_factory, tmp_path)


def test_list_show_and_act(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    a, b = seed(
        store,
        condition("bin-1"),
        condition(
            "gauge-1", rule_id="water_level.high", service="flood", district="south", title="River high"
        ),
    )
    r = _cases(cloud, "list")
    assert r.returncode == 0, r.stderr
    assert "Bin full" in r.stdout and "River high" in r.stdout and "open: 2 new" in r.stdout
    r = _cases(cloud, "list", "--service", "flood")
    assert r.returncode == 0, r.stderr
    assert "River high" in r.stdout and "Bin full" not in r.stdout
    r = _cases(cloud, "list", "--json", "--district", "north")
    assert [c["id"] for c in orjson.loads(r.stdout)["cases"]] == [a]

    r = _cases(cloud, "act", str(a), "acknowledge", "--note", "crew on the way")
    assert r.returncode == 0, r.stderr
    assert f"case {a}: acknowledged (new -> acknowledged)" in r.stdout
    r = _cases(cloud, "act", str(a), "assign", "--assignee", "crew-7")
    assert r.returncode == 0, r.stderr
    # The actor is the operator token's name ("ops"), as the cloud knows it.
    assert [(h["actor"], h["action"]) for h in store.history(a)] == [
        ("rules", "opened"),
        ("ops", "acknowledged"),
        ("ops", "assigned"),
    ]

    r = _cases(cloud, "show", str(a))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any("status" in ln and "assigned" in ln for ln in lines), r.stdout
    assert any("assignee" in ln and "crew-7" in ln for ln in lines), r.stdout
    assert any("ops" in ln and "acknowledged" in ln and "crew on the way" in ln for ln in lines), r.stdout
    assert any("rules" in ln and "opened" in ln for ln in lines), r.stdout
    doc = orjson.loads(_cases(cloud, "show", str(b), "--json").stdout)
    assert doc["case"]["title"] == "River high" and [h["action"] for h in doc["history"]] == ["opened"]

    r = _cases(cloud, "list", "--status", "assigned")
    assert r.returncode == 0 and "Bin full" in r.stdout and "River high" not in r.stdout, r.stdout


def test_refusals_exit_non_zero_with_the_apis_reason(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    (a,) = seed(store, condition())
    r = _cases(cloud, "act", str(a), "reopen")
    assert r.returncode == 1, r
    assert "HTTP 409 action_not_allowed" in r.stderr and "cannot reopen" in r.stderr
    r = _cases(cloud, "show", "999")
    assert r.returncode == 1 and "HTTP 404 no_such_case: no case 999" in r.stderr, r
    r = _cases(cloud, "act", str(a), "assign")
    assert r.returncode == 1 and "HTTP 422" in r.stderr and "assign needs an assignee" in r.stderr, r
    r = _cases(cloud, "act", str(a), "dance")
    assert r.returncode == 2 and "unknown action 'dance'" in r.stderr, r
    r = _cases(cloud, "list", token=READER_TOKEN)
    assert r.returncode == 1 and "HTTP 403 not_operator" in r.stderr, r
    assert [h["action"] for h in store.history(a)] == ["opened"]


def test_the_token_comes_from_the_environment_only(cloud_and_store: Any) -> None:
    cloud, _ = cloud_and_store
    r = _cases(cloud, "list", token=None)
    assert r.returncode == 2 and "set CITYGATE_OPERATOR_TOKEN" in r.stderr, r
    r = _cases(cloud, "list", "--token", OPERATOR_TOKEN)
    assert r.returncode == 2 and "No such option" in r.stderr, r
    r = _cases(None, "list", "--url", cloud.url.replace("https://", "http://"))
    assert r.returncode == 2 and "expected https://" in r.stderr, r


def test_case_text_reaches_the_terminal_plainly(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    (a,) = seed(store, condition(title="Bin [bold]full[/] \x1b[2J"))
    store.act(a, "note", "someone", note="look \x1b]0;owned\x07 here")
    for args in (("list",), ("show", str(a))):
        r = _cases(cloud, *args)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout, repr(r.stdout)
        assert r"Bin [bold]full[/] \x1b[2J" in r.stdout
    assert r"look \x1b]0;owned\x07 here" in _cases(cloud, "show", str(a)).stdout
