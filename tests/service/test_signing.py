"""Standard Webhooks signing, judged by the standardwebhooks package (Webhook(secret).verify)."""

from __future__ import annotations

import base64
import copy
import pickle
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from citygate.service.signing import WebhookSecret, WebhookSecretError, sign, webhook_headers

MSG_ID = "01HX5Z6V8Q3K9M2N4P7R1T0W8Y"
BODY = b'{"specversion":"1.0","id":"01HX5Z6V8Q3K9M2N4P7R1T0W8Y","data":{"note":"Gr\xc3\xbcnfl\xc3\xa4che"}}'


def secret_string(fill: int, n: int = 32) -> str:
    return "whsec_" + base64.b64encode(bytes([fill]) * n).decode()


def now() -> int:
    return int(time.time())  # the judge refuses timestamps more than 5 minutes off its clock


def test_a_signature_verifies_with_the_judge() -> None:
    s = WebhookSecret(secret_string(1))
    headers = webhook_headers(MSG_ID, now(), BODY, [s])
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(s.reveal()).verify(BODY, headers) is not None


def test_the_signature_matches_the_judges_own_signing() -> None:
    # A fixed, old timestamp: verify() would refuse it, sign() is a pure function.
    s = WebhookSecret(secret_string(9))
    ts = 1614265330
    expected = Webhook(s.reveal()).sign(MSG_ID, datetime.fromtimestamp(ts, UTC), BODY.decode())
    assert sign(MSG_ID, ts, BODY, [s]) == expected


def test_rotation_each_secret_alone_verifies() -> None:
    old, new = WebhookSecret(secret_string(1)), WebhookSecret(secret_string(2))
    headers = webhook_headers(MSG_ID, now(), BODY, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old.reveal()).verify(BODY, headers)
    Webhook(new.reveal()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_string(3)).verify(BODY, headers)


@pytest.mark.parametrize("what", ["body", "timestamp", "id"])
def test_tampering_fails_verification(what: str) -> None:
    s = WebhookSecret(secret_string(1))
    headers = webhook_headers(MSG_ID, now(), BODY, [s])
    body = BODY
    if what == "body":
        body = BODY.replace(b"1.0", b"1.1")
    elif what == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    else:
        headers["webhook-id"] = MSG_ID[:-1] + "Z"
    with pytest.raises(WebhookVerificationError):
        Webhook(s.reveal()).verify(body, headers)


def test_secret_parsing_accepts_padded_and_unpadded_base64() -> None:
    raw = bytes(range(25))  # 25 bytes: base64 with padding
    padded = "whsec_" + base64.b64encode(raw).decode()
    assert padded.endswith("=")
    assert WebhookSecret(padded) == WebhookSecret(padded.rstrip("=")) == WebhookSecret.from_bytes(raw)
    assert WebhookSecret(padded).reveal() == padded


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "starting with 'whsec_'"),
        ("whsec_not*base64!!not*base64!!not*base64!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"k" * 16).decode(), "16 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "65 bytes"),
        ("whsec_", "0 bytes"),
    ],
)
def test_bad_secrets_are_refused_without_showing_them(value: str, message: str) -> None:
    with pytest.raises(WebhookSecretError, match=message) as info:
        WebhookSecret(value)
    shown = str(info.value)
    secret_part = value.removeprefix("whsec_")
    assert not secret_part or secret_part not in shown
    # No chained decoder error in the traceback either (it would carry no key, but keep it plain).
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_the_repr_never_shows_the_key() -> None:
    serialized = secret_string(5)
    s = WebhookSecret(serialized)
    for text in (repr(s), str(s), f"{s}", repr([s])):
        assert serialized.removeprefix("whsec_") not in text
        assert "redacted" in text
    assert len(s.fingerprint) == 8
    assert s.fingerprint != WebhookSecret(secret_string(6)).fingerprint


def test_secrets_copy_as_themselves_and_do_not_pickle() -> None:
    s = WebhookSecret.generate()
    assert copy.copy(s) is s and copy.deepcopy([s])[0] is s
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(s)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "x" * 257])
def test_ids_that_could_alias_in_the_signed_content_are_refused(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        sign(msg_id, 1, BODY, [WebhookSecret.generate()])


@pytest.mark.parametrize("ts", [-1, 1.5, True])
def test_timestamps_are_whole_non_negative_seconds(ts: object) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        sign(MSG_ID, ts, BODY, [WebhookSecret.generate()])  # type: ignore[arg-type]


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one"):
        sign(MSG_ID, 1, BODY, [])
