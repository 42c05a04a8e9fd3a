"""The gateway's trusted clock: its own, unless the cloud's Date says it is off."""

from __future__ import annotations

import email.utils
import time

from citygate.gateway.clock import TrustedClock


def _date(epoch_s: float) -> str:
    return email.utils.formatdate(epoch_s, usegmt=True)


def test_before_the_cloud_answers_the_local_clock_is_used():
    c = TrustedClock()
    assert abs(c.now_ns() - time.time_ns()) < 50_000_000
    assert c.offset_s() is None


def test_a_clock_that_agrees_within_the_tolerance_is_kept():
    c = TrustedClock(tolerance_s=2.0)
    m = time.monotonic_ns()
    c.observe(_date(time.time() + 1.0), m, m)
    assert abs(c.now_ns() - time.time_ns()) < 50_000_000


def test_a_local_clock_twenty_minutes_behind_is_replaced_by_the_clouds_time():
    c = TrustedClock()
    cloud_now = time.time() + 1200  # the cloud is right; this machine's clock is 20 min behind
    m = time.monotonic_ns()
    c.observe(_date(cloud_now), m, m)
    assert abs(c.now_ns() / 1e9 - cloud_now) < 1.5
    offset = c.offset_s()
    assert offset is not None and abs(offset + 1200) < 1.5


def test_the_clouds_time_is_carried_forward_on_the_monotonic_clock():
    c = TrustedClock()
    m = time.monotonic_ns()
    c.observe(_date(time.time() - 86400), m - 10_000_000_000, m - 10_000_000_000)  # an answer 10 s ago
    assert abs(c.now_ns() / 1e9 - (time.time() - 86400 + 10)) < 1.5


def test_unreadable_or_missing_dates_are_ignored():
    c = TrustedClock()
    m = time.monotonic_ns()
    for bad in (None, "", "yesterday", "Mon, 99 Foo 2026 99:99:99 GMT"):
        c.observe(bad, m, m)
    assert c.offset_s() is None
