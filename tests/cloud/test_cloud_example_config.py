"""The example cloud configuration loads (secrets come from the environment, as deployed)."""

from pathlib import Path

from citygate.cloud.settings import CloudSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "cloud.example.toml"


def test_cloud_example_loads_with_tokens_from_the_environment(monkeypatch):
    token = "op-" + "x7" * 16
    monkeypatch.setenv("CITYGATE_CLOUD_OPERATOR_TOKENS", '{"ops": "' + token + '"}')
    s = CloudSettings.load(EXAMPLE)
    assert s.client_cert_mode == "required" and s.influx_api == "v1"
    assert s.operator_tokens["ops"].get_secret_value() == token
    assert token not in repr(s)  # secrets never printed
