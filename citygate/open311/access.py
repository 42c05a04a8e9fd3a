"""Who may write, and how often anyone may call: API keys and the rate limits' keys.

Reads are public. A report needs an API key of ``[cloud.open311] api_keys``: a client app's,
compared in constant time against every configured key (as the cloud's bearer tokens are),
its name recorded with the report. Rates are counted per client address (every request)
and per key (reports), with :class:`citygate.cloud.ratelimit.RateLimiter`; an IPv6 address
counts as its prefix (``ipv6_prefix``), since one host usually holds a whole /64.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from citygate.open311.errors import Open311Error


class ApiKeys:
    def __init__(self, keys: Mapping[str, SecretStr]) -> None:
        self._keys = [(name, k.get_secret_value().encode()) for name, k in keys.items()]

    def check(self, given: str | None) -> str:
        """The name of the key given, or Open311Error: 400 without one, 403 for a wrong one."""
        if given is None:
            raise Open311Error(400, "api_key was not provided (a report needs a key: see discovery.json)")
        raw = given.encode()
        found: str | None = None
        for name, key in self._keys:  # no early exit: the time taken says nothing
            if hmac.compare_digest(raw, key):
                found = name
        if found is None:
            raise Open311Error(403, "invalid api_key")
        return found
