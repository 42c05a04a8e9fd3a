"""Pure parts: body decoding limits, InfluxQL quoting, settings refusal, narrowing of refused writes."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from citygate.cloud import influxql
from citygate.cloud.ingest import BatchError, decode_body, parse_batch
from citygate.cloud.settings import CloudSettings
from citygate.cloud.sink import ErrorKind, Refused, write_narrowing
from citygate.errors import ConfigError


def test_decode_body_limits():
    assert decode_body(gzip.compress(b"{}"), "gzip", 1024) == b"{}"
    with pytest.raises(BatchError) as e:
        decode_body(gzip.compress(b"0" * 10_000_000), "gzip", 1_000_000)
    assert e.value.status == 413
    with pytest.raises(BatchError) as e:
        decode_body(gzip.compress(b"{}") + b"trailing", "gzip", 1024)
    assert e.value.status == 400
    with pytest.raises(BatchError) as e:
        decode_body(b"{}" * 1000, None, 100)
    assert e.value.status == 413


def test_parse_batch_shapes():
    assert parse_batch(b'{"batch_id":"a","readings":[]}', 10) == ("a", [])
    for bad in (b'"x"', b'{"batch_id":1,"readings":[]}', b'{"batch_id":"a"}', b'{"readings":[]}'):
        with pytest.raises(BatchError):
            parse_batch(bad, 10)


@given(st.text(max_size=30))
def test_quoting_round_trips(s):
    q = influxql.ident(s)
    assert q.startswith('"') and q.endswith('"')
    inner = q[1:-1]
    # every quote inside is escaped, so the identifier cannot end early
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            i += 2
            continue
        assert inner[i] != '"'
        i += 1
    lit = influxql.literal(s)[1:-1]
    i = 0
    while i < len(lit):
        if lit[i] == "\\":
            i += 2
            continue
        assert lit[i] != "'"
        i += 1


def test_select_series_text():
    q = influxql.select_series(
        "air_quality",
        ["pm2_5"],
        tag_filters={"device_id": "a'b"},
        start_ns=1,
        end_ns=2,
        aggregate=influxql.Aggregate.MEAN,
        interval_s=60,
        group_by_device=False,
        limit=10,
    )
    assert q == (
        'SELECT mean("pm2_5") AS "pm2_5" FROM "air_quality" WHERE "device_id" = \'a\\\'b\' '
        "AND time >= 1 AND time < 2 GROUP BY time(60s) fill(none) LIMIT 10"
    )


def _base(tmp_path, **kw):
    f = tmp_path / "x.pem"
    f.write_text("x")
    return {"tls_cert": f, "tls_key": f, "client_ca": f, "client_crl": f, "inventory": f, **kw}


def test_unsafe_settings_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="tls_cert"):
        CloudSettings.load(None)
    with pytest.raises(ValueError, match="shorter than"):
        CloudSettings(**_base(tmp_path, reader_tokens={"a": SecretStr("short")}))
    with pytest.raises(ValueError, match="needs influx_token"):
        CloudSettings(**_base(tmp_path, influx_api="v2"))
    s = CloudSettings(**_base(tmp_path))
    assert s.reader_tokens == {} and s.client_cert_mode == "required"
    monkeypatch.setenv("CITYGATE_CLOUD_INFLUX_PASSWORD", "pw-from-env")
    monkeypatch.setenv("CITYGATE_CLOUD_INFLUX_USER", "citygate")
    s = CloudSettings(**_base(tmp_path))
    assert s.influx_password is not None and "pw-from-env" not in repr(s)


def test_narrowing_isolates_bad_lines():
    bad = {3, 17}
    calls = []

    async def raw(body: bytes):
        lines = body.decode().split("\n")
        calls.append(len(lines))
        if any(int(x) in bad for x in lines):
            return Refused(ErrorKind.BAD_POINT, "field type conflict")
        return None

    report = asyncio.run(write_narrowing(raw, [str(i) for i in range(32)]))
    assert set(report.refused) == bad
    assert report.requests == len(calls) < 32


def test_cli_refuses_incomplete_config(tmp_path):
    from typer.testing import CliRunner

    from citygate.cli.cloud import app

    cfg = tmp_path / "cloud.toml"
    cfg.write_text("[cloud]\nport = 8443\n")
    result = CliRunner().invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "tls_cert" in result.output
