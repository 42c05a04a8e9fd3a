"""Scenario 18 opens cases whatever the hour it runs: its fleet's city clock is set to the traffic
its noise rule was sized on (at night every simulated street was quieter than the line, and the
scenario failed with no transition made)."""

from __future__ import annotations

from citygate.chaos.s18_service_faults import TRAFFIC, utc_offset_for_traffic
from citygate.simulators.signals import CityTime, traffic_factor

WEEK_S = 7 * 86_400
START = 1_796_342_400.0  # 2026-12-04 00:00 UTC, a Friday


def test_the_fleets_city_time_has_the_rules_traffic_at_every_hour_of_a_week():
    for step in range(0, WEEK_S, 900):
        now = START + step
        offset = utc_offset_for_traffic(now)
        assert -12.0 <= offset <= 12.0
        assert abs(traffic_factor(CityTime.at(now, offset)) - TRAFFIC) < 0.05, (step / 3600, offset)


def test_the_default_city_clock_is_quiet_at_night():
    # What made the scenario depend on the hour: at 02:00 UTC, UTC + 1 is far from that traffic.
    assert traffic_factor(CityTime.at(START + 2 * 3600, 1.0)) < TRAFFIC / 2
