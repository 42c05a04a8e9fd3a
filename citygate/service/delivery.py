"""One webhook delivery attempt and what it means, and the policy for where webhooks may go.

``deliver`` makes ONE signed POST and classifies the answer; scheduling the next attempt is
the dispatcher's (with citygate.service.backoff). How answers are classified:

- 2xx: ``delivered`` (even if the response body then breaks off: the receiver said so).
- 410 Gone: ``gone``; the receiver asks us to stop: the dispatcher disables the subscription.
- 3xx: ``failed``, no retry. Redirects are never followed (Standard Webhooks: update the URL
  instead; following one would also step outside the URL policy). The Location's host is
  named in the detail so that an operator can see where it pointed.
- 429 and 5xx: ``retry``; ``Retry-After`` (seconds or HTTP-date) is parsed into
  ``retry_after_s`` for the backoff to honour.
- Other 4xx: ``retry`` as well, as Standard Webhooks senders do for any non-2xx, because a
  receiver's misconfiguration (a rotated secret on their side: 401; a route not deployed yet:
  404) is usually fixed within the retry span, and giving up at once would lose the event.
  But most of them say "this request will never work as sent", so they are marked
  ``permanent_suspect=True``: the dispatcher can alert an operator or disable the subscription
  after repeated ones. Not suspect: 408 (timeout), 425 (too early), 429 (throttled).
- Timeouts and connection errors (TLS verification failures included): ``retry``, no
  ``http_status``. Any other status (1xx as final, 6xx...) is a ``retry`` too.
- A URL the policy refuses: ``failed`` without any request.

The response body is read through a bounded stream (at most 64 KiB, content-encoding not
decoded) so a hostile receiver can neither exhaust memory nor stall us with an endless body;
only its first 200 bytes, made printable, go into ``detail``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Final, Literal

import httpx

from citygate.netutil import is_loopback_host
from citygate.service.backoff import parse_retry_after
from citygate.service.cloudevent import CaseEvent, batch
from citygate.service.signing import WebhookSecret, webhook_headers

__all__ = ["MAX_RESPONSE_BYTES", "USER_AGENT", "Outcome", "Status", "UrlPolicy", "UrlRefusedError", "deliver"]

MAX_RESPONSE_BYTES: Final = 64 * 1024
DETAIL_BODY_BYTES: Final = 200
_NOT_SUSPECT_4XX: Final = frozenset({408, 425, 429})


def _user_agent() -> str:
    try:
        v = version("citygate")
    except PackageNotFoundError:
        v = "dev"
    return f"citygate-webhooks/{v}"


USER_AGENT: Final = _user_agent()


# --- where webhooks may go -------------------------------------------------------------------


class UrlRefusedError(ValueError):
    """A webhook URL the policy does not allow; the message names the URL and the rule."""


def _shown(url: str) -> str:
    # Name the URL without its query and userinfo: receivers sometimes put tokens there.
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        u = None
    if u is None or not u.scheme or not u.host:
        return repr(str(url).split("?")[0][:100])
    port = f":{u.port}" if u.port is not None else ""
    return f"{u.scheme}://{u.host}{port}{u.path}"


@dataclass(frozen=True, slots=True)
class _Pattern:
    host: str  # the exact host, or for a wildcard the suffix after "*."
    wildcard: bool
    port: int | None  # None: the scheme's default port only

    def matches(self, host: str) -> bool:
        return host.endswith("." + self.host) if self.wildcard else host == self.host


def _parse_pattern(text: str) -> _Pattern:
    host, port = text.strip().lower().rstrip("."), None
    if ":" in host:
        host, _, port_text = host.rpartition(":")
        if ":" in host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"allowlist pattern {text!r}: 'host:port' with a port of 1-65535")
        port = int(port_text)
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    labels = host.split(".")
    if not host or "*" in host or "/" in host or not all(labels):
        raise ValueError(f"allowlist pattern {text!r}: an exact host or '*.suffix', optionally ':port'")
    if wildcard and len(labels) < 2:
        raise ValueError(f"allowlist pattern {text!r}: a wildcard needs a suffix of two labels or more")
    return _Pattern(host, wildcard, port)


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which URLs a subscription may point to.

    ``allowed_hosts`` holds exact hosts (``hooks.city.example``) and wildcard suffixes
    (``*.city.example``: any host below it, not the suffix itself), each optionally with
    ``:port``; without one, only the default port (443) is allowed. HTTPS only, no userinfo.
    IPv6 literals are not supported in patterns.

    ``allow_http_loopback`` (off by default) is the tests'/demo's escape hatch: plain
    ``http://`` to localhost / 127.0.0.0/8 / ::1, on any port, without the allowlist.

    This is a check on names, not on addresses: it is meant for an allowlist of the city's
    own domains, whose DNS the city controls.
    """

    allowed_hosts: tuple[str, ...] = ()
    allow_http_loopback: bool = False
    _patterns: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, str):
            raise TypeError("allowed_hosts is a sequence of patterns, not one string")
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        # Bad patterns are refused when the policy is made, not at send time.
        object.__setattr__(self, "_patterns", tuple(map(_parse_pattern, self.allowed_hosts)))

    def check(self, url: str) -> httpx.URL:
        """The parsed URL if allowed; raises UrlRefusedError naming the URL and the rule."""
        shown = _shown(url)
        try:
            u = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as e:
            raise UrlRefusedError(f"webhook URL {shown} is not a valid URL ({type(e).__name__})") from None
        if u.userinfo:
            raise UrlRefusedError(f"webhook URL {shown} carries user:password in the URL; refused")
        host = u.host.lower().rstrip(".")
        if u.scheme == "http" and self.allow_http_loopback and is_loopback_host(host):
            return u
        if u.scheme != "https":
            raise UrlRefusedError(
                f"webhook URL {shown}: only https is allowed"
                " (plain http only to loopback, with allow_http_loopback)"
            )
        if not host:
            raise UrlRefusedError(f"webhook URL {shown} has no host")
        matching = [p for p in self._patterns if p.matches(host)]
        if not matching:
            raise UrlRefusedError(f"webhook URL {shown}: host {host!r} is not in the webhook allowlist")
        port = u.port  # None when it is https's default, 443
        if any(p.port == port for p in matching):
            return u
        allowed = sorted({str(p.port) if p.port else "443 (default)" for p in matching})
        raise UrlRefusedError(
            f"webhook URL {shown}: port {port or 443} is not allowed for this host"
            f" (allowed: {', '.join(allowed)}; name other ports in the allowlist as 'host:port')"
        )


# --- one attempt -----------------------------------------------------------------------------


Status = Literal["delivered", "retry", "gone", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    http_status: int | None
    retry_after_s: float | None
    detail: str  # short, printable, never a secret; at most 200 bytes of the response body
    elapsed_s: float
    permanent_suspect: bool = False  # a 4xx that retrying as-is will likely not fix


def _printable(raw: bytes) -> str:
    text = raw[:DETAIL_BODY_BYTES].decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _read_bounded(response: httpx.Response, deadline: float) -> tuple[bytes, str]:
    """Up to MAX_RESPONSE_BYTES of the raw body; a note if we stopped early or it broke."""
    got = bytearray()
    try:
        for chunk in response.iter_raw():
            got += chunk
            if len(got) >= MAX_RESPONSE_BYTES:
                return bytes(got), f"; response body over {MAX_RESPONSE_BYTES} bytes, not read further"
            if time.monotonic() > deadline:
                return bytes(got), "; response body still arriving at the deadline, not read further"
    except httpx.HTTPError as e:
        return bytes(got), f"; response body unread ({type(e).__name__})"
    return bytes(got), ""


def _classify(
    response: httpx.Response, body: bytes, note: str, now: int
) -> tuple[Status, float | None, str, bool]:
    code = response.status_code
    snippet = _printable(body)
    said = f": {snippet}" if snippet else ""
    if 200 <= code < 300:
        return "delivered", None, f"HTTP {code}{note}", False
    if code == 410:
        return "gone", None, f"HTTP 410 Gone: the receiver asks to stop{said}{note}", False
    if 300 <= code < 400:
        location = response.headers.get("location")
        where = "no Location"
        if location:
            try:
                where = f"Location host {httpx.URL(location).host or '(relative)'!r}"
            except httpx.InvalidURL:
                where = "an unreadable Location"
        return "failed", None, f"HTTP {code} redirect, not followed ({where}){note}", False
    retry_after = parse_retry_after(response.headers.get("retry-after"), float(now))
    suspect = 400 <= code < 500 and code not in _NOT_SUSPECT_4XX
    return "retry", retry_after, f"HTTP {code}{said}{note}", suspect


def deliver(
    client: httpx.Client,
    url: str,
    event: CaseEvent,
    mode: Literal["structured", "binary"],
    secrets: Sequence[WebhookSecret],
    *,
    timeout_s: float,
    now: int,
    policy: UrlPolicy | None = None,
) -> Outcome:
    """Make ONE signed POST of ``event`` to ``url`` and classify the answer (module docstring).

    ``now`` is the attempt's Unix time: the ``webhook-timestamp``, and the reference for an
    HTTP-date ``Retry-After``. ``timeout_s`` bounds each phase (connect, write, each read) and,
    checked between body chunks, the whole exchange. With ``policy``, a refused URL gives
    ``failed`` without any request.
    """
    started = time.monotonic()
    if mode == "structured":
        headers, body = event.structured()
    elif mode == "binary":
        headers, body = event.binary()
    else:
        raise ValueError(f"delivery mode must be 'structured' or 'binary', not {mode!r}")
    return _post(
        client,
        url,
        event.id,
        headers,
        body,
        secrets,
        timeout_s=timeout_s,
        now=now,
        started=started,
        policy=policy,
    )


def deliver_batch(
    client: httpx.Client,
    url: str,
    events: Sequence[CaseEvent],
    secrets: Sequence[WebhookSecret],
    *,
    timeout_s: float,
    now: int,
    policy: UrlPolicy | None = None,
) -> Outcome:
    """As :func:`deliver`, for several events in ONE signed POST (CloudEvents batched mode):
    one outcome for all of them."""
    started = time.monotonic()
    msg_id, headers, body = batch(events)
    return _post(
        client,
        url,
        msg_id,
        headers,
        body,
        secrets,
        timeout_s=timeout_s,
        now=now,
        started=started,
        policy=policy,
    )


def _post(
    client: httpx.Client,
    url: str,
    msg_id: str,
    headers: dict[str, str],
    body: bytes,
    secrets: Sequence[WebhookSecret],
    *,
    timeout_s: float,
    now: int,
    started: float,
    policy: UrlPolicy | None,
) -> Outcome:
    """The signed POST itself; with ``policy``, a refused URL gives ``failed`` without it."""

    def outcome(status: Status, code: int | None, after: float | None, detail: str, suspect: bool) -> Outcome:
        return Outcome(status, code, after, detail, time.monotonic() - started, suspect)

    if policy is not None:
        try:
            policy.check(url)
        except UrlRefusedError as e:
            return outcome("failed", None, None, str(e), False)
    headers |= webhook_headers(msg_id, now, body, secrets)
    headers["user-agent"] = USER_AGENT
    headers["accept-encoding"] = "identity"  # we read raw bytes: no decompression bomb
    deadline = started + timeout_s
    try:
        with client.stream(
            "POST",
            url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
        ) as response:
            raw, note = _read_bounded(response, deadline)
            status, retry_after, detail, suspect = _classify(response, raw, note, now)
            return outcome(status, response.status_code, retry_after, detail, suspect)
    except httpx.TimeoutException as e:
        return outcome("retry", None, None, f"timeout after {timeout_s:g} s ({type(e).__name__})", False)
    except httpx.TransportError as e:
        return outcome("retry", None, None, f"connection failed ({type(e).__name__}: {_short(e)})", False)


def _short(e: Exception) -> str:
    # httpx's transport messages are the OS's or ssl's ("[Errno 111] Connection refused",
    # "certificate verify failed"); they carry no request data. Kept short for logs.
    text = " ".join(str(e).split())
    return text[:120] or "no message"
