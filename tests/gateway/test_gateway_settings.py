"""Gateway configuration: the example file loads; bad keys and unsafe values are named."""

from pathlib import Path

import pytest

from citygate.errors import ConfigError
from citygate.gateway.outbox import OverflowPolicy
from citygate.gateway.settings import GatewaySettings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "gateway.example.toml"


def test_example_config_loads():
    s = GatewaySettings.load(EXAMPLE)
    assert s.broker_port == 8884 and s.overflow_policy is OverflowPolicy.DROP_OLDEST
    assert s.outbox_path == Path("/var/lib/citygate/outbox.db")


def test_environment_overrides_file(monkeypatch):
    monkeypatch.setenv("CITYGATE_GATEWAY_OVERFLOW_POLICY", "refuse_new")
    assert GatewaySettings.load(EXAMPLE).overflow_policy is OverflowPolicy.REFUSE_NEW


def test_bad_values_name_the_key(tmp_path):
    bad = tmp_path / "g.toml"
    bad.write_text(EXAMPLE.read_text().replace('overflow_policy = "drop_oldest"', 'overflow_policy = "yolo"'))
    with pytest.raises(ConfigError, match="overflow_policy"):
        GatewaySettings.load(bad)
    bad.write_text(EXAMPLE.read_text().replace("https://ingest", "http://ingest"))
    with pytest.raises(ConfigError, match="https"):
        GatewaySettings.load(bad)
    bad.write_text(EXAMPLE.read_text() + "brokr_port = 1\n")
    with pytest.raises(ConfigError, match="brokr_port"):
        GatewaySettings.load(bad)
