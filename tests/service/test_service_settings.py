"""[cloud.service] refuses what would fail later: no store, duplicate subscriptions, webhook
URLs that are not HTTPS to an allowed host; and a bad rule file stops the cloud at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from citygate.contract.inventory import Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.errors import ConfigError
from citygate.service.layer import ServiceLayer
from citygate.service.settings import ServiceSettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def settings(url: str, **kw: Any) -> ServiceSettings:
    return ServiceSettings(
        enabled=True,
        store_url="sqlite:///x.db",
        subscriptions=[{"name": "wo", "url": url, "secrets": [SECRET]}],  # type: ignore[list-item]
        **kw,
    )


def test_enabled_needs_a_store() -> None:
    with pytest.raises(ValidationError, match="store_url"):
        ServiceSettings(enabled=True)


@pytest.mark.parametrize(
    ("url", "kw", "why"),
    [
        ("http://wo.city.example/hook", {"webhook_allowlist": ["wo.city.example"]}, "only https"),
        (
            "https://evil.example/hook",
            {"webhook_allowlist": ["wo.city.example"]},
            "not in the webhook allowlist",
        ),
        ("https://u:p@wo.city.example/hook", {"webhook_allowlist": ["wo.city.example"]}, "user:password"),
        ("https://wo.city.example:8443/hook", {"webhook_allowlist": ["wo.city.example"]}, "port 8443"),
        ("http://127.0.0.1:9/hook", {}, "only https"),
    ],
)
def test_webhook_urls_are_refused_at_load(url: str, kw: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why) as e:
        settings(url, **kw)
    assert "subscription 'wo'" in str(e.value)


def test_allowed_urls_load() -> None:
    settings("https://wo.city.example/hook", webhook_allowlist=["wo.city.example"])
    settings("https://a.alerts.city.example/h", webhook_allowlist=["*.alerts.city.example"])
    settings("http://127.0.0.1:9/hook", webhook_allow_http_loopback=True)


def test_duplicate_subscription_names_are_refused() -> None:
    sub = {"name": "wo", "url": "https://wo.city.example/h", "secrets": [SECRET]}
    with pytest.raises(ValidationError, match="unique"):
        ServiceSettings(
            enabled=True,
            store_url="sqlite:///x",
            subscriptions=[sub, sub],
            webhook_allowlist=["wo.city.example"],
        )  # type: ignore[list-item]


def test_a_bad_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ValidationError) as e:
        ServiceSettings(
            enabled=True,
            store_url="sqlite:///x",
            subscriptions=[{"name": "wo", "url": "http://127.0.0.1:1/", "secrets": ["whsec_QUJDREVG"]}],  # type: ignore[list-item]
            webhook_allow_http_loopback=True,
        )
    assert "secret" in str(e.value) and "QUJDREVG" not in str(e.value)


def test_a_bad_rule_file_stops_the_service_at_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bins.v1.toml").write_text(
        'profile = "waste_bin"\nversion = 1\n[rules.full]\ntitle = "x"\nservice = "waste"\n'
        'severity = "warning"\nwhen = "fill_levle > 85"\n'
    )
    s = ServiceSettings(enabled=True, store_url=f"sqlite:///{tmp_path}/s.db", rules_dirs=[rules])
    with pytest.raises(ConfigError, match=r"bins\.v1\.toml.*'full'.*fill_levle"):
        ServiceLayer(s, ProfileRegistry(), lambda _d: None)


def test_check_config_names_a_bad_rule_file(tmp_path: Path) -> None:
    """`citygate cloud check-config` loads the rules: a typo stops it, not the first reading."""
    from citygate.cloud.settings import CloudSettings
    from citygate.cloud.state import CloudState

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bins.v1.toml").write_text(
        'profile = "waste_bin"\nversion = 1\n[rules.full]\ntitle = "x"\nservice = "waste"\n'
        'severity = "warning"\nwhen = "fill_level >> 85"\n'
    )
    for name in ("cert", "key", "ca", "crl"):
        (tmp_path / name).write_text("x")
    Inventory().save(tmp_path / "inventory.json")
    settings = CloudSettings(
        tls_cert=tmp_path / "cert",
        tls_key=tmp_path / "key",
        client_ca=tmp_path / "ca",
        client_crl=tmp_path / "crl",
        inventory=tmp_path / "inventory.json",
        service=ServiceSettings(enabled=True, store_url="sqlite:///x.db", rules_dirs=[rules]),
    )
    with pytest.raises(ConfigError, match=r"bins\.v1\.toml.*'full'"):
        CloudState(settings)
