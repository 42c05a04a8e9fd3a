"""Cloud settings refuse what would weaken it: token tables from two sources merged, weak tokens,
credentials sent to InfluxDB in clear text over a network."""

from __future__ import annotations

import pytest

from citygate.cloud.settings import CloudSettings
from citygate.config import toml_section
from citygate.errors import ConfigError

GOOD_A = "reader-a-" + "k3Zp" * 6
GOOD_B = "reader-b-" + "Q9wx" * 6
BASE = {
    "tls_cert": "/x/cert.pem",
    "tls_key": "/x/key.pem",
    "client_ca": "/x/ca.pem",
    "client_crl": "/x/crl.pem",
    "inventory": "/x/inventory.json",
}


def _load(tmp_path, **values):
    path = tmp_path / "cloud.toml"
    path.write_text(toml_section("cloud", BASE | values))
    return CloudSettings.load(path)


def test_a_token_table_in_the_environment_replaces_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYGATE_CLOUD_READER_TOKENS", '{"b": "' + GOOD_B + '"}')
    s = _load(tmp_path, reader_tokens={"a": GOOD_A})
    assert set(s.reader_tokens) == {"b"}  # the file's "a" was rotated out, not merged back in


def test_without_the_environment_the_files_table_stands(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYGATE_CLOUD_READER_TOKENS", raising=False)
    assert set(_load(tmp_path, reader_tokens={"a": GOOD_A}).reader_tokens) == {"a"}


@pytest.mark.parametrize(
    "token", [" " * 30, "a" * 30, "abcdefghijkl mnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz\t"]
)
def test_weak_tokens_are_refused(tmp_path, token):
    with pytest.raises(ConfigError, match="whitespace or repeats one character"):
        _load(tmp_path, reader_tokens={"a": token})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://influx.city.example:8086", False),
        ("http://10.0.0.5:8086", False),
        ("http://127.0.0.1:8086", True),
        ("http://localhost:8086", True),
        ("http://[::1]:8086", True),
        ("https://influx.city.example:8086", True),
    ],
)
def test_credentials_go_to_influxdb_in_clear_only_on_loopback(tmp_path, url, ok):
    values = {"influx_url": url, "influx_user": "citygate", "influx_password": "secret-pw"}
    if ok:
        assert _load(tmp_path, **values).influx_url == url
    else:
        with pytest.raises(ConfigError, match="plain http"):
            _load(tmp_path, **values)


def test_plain_http_without_credentials_stays_allowed(tmp_path):
    assert _load(tmp_path, influx_url="http://influx.city.example:8086").influx_url.startswith("http://")
