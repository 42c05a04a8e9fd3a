"""One delivery attempt against the test receiver over real HTTPS on loopback, and the URL policy.

Every delivered request is judged from outside: the CloudEvents SDK parses it and the
standardwebhooks package verifies its signature.
"""

from __future__ import annotations

import email.utils
import re
import ssl
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from cloudevents.http import from_http
from standardwebhooks.webhooks import Webhook

from citygate.certs.pki import CertKind
from citygate.servers.process import free_port
from citygate.service.cloudevent import CaseEvent
from citygate.service.delivery import MAX_RESPONSE_BYTES, USER_AGENT, UrlPolicy, UrlRefusedError, deliver
from citygate.service.signing import WebhookSecret
from citygate.testing.webhook_receiver import WebhookReceiver
from tests.conftest import PkiBundle

SECRET = WebhookSecret.generate()
OLD_SECRET = WebhookSecret.generate()


def make_event() -> CaseEvent:
    return CaseEvent(
        id=str(uuid.uuid4()),
        type="city.citygate.case.opened",
        source="/citygate/cases",
        subject="case-0042",
        time=datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC),
        data={"case_id": "case-0042", "state": "open", "district": "centre"},
        extensions={"service": "airquality", "district": "centre"},
    )


@pytest.fixture
def receiver(test_pki: PkiBundle) -> Iterator[WebhookReceiver]:
    files = test_pki.pki.files(CertKind.SERVER, "localhost")
    with WebhookReceiver(cert=files.cert, key=files.key) as r:
        yield r


@pytest.fixture
def other_receiver(test_pki: PkiBundle) -> Iterator[WebhookReceiver]:
    files = test_pki.pki.files(CertKind.SERVER, "localhost")
    with WebhookReceiver(cert=files.cert, key=files.key) as r:
        yield r


@pytest.fixture
def client(test_pki: PkiBundle) -> Iterator[httpx.Client]:
    ctx = ssl.create_default_context(cafile=str(test_pki.infra_ca))
    # follow_redirects=True on the client: deliver() must override it per request.
    with httpx.Client(verify=ctx, follow_redirects=True) as c:
        yield c


def send(client: httpx.Client, url: str, *, mode: str = "structured", timeout_s: float = 5.0, **kw: object):
    ev = make_event()
    out = deliver(client, url, ev, mode, [SECRET], timeout_s=timeout_s, now=int(time.time()), **kw)  # type: ignore[arg-type]
    return ev, out


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_delivered_and_judged_from_outside(
    client: httpx.Client, receiver: WebhookReceiver, mode: str
) -> None:
    ev = make_event()
    now = int(time.time())
    out = deliver(client, receiver.url + "/hooks/city", ev, mode, [SECRET], timeout_s=5, now=now)  # type: ignore[arg-type]
    assert (out.status, out.http_status, out.permanent_suspect) == ("delivered", 204, False)
    assert out.detail == "HTTP 204" and 0 < out.elapsed_s < 5
    [req] = receiver.wait_for(1)
    assert req.method == "POST" and req.path == "/hooks/city"
    # The Standard Webhooks judge: signature, id and timestamp.
    Webhook(SECRET.reveal()).verify(req.body, req.headers)
    assert req.headers["webhook-id"] == ev.id
    assert req.headers["webhook-timestamp"] == str(now)
    # The CloudEvents judge.
    parsed = from_http(req.headers, req.body)
    assert parsed["id"] == ev.id and parsed["type"] == ev.type and parsed["source"] == ev.source
    assert parsed["subject"] == ev.subject and parsed["time"] == "2024-05-01T10:00:00.123000Z"
    assert parsed["service"] == "airquality" and parsed["district"] == "centre"
    assert parsed.data == ev.data
    assert req.headers["user-agent"] == USER_AGENT
    assert re.fullmatch(r"citygate-webhooks/(\d+\.\d+\.\d+.*|dev)", USER_AGENT)


def test_during_a_rotation_either_secret_verifies_what_was_sent(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    out = deliver(
        client, receiver.url, make_event(), "binary", [SECRET, OLD_SECRET], timeout_s=5, now=int(time.time())
    )
    assert out.status == "delivered"
    [req] = receiver.wait_for(1)
    Webhook(SECRET.reveal()).verify(req.body, req.headers)
    Webhook(OLD_SECRET.reveal()).verify(req.body, req.headers)


def test_410_means_gone(client: httpx.Client, receiver: WebhookReceiver) -> None:
    receiver.set_mode("gone")
    _, out = send(client, receiver.url)
    assert (out.status, out.http_status) == ("gone", 410)
    assert "subscription removed" in out.detail


def test_429_with_retry_after_in_seconds(client: httpx.Client, receiver: WebhookReceiver) -> None:
    receiver.set_mode("throttle", retry_after="120")
    _, out = send(client, receiver.url)
    assert (out.status, out.http_status, out.retry_after_s) == ("retry", 429, 120.0)
    assert not out.permanent_suspect


def test_429_with_retry_after_as_an_http_date(client: httpx.Client, receiver: WebhookReceiver) -> None:
    now = int(time.time())
    receiver.set_mode("throttle", retry_after=email.utils.formatdate(now + 300, usegmt=True))
    out = deliver(client, receiver.url, make_event(), "structured", [SECRET], timeout_s=5, now=now)
    assert (out.status, out.http_status, out.retry_after_s) == ("retry", 429, 300.0)


def test_503_with_retry_after(client: httpx.Client, receiver: WebhookReceiver) -> None:
    receiver.set_mode("status", status_code=503, retry_after="30")
    _, out = send(client, receiver.url)
    assert (out.status, out.http_status, out.retry_after_s, out.permanent_suspect) == (
        "retry",
        503,
        30.0,
        False,
    )


def test_500_is_retried(client: httpx.Client, receiver: WebhookReceiver) -> None:
    receiver.set_mode("error")
    _, out = send(client, receiver.url)
    assert (out.status, out.http_status, out.retry_after_s, out.permanent_suspect) == (
        "retry",
        500,
        None,
        False,
    )
    assert out.detail == "HTTP 500: receiver error (test)"


@pytest.mark.parametrize(
    ("code", "suspect"), [(400, True), (401, True), (403, True), (404, True), (413, True), (408, False)]
)
def test_other_4xx_are_retried_and_flagged(
    client: httpx.Client, receiver: WebhookReceiver, code: int, suspect: bool
) -> None:
    receiver.set_mode("status", status_code=code, retry_after="")
    _, out = send(client, receiver.url)
    assert (out.status, out.http_status, out.permanent_suspect) == ("retry", code, suspect)


def test_a_timeout_is_retried(client: httpx.Client, receiver: WebhookReceiver) -> None:
    receiver.set_mode("slow", slow_s=30)
    _, out = send(client, receiver.url, timeout_s=0.5)
    assert (out.status, out.http_status) == ("retry", None)
    assert out.detail.startswith("timeout after 0.5 s (ReadTimeout)")
    assert out.elapsed_s < 5
    receiver.wait_for(1)  # it did arrive; the answer came too late


def test_a_redirect_is_not_followed(
    client: httpx.Client, receiver: WebhookReceiver, other_receiver: WebhookReceiver
) -> None:
    # Another host (127.0.0.1 rather than localhost), a server that would answer 204.
    receiver.set_mode("redirect", redirect_to=f"https://127.0.0.1:{other_receiver.port}/stolen?token=x")
    _, out = send(client, receiver.url)
    assert (out.status, out.http_status) == ("failed", 302)
    assert "not followed" in out.detail and "'127.0.0.1'" in out.detail and "token" not in out.detail
    assert len(receiver.wait_for(1)) == 1
    assert other_receiver.requests == []


def test_an_endless_response_body_is_read_only_so_far(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.set_mode("flood")
    _, out = send(client, receiver.url, timeout_s=10)
    assert (out.status, out.http_status) == ("delivered", 200)
    assert f"over {MAX_RESPONSE_BYTES} bytes, not read further" in out.detail
    assert out.elapsed_s < 5


def test_the_detail_holds_at_most_200_bytes_of_the_body(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.set_mode("flood", flood_status=500)
    _, out = send(client, receiver.url)
    assert out.status == "retry" and out.http_status == 500
    assert out.detail.count("x") == 200


def test_a_connection_refused_is_retried(client: httpx.Client) -> None:
    _, out = send(client, f"https://localhost:{free_port()}/hook")
    assert (out.status, out.http_status) == ("retry", None)
    assert out.detail.startswith("connection failed (ConnectError")


def test_an_untrusted_certificate_is_a_connection_failure(receiver: WebhookReceiver) -> None:
    with httpx.Client() as default_trust:  # the system CAs: the test CA is not among them
        _, out = send(default_trust, receiver.url)
    assert out.status == "retry" and "CERTIFICATE_VERIFY_FAILED" in out.detail.upper().replace(" ", "_")
    assert receiver.requests == []


def test_a_refused_url_is_never_requested(client: httpx.Client, receiver: WebhookReceiver) -> None:
    _, out = send(client, receiver.url, policy=UrlPolicy(("hooks.city.example",)))
    assert (out.status, out.http_status) == ("failed", None)
    assert "not in the webhook allowlist" in out.detail
    assert receiver.requests == []
    _, ok = send(client, receiver.url, policy=UrlPolicy((f"localhost:{receiver.port}",)))
    assert ok.status == "delivered"


def test_plain_http_to_loopback_with_the_escape_hatch() -> None:
    with WebhookReceiver() as plain, httpx.Client() as c:
        assert plain.url.startswith("http://127.0.0.1:")
        _, refused = send(c, plain.url, policy=UrlPolicy())
        assert refused.status == "failed" and "only https" in refused.detail
        ev, out = send(c, plain.url, mode="binary", policy=UrlPolicy(allow_http_loopback=True))
        assert out.status == "delivered"
        [req] = plain.wait_for(1)
        Webhook(SECRET.reveal()).verify(req.body, req.headers)
        assert from_http(req.headers, req.body)["id"] == ev.id


def test_wait_for_times_out_naming_the_count() -> None:
    with WebhookReceiver() as plain, pytest.raises(TimeoutError, match="0 of 1"):
        plain.wait_for(1, timeout=0.1)


# --- UrlPolicy ---------------------------------------------------------------------------------

POLICY = UrlPolicy(("hooks.city.example", "*.services.city.example", "api.city.example:8443"))


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.city.example/cases",
        "https://HOOKS.City.Example./cases",
        "https://hooks.city.example:443/cases",
        "https://traffic.services.city.example/in",
        "https://a.b.services.city.example/in",
        "https://api.city.example:8443/hook",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert POLICY.check(url).scheme == "https"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://hooks.city.example/cases", "only https"),
        ("ftp://hooks.city.example/cases", "only https"),
        ("https://evil.example/cases", "not in the webhook allowlist"),
        ("https://services.city.example/in", "not in the webhook allowlist"),  # the suffix itself
        ("https://evilservices.city.example/in", "not in the webhook allowlist"),
        ("https://hooks.city.example.evil.example/", "not in the webhook allowlist"),
        ("https://user:pw@hooks.city.example/cases", "user:password"),
        ("https://token@hooks.city.example/cases", "user:password"),
        ("https://hooks.city.example:8443/cases", "port 8443 is not allowed"),
        ("https://api.city.example/hook", "port 443 is not allowed"),
        ("https://api.city.example:9443/hook", "port 9443 is not allowed"),
        ("https://127.0.0.1/hook", "not in the webhook allowlist"),
        ("http://127.0.0.1:8080/hook", "only https"),  # no escape hatch in this policy
        ("https:///nohost", "no host"),
        ("https://hooks.city.example:99999/", "port 99999 is not allowed"),
        ("https://hooks.city.example:abc/", "not a valid URL"),
        ("not a url", "only https"),
    ],
)
def test_refused_urls_name_the_url_and_the_rule(url: str, rule: str) -> None:
    with pytest.raises(UrlRefusedError, match=re.escape(rule)) as info:
        POLICY.check(url)
    assert "webhook URL" in str(info.value)
    assert "pw" not in str(info.value) and "token@" not in str(info.value)


def test_the_error_names_the_url_without_its_query() -> None:
    with pytest.raises(UrlRefusedError) as info:
        POLICY.check("https://evil.example/hook?key=s3cr3t")
    assert "https://evil.example/hook" in str(info.value) and "s3cr3t" not in str(info.value)


def test_the_http_escape_hatch_is_for_loopback_only() -> None:
    hatch = UrlPolicy(allow_http_loopback=True)
    for url in (
        "http://127.0.0.1:8080/h",
        "http://localhost:1/h",
        "http://[::1]:9000/h",
        "http://127.1.2.3/h",
    ):
        assert hatch.check(url).scheme == "http"
    for url in ("http://10.0.0.1/h", "http://hooks.city.example/h"):
        with pytest.raises(UrlRefusedError, match="only https"):
            hatch.check(url)
    with pytest.raises(UrlRefusedError, match="user:password"):
        hatch.check("http://u:p@127.0.0.1/h")
    assert UrlPolicy().allow_http_loopback is False


@pytest.mark.parametrize(
    "pattern", ["*", "*.com", "a.*.example", "host:0", "host:70000", "host:x", "", "a..b", "a/b"]
)
def test_bad_allowlist_patterns_are_refused_at_construction(pattern: str) -> None:
    with pytest.raises(ValueError, match="allowlist pattern"):
        UrlPolicy((pattern,))


def test_allowed_hosts_must_be_a_sequence_of_patterns() -> None:
    with pytest.raises(TypeError):
        UrlPolicy("hooks.city.example")  # type: ignore[arg-type]
