"""The gateway's idea of the time: its own clock, unless the cloud says that clock is off.

A Raspberry Pi has no battery-backed clock: after a power cut it boots with the
last saved time (fake-hwclock) until NTP answers, and NTP can step the clock
later. Readings are judged against "now" (a reading too far in the future is
rejected), so a gateway clock 20 minutes behind would reject every good reading
as "in the future", and confirm the rejection, so the devices would drop them.

Every answer from the cloud carries an HTTP ``Date`` (the cloud's clock, which
the data centre keeps right). :class:`TrustedClock` anchors that time to the
monotonic clock, which never jumps, and from then on tells the cloud's time
carried forward. ``Date`` has one-second resolution, so the gateway's own clock
is used as long as it agrees within :attr:`TrustedClock.tolerance_ns`; before the
first answer from the cloud there is nothing better than the gateway's own clock,
so the pipeline does not confirm a rejection for time until then (:attr:`anchored`).
"""

from __future__ import annotations

import email.utils
import threading
import time

import structlog

log = structlog.get_logger(__name__)


class TrustedClock:
    def __init__(self, *, tolerance_s: float = 2.0) -> None:
        self.tolerance_ns = int(tolerance_s * 1e9)
        self._anchor_ns: int | None = None  # cloud time minus monotonic time
        self._lock = threading.Lock()
        self._disagrees = False

    def observe(self, date_header: str | None, sent_mono_ns: int, received_mono_ns: int) -> None:
        """Learn from one answer: its ``Date`` header and when (monotonic) the request went and came."""
        if not date_header:
            return
        try:
            when = email.utils.parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        if when.tzinfo is None:
            return
        # Date is truncated to the second: take the middle of that second, and of the round trip.
        server_ns = int(when.timestamp()) * 1_000_000_000 + 500_000_000
        with self._lock:
            self._anchor_ns = server_ns - (sent_mono_ns + received_mono_ns) // 2

    def now_ns(self) -> int:
        """Nanoseconds since the epoch: the local clock, or the cloud's carried forward if they disagree."""
        wall = time.time_ns()
        anchor = self._anchor_ns
        if anchor is None:
            return wall
        trusted = time.monotonic_ns() + anchor
        disagrees = abs(wall - trusted) > self.tolerance_ns
        if disagrees != self._disagrees:
            self._disagrees = disagrees
            offset_s = round((wall - trusted) / 1e9, 1)
            if disagrees:
                log.warning(
                    "the gateway's clock disagrees with the cloud's; using the cloud's", offset_s=offset_s
                )
            else:
                log.info("the gateway's clock agrees with the cloud's again", offset_s=offset_s)
        return trusted if disagrees else wall

    @property
    def anchored(self) -> bool:
        """The cloud has answered since the start: a clock to check the gateway's own against."""
        return self._anchor_ns is not None

    def offset_s(self) -> float | None:
        """Local clock minus the cloud's (None until the cloud has answered)."""
        anchor = self._anchor_ns
        if anchor is None:
            return None
        return (time.time_ns() - (time.monotonic_ns() + anchor)) / 1e9
