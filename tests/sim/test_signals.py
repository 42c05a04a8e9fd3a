"""Signals: valid per profile (proved with the contract's Validator), deterministic, realistic."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.readings import Reading
from citygate.contract.validation import Validator
from citygate.simulators.device import encode
from citygate.simulators.signals import DeviceSignal, WeatherCache, storm_rain

REGISTRY = ProfileRegistry()
PROFILES = REGISTRY.names()
DEVICES = [f"sig-{i:03d}" for i in range(12)]


def _validator() -> Validator:
    inv = Inventory()
    for p in PROFILES:
        for d in DEVICES:
            rec = DeviceRecord(device_id=f"{p}-{d}", profile=p, profile_version=REGISTRY.latest(p).version)
            inv = inv.with_devices(rec)
    return Validator(REGISTRY, inv)


VALIDATOR = _validator()


def local_ms(year: int, month: int, day: int, hour: float) -> int:
    """Epoch ms of a local (UTC+1) wall-clock time."""
    base = dt.datetime(year, month, day, tzinfo=dt.UTC) - dt.timedelta(hours=1)
    return int((base + dt.timedelta(hours=hour)).timestamp() * 1000)


def signal(profile: str, device: str, seed: int = 7) -> DeviceSignal:
    p = REGISTRY.latest(profile)
    return DeviceSignal(f"{profile}-{device}", p, seed=seed, interval_s=p.expected_interval_s)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**63),
    ts_ms=st.integers(min_value=1_500_000_000_000, max_value=2_100_000_000_000),
    device=st.sampled_from(DEVICES),
)
def test_every_profile_yields_valid_payloads(seed: int, ts_ms: int, device: str) -> None:
    for profile in PROFILES:
        s = signal(profile, device, seed)
        payload = encode(3, ts_ms, s.values(ts_ms))
        result = VALIDATOR.validate(s.device_id, payload, now_ns=ts_ms * 1_000_000)
        assert isinstance(result, Reading), (profile, result)


def test_a_year_of_hourly_readings_stays_in_range() -> None:
    start = local_ms(2026, 1, 1, 0)
    for profile in PROFILES:
        spec = REGISTRY.latest(profile).fields
        for d in DEVICES[:4]:
            s = signal(profile, d)
            for h in range(0, 365 * 24, 7):
                ts = start + h * 3_600_000
                vals = s.values(ts)
                assert set(vals) <= set(spec)
                assert all(k in vals for k, f in spec.items() if f.required)
                for k, v in vals.items():
                    f = spec[k]
                    if f.type in {"float", "int"}:
                        assert type(v) is (float if f.type == "float" else int), (profile, k, v)
                        assert f.min is None or v >= f.min
                        assert f.max is None or v <= f.max


def test_deterministic_per_seed_device_and_time() -> None:
    ts = local_ms(2026, 3, 3, 9.5)
    a = signal("air_quality", "sig-001", seed=1).values(ts)
    assert a == signal("air_quality", "sig-001", seed=1).values(ts)
    assert a != signal("air_quality", "sig-001", seed=2).values(ts)
    assert a != signal("air_quality", "sig-002", seed=1).values(ts)


def _mean(profile: str, field: str, ts: int) -> float:
    return statistics.fmean(float(signal(profile, d).values(ts)[field]) for d in DEVICES)


def test_traffic_and_noise_peak_at_rush_hour_on_weekdays() -> None:
    tuesday = (2026, 3, 10)
    rush = local_ms(*tuesday, 8.0)
    night = local_ms(*tuesday, 3.0)
    assert _mean("traffic_counter", "vehicles", rush) > 4 * _mean("traffic_counter", "vehicles", night)
    assert _mean("noise", "laeq", rush) > _mean("noise", "laeq", night) + 6
    sunday_rush = local_ms(2026, 3, 15, 8.0)
    assert _mean("traffic_counter", "vehicles", rush) > 1.5 * _mean(
        "traffic_counter", "vehicles", sunday_rush
    )


def test_air_quality_follows_traffic() -> None:
    rush = local_ms(2026, 3, 10, 8.0)
    night = local_ms(2026, 3, 10, 3.0)
    assert _mean("air_quality", "no2", rush) > _mean("air_quality", "no2", night)


def test_street_lights_on_at_night_off_at_noon() -> None:
    for d in DEVICES:
        s = signal("street_light", d)
        assert s.values(local_ms(2026, 6, 21, 0.5))["lamp_on"] is True
        noon = s.values(local_ms(2026, 6, 21, 13.0))
        assert noon["lamp_on"] is False
        assert noon["dim_level"] == 0.0


def test_waste_bins_fill_and_get_emptied() -> None:
    s = signal("waste_bin", "sig-004")
    start = local_ms(2026, 4, 1, 0)
    levels = [float(s.values(start + h * 3_600_000)["fill_level"]) for h in range(24 * 14)]
    rises = sum(1 for a, b in itertools.pairwise(levels) if b > a)
    empties = sum(1 for a, b in itertools.pairwise(levels) if a - b > 20)
    assert rises > len(levels) * 0.6
    assert empties >= 3


def test_parking_busier_by_day_for_commercial_bays() -> None:
    day = [local_ms(2026, 5, d, 13.0) for d in range(4, 9)]
    night = [local_ms(2026, 5, d, 4.0) for d in range(4, 9)]
    occ_day = occ_night = 0
    for d in [f"p{i}" for i in range(200)]:
        s = signal("parking", d)
        occ_day += sum(bool(s.values(t)["occupied"]) for t in day)
        occ_night += sum(bool(s.values(t)["occupied"]) for t in night)
    assert occ_day > occ_night


def test_water_level_rises_after_a_storm() -> None:
    seed = 7
    t = local_ms(2026, 1, 1, 0) // 1000
    while storm_rain(seed, t) < 5.0:  # the first storm of the year
        t += 600
    s = signal("water_level", "sig-001", seed)
    before = float(s.values((t - 12 * 3600) * 1000)["level"])
    after = float(s.values((t + 5 * 3600) * 1000)["level"])
    assert after > before


def test_weather_is_shared_and_solar_is_zero_at_night() -> None:
    cache = WeatherCache(7, 1.0)
    assert cache.at(1_780_000_000.2) is cache.at(1_780_000_000.7)
    assert _mean("weather", "solar_radiation", local_ms(2026, 6, 1, 1.0)) == 0.0
    assert _mean("weather", "solar_radiation", local_ms(2026, 6, 1, 13.0)) > 50.0


@pytest.mark.parametrize("profile", PROFILES)
def test_generic_model_for_unknown_profiles(profile: str) -> None:
    p = REGISTRY.latest(profile)
    renamed = p.model_copy(update={"name": "zz_unknown"})
    s = DeviceSignal("x", renamed, seed=1, interval_s=60)
    vals = s.values(1_780_000_000_000)
    assert all(k in vals for k, f in p.fields.items() if f.required)
