"""The example cloud configuration loads (secrets come from the environment, as deployed)."""

from pathlib import Path

from citygate.cloud.settings import CloudSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "cloud.example.toml"


def test_cloud_example_loads_with_tokens_from_the_environment(monkeypatch):
    monkeypatch.setenv("CITYGATE_CLOUD_OPERATOR_TOKENS", '{"ops": "' + "x" * 32 + '"}')
    s = CloudSettings.load(EXAMPLE)
    assert s.client_cert_mode == "required" and s.influx_api == "v1"
    assert s.operator_tokens["ops"].get_secret_value() == "x" * 32
    assert "x" * 32 not in repr(s)  # secrets never printed
