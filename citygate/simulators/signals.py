"""Signal models per device profile: pure functions of (seed, device, time).

Why pure functions of time rather than random walks: a reading must be the same
whenever it is computed (a resent reading, a resumed run, a test that checks one
instant), and no state has to be kept per device beyond a few constants. The
randomness comes from a 64-bit integer hash (splitmix64) of the seed, a device
key and a time bucket, which is fast, has no global state and gives the same
numbers on every machine and Python version (``hash()`` would not).

What the models follow (a mid-latitude European city, local time = UTC + ``utc_offset_h``):

- **city weather** shared by all devices: seasonal and daily temperature cycles,
  slow synoptic swings, storm events (rain, wind, pressure drop) drawn per 6-hour block;
- **traffic**: weekday rush hours at 8:00 and 17:30, a flatter midday weekend peak;
  noise follows traffic logarithmically; air quality follows traffic, dispersed
  by wind and washed out by rain, ozone follows the sun;
- **water level**: slow seasonal and multi-day trends plus the response to storms
  hours later;
- **waste bins** fill with daytime activity and are emptied on a schedule
  (some collections are missed);
- **parking** occupancy by hour, commercial and residential bays differ;
- **street lights** switch on when the sun is below the horizon, dim after midnight.

Per-device offsets (sensor bias, road capacity, bin size, ...) come from the same
hash of the device id. Every value is finally clamped into the profile's range and
given the profile's type, so a signal is valid unless a fault is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from citygate.contract.profiles import DeviceProfile, FieldSpec

Value = float | int | bool | str
Values = dict[str, Value]

_M64: Final = 0xFFFFFFFFFFFFFFFF
_TWO64: Final = float(2**64)
_DAY: Final = 86400.0
_HOUR: Final = 3600.0
_YEAR_DAYS: Final = 365.2425
_LAT_RAD: Final = math.radians(50.0)

# Stream keys: separate random streams for separate quantities.
_K_TEMP, _K_CLOUD, _K_PRESS, _K_WIND, _K_STORM, _K_WDIR = 11, 12, 13, 14, 15, 16
_K_DEV = 100


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-distributed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def uniform(seed: int, key: int, n: int) -> float:
    """A uniform number in [0, 1) determined by (seed, key, n)."""
    return _mix(_mix((seed & _M64) ^ (key & _M64)) ^ (n & _M64)) / _TWO64


def gauss(seed: int, key: int, n: int) -> float:
    """A standard normal number determined by (seed, key, n) (Box-Muller)."""
    u1 = uniform(seed, key, 2 * n) or 1e-12
    u2 = uniform(seed, key, 2 * n + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def smooth(seed: int, key: int, t: float, period: float) -> float:
    """Value noise in [-1, 1]: random knots every ``period`` seconds, cosine-interpolated."""
    x = t / period
    k = math.floor(x)
    f = x - k
    a = uniform(seed, key, k) * 2.0 - 1.0
    b = uniform(seed, key, k + 1) * 2.0 - 1.0
    w = (1.0 - math.cos(math.pi * f)) * 0.5
    return a + (b - a) * w


def device_key(device_id: str) -> int:
    """A stable 64-bit key of a device id (the same in every process and version)."""
    return int.from_bytes(hashlib.blake2b(device_id.encode(), digest_size=8).digest(), "little")


# -- calendar and sun ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CityTime:
    """Local calendar quantities of one instant."""

    t: float  # epoch seconds (UTC)
    hour: float  # local hour of day, 0..24
    weekday: int  # 0 = Monday
    doy: float  # day of year, 0..365

    @classmethod
    def at(cls, t: float, utc_offset_h: float) -> CityTime:
        local = t + utc_offset_h * _HOUR
        days = local / _DAY
        day = math.floor(days)
        return cls(t=t, hour=(days - day) * 24.0, weekday=(day + 3) % 7, doy=days % _YEAR_DAYS)

    @property
    def weekend(self) -> bool:
        return self.weekday >= 5


def sun_elevation_sin(ct: CityTime) -> float:
    """sin(solar elevation) at latitude 50 N, with local time as solar time."""
    decl = math.radians(23.44) * math.sin(2.0 * math.pi * (ct.doy - 81.0) / _YEAR_DAYS)
    hour_angle = math.radians(15.0 * (ct.hour - 12.0))
    return math.sin(_LAT_RAD) * math.sin(decl) + math.cos(_LAT_RAD) * math.cos(decl) * math.cos(hour_angle)


def traffic_factor(ct: CityTime) -> float:
    """Relative traffic 0.05..~1: weekday rush hours, weekend midday peak."""
    h = ct.hour
    if ct.weekend:
        f = 0.12 + 0.55 * math.exp(-(((h - 13.5) / 3.2) ** 2))
    else:
        f = (
            0.08
            + 0.92 * math.exp(-(((h - 8.0) / 1.1) ** 2))
            + 0.85 * math.exp(-(((h - 17.5) / 1.4) ** 2))
            + 0.45 * math.exp(-(((h - 12.75) / 2.5) ** 2))
        )
    night = 0.1 * math.exp(-(((h - 3.5) / 1.5) ** 2))  # the quiet hours are quieter still
    return max(0.05, min(1.1, f - night))


# -- city weather ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weather:
    temperature: float  # Cel
    humidity: float  # %RH
    pressure: float  # hPa
    wind: float  # m/s
    wind_dir: float  # deg
    rain: float  # mm/h
    cloud: float  # 0..1
    solar: float  # W/m2
    sun: float  # sin(elevation)


def storm_rain(seed: int, t: float) -> float:
    """Rain rate (mm/h) from storm events: one chance in ten per 6-hour block, 1-5 h long."""
    block = math.floor(t / (6 * _HOUR))
    rain = 0.0
    for b in (block - 1, block):
        if uniform(seed, _K_STORM, 4 * b) >= 0.1:
            continue
        start = b * 6 * _HOUR + uniform(seed, _K_STORM, 4 * b + 1) * 3 * _HOUR
        dur = (1.0 + 4.0 * uniform(seed, _K_STORM, 4 * b + 2)) * _HOUR
        if start <= t < start + dur:
            peak = 4.0 + 45.0 * uniform(seed, _K_STORM, 4 * b + 3) ** 2
            rain += peak * math.sin(math.pi * (t - start) / dur)
    return rain


def city_weather(seed: int, t: float, utc_offset_h: float) -> Weather:
    """The weather over the whole city at ``t``: shared by every device, so the
    air quality stations and weather stations of one run agree with each other."""
    ct = CityTime.at(t, utc_offset_h)
    seasonal = 10.5 - 9.0 * math.cos(2.0 * math.pi * (ct.doy - 15.0) / _YEAR_DAYS)
    cloud = 0.5 + 0.5 * smooth(seed, _K_CLOUD, t, 9 * _HOUR)
    rain = storm_rain(seed, t)
    drizzle = max(0.0, cloud - 0.8) * 10.0
    rain_total = rain + drizzle
    diurnal = (4.5 - 2.5 * cloud) * math.cos(2.0 * math.pi * (ct.hour - 15.0) / 24.0)
    temp = seasonal + diurnal + 5.0 * smooth(seed, _K_TEMP, t, 3 * _DAY) - min(4.0, rain * 0.2)
    storminess = min(1.0, rain / 25.0)
    wind = max(0.0, 3.5 + 2.5 * smooth(seed, _K_WIND, t, 10 * _HOUR) + 12.0 * storminess)
    pressure = 1013.0 + 14.0 * smooth(seed, _K_PRESS, t, 4 * _DAY) - 12.0 * storminess
    humidity = (
        72.0
        - 16.0 * math.cos(2.0 * math.pi * (ct.hour - 4.0) / 24.0) * (1 - cloud)
        + 25.0 * min(1.0, rain_total / 5.0)
    )
    sun = sun_elevation_sin(ct)
    solar = 1050.0 * max(0.0, sun) ** 1.15 * (1.0 - 0.72 * cloud) * (1.0 - 0.5 * storminess)
    wind_dir = (230.0 + 110.0 * smooth(seed, _K_WDIR, t, 2 * _DAY)) % 360.0
    return Weather(
        temperature=temp,
        humidity=min(100.0, max(12.0, humidity)),
        pressure=pressure,
        wind=wind,
        wind_dir=wind_dir,
        rain=rain_total,
        cloud=cloud,
        solar=solar,
        sun=sun,
    )


class WeatherCache:
    """City weather per (seed, whole second): thousands of devices reading at the
    same moment share one computation."""

    __slots__ = ("_cache", "seed", "utc_offset_h")

    def __init__(self, seed: int, utc_offset_h: float) -> None:
        self.seed = seed
        self.utc_offset_h = utc_offset_h
        self._cache: dict[int, Weather] = {}

    def at(self, t: float) -> Weather:
        key = int(t)
        w = self._cache.get(key)
        if w is None:
            if len(self._cache) > 256:
                self._cache.clear()
            w = city_weather(self.seed, float(key), self.utc_offset_h)
            self._cache[key] = w
        return w


# -- per-device models -------------------------------------------------------------


class Ctx:
    """What a model needs for one reading.

    Per-device constants and the per-stream hash states are cached on the device
    (``cache``), so a reading costs one hash per noise draw.
    """

    __slots__ = ("cache", "ct", "dev", "interval_s", "n", "seed", "t", "w")

    def __init__(
        self,
        *,
        seed: int,
        dev: int,
        t: float,
        n: int,
        interval_s: float,
        ct: CityTime,
        w: Weather,
        cache: dict[int, float | int] | None = None,
    ) -> None:
        self.seed = seed
        self.dev = dev
        self.t = t
        self.n = n
        self.interval_s = interval_s
        self.ct = ct
        self.w = w
        self.cache: dict[int, float | int] = {} if cache is None else cache

    def _inner(self, stream: int) -> int:
        key = -1 - stream  # negative keys: hash states; non-negative: constants
        h = self.cache.get(key)
        if h is None:
            h = _mix((self.seed & _M64) ^ ((self.dev ^ (stream * 0x10001)) & _M64))
            self.cache[key] = h
        return int(h)

    def u(self, stream: int) -> float:
        """Per-reading uniform noise of one stream."""
        return _mix(self._inner(stream) ^ (self.n & _M64)) / _TWO64

    def g(self, stream: int) -> float:
        """Per-reading normal noise of one stream (Box-Muller)."""
        h = self._inner(stream)
        n = self.n & _M64
        u1 = _mix(h ^ ((2 * n) & _M64)) / _TWO64 or 1e-12
        u2 = _mix(h ^ ((2 * n + 1) & _M64)) / _TWO64
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def const(self, stream: int) -> float:
        """A per-device constant in [0, 1): the device's own offset or trait."""
        v = self.cache.get(stream)
        if v is None:
            v = uniform(self.seed, self.dev, _K_DEV + stream)
            self.cache[stream] = v
        return float(v)


Model = Callable[[Ctx], Values]


def _battery(c: Ctx, powered_share: float = 0.0) -> float | None:
    """Battery charge, or None for mains-powered devices (they leave the field out)."""
    if c.const(90) < powered_share:
        return None
    start = 35.0 + 65.0 * c.const(91)
    return max(3.0, start - 2.0 * ((c.t / _DAY) % 30.0) / 30.0 + 0.3 * c.g(91))


def traffic_model(c: Ctx) -> Values:
    f = traffic_factor(c.ct)
    capacity = 300.0 + 2200.0 * c.const(1)  # vehicles per hour at the peak
    mean = capacity * f * c.interval_s / _HOUR
    vehicles = max(0, round(mean + math.sqrt(mean) * c.g(1)))
    truck_share = 0.04 + 0.08 * c.const(2)
    trucks = min(vehicles, max(0, round(vehicles * truck_share + 0.5 * c.g(2))))
    rain_damp = 1.0 / (1.0 + c.w.rain / 2.0)
    bike_mean = (20.0 + 400.0 * c.const(3)) * f * rain_damp * c.interval_s / _HOUR
    ped_mean = (40.0 + 1500.0 * c.const(4)) * f * rain_damp * c.interval_s / _HOUR
    free_speed = 30.0 + 50.0 * c.const(5)
    load = min(1.0, f * capacity / 2000.0)
    out: Values = {
        "vehicles": vehicles,
        "cars": vehicles - trucks,
        "trucks": trucks,
        "bicycles": max(0, round(bike_mean + math.sqrt(bike_mean) * c.g(3))),
        "pedestrians": max(0, round(ped_mean + math.sqrt(ped_mean) * c.g(4))),
        "occupancy": 45.0 * load**1.5 + 2.0 * abs(c.g(6)),
    }
    if vehicles > 0:
        out["avg_speed"] = free_speed * (1.0 - 0.55 * load**2) + 3.0 * c.g(5)
    return out


def noise_model(c: Ctx) -> Values:
    f = traffic_factor(c.ct)
    offset = 12.0 * c.const(1) - 6.0  # a quiet square or a main road
    laeq = 38.0 + offset + 24.0 * math.log10(1.0 + 9.0 * f) + 0.2 * c.w.wind + 1.2 * c.g(1)
    out: Values = {
        "laeq": laeq,
        "lamax": laeq + 9.0 + 7.0 * c.u(2),
        "lamin": laeq - 6.0 - 5.0 * c.u(3),
        "la10": laeq + 2.0 + 1.5 * c.u(4),
        "la90": laeq - 3.0 - 4.0 * c.u(5),
    }
    battery = _battery(c, powered_share=0.7)
    if battery is not None:
        out["battery"] = battery
    return out


def air_quality_model(c: Ctx) -> Values:
    f = traffic_factor(c.ct)
    w = c.w
    dispersion = 1.0 / (1.0 + w.wind / 3.0)
    washout = 1.0 / (1.0 + w.rain / 3.0)
    road = 0.4 + 1.2 * c.const(1)  # how close to traffic the inlet is
    bias = 0.9 + 0.2 * c.const(2)  # sensor calibration
    no2 = (9.0 + 55.0 * f * road * dispersion) * bias + 2.0 * c.g(1)
    humid = max(0.0, w.humidity - 70.0) / 30.0  # optical PM over-reads in humid air
    pm25 = (5.0 + 16.0 * f * road * dispersion + 8.0 * humid) * washout * bias + 1.2 * c.g(2)
    pm25 = max(0.5, pm25)
    sunny = max(0.0, w.solar) / 900.0
    o3 = 12.0 + 55.0 * sunny * (0.6 + 0.4 * dispersion) - 0.25 * no2 + 2.0 * c.g(3)
    out: Values = {
        "pm2_5": pm25,
        "pm10": pm25 * (1.4 + 0.5 * c.const(3)) + 2.0 + abs(c.g(4)),
        "no2": no2,
        "o3": max(1.0, o3),
        "co": (0.15 + 0.9 * f * road * dispersion) * bias + 0.03 * c.g(5),
        "temperature": w.temperature + 0.8 * c.const(4) + 0.15 * c.g(6),
        "humidity": w.humidity + 4.0 * c.const(5) - 2.0 + 0.8 * c.g(7),
    }
    if c.const(6) < 0.5:
        out["pm1"] = pm25 * 0.72
    battery = _battery(c, powered_share=0.8)
    if battery is not None:
        out["battery"] = battery
    return out


def weather_model(c: Ctx) -> Values:
    w = c.w
    exposure = 0.6 + 0.7 * c.const(1)
    wind = max(0.0, w.wind * exposure + 0.6 * c.g(1))
    sun = max(0.0, w.sun)
    return {
        "temperature": w.temperature + 1.2 * c.const(2) - 0.6 + 0.1 * c.g(2),
        "humidity": w.humidity + 3.0 * c.const(3) - 1.5 + 0.5 * c.g(3),
        "pressure": w.pressure - 1.5 * c.const(4) + 0.1 * c.g(4),
        "wind_speed": wind,
        "wind_gust": wind * (1.3 + 0.4 * c.u(5)) + 0.5,
        "wind_dir": (w.wind_dir + 20.0 * c.g(6)) % 360.0,
        "rain_rate": max(0.0, w.rain * (0.8 + 0.4 * c.u(7))),
        "solar_radiation": max(0.0, w.solar * (0.95 + 0.1 * c.u(8))),
        "uv_index": 9.0 * sun**1.8 * (1.0 - 0.7 * w.cloud),
    }


@functools.lru_cache(maxsize=4096)
def _storm_level(seed: int, t: int) -> float:
    """Water level response (m) to the storms of the last three days: rises for
    about six hours after the rain, then recedes."""
    tau = 6.0 * _HOUR
    block = math.floor(t / (6 * _HOUR))
    level = 0.0
    for b in range(block - 12, block + 1):
        if uniform(seed, _K_STORM, 4 * b) >= 0.1:
            continue
        start = b * 6 * _HOUR + uniform(seed, _K_STORM, 4 * b + 1) * 3 * _HOUR
        lag = t - start
        if lag <= 0:
            continue
        peak = 4.0 + 45.0 * uniform(seed, _K_STORM, 4 * b + 3) ** 2
        dur = 1.0 + 4.0 * uniform(seed, _K_STORM, 4 * b + 2)
        x = lag / tau
        level += (peak * dur / 60.0) * x * math.exp(1.0 - x)
    return level


def _water_level_at(c: Ctx, t: float) -> float:
    base = 0.4 + 2.6 * c.const(1)
    response = 0.3 + 1.4 * c.const(2)  # a small creek reacts more than a wide river
    doy = CityTime.at(t, 0.0).doy
    seasonal = 0.35 * math.cos(2.0 * math.pi * (doy - 60.0) / _YEAR_DAYS)  # high in late winter
    trend = 0.25 * smooth(c.seed, c.dev ^ 0x5A5A, t, 9 * _DAY)
    return base + seasonal + trend + response * _storm_level(c.seed, int(t))


def water_level_model(c: Ctx) -> Values:
    level = _water_level_at(c, c.t)
    trend = level - _water_level_at(c, c.t - _HOUR)
    season = 11.0 - 8.0 * math.cos(2.0 * math.pi * (c.ct.doy - 35.0) / _YEAR_DAYS)
    out: Values = {
        "level": level + 0.004 * c.g(1),
        "level_trend": trend,
        "water_temperature": season + 0.8 * math.cos(2.0 * math.pi * (c.ct.hour - 16.0) / 24.0),
    }
    battery = _battery(c, powered_share=0.3)
    if battery is not None:
        out["battery"] = battery
    return out


def _activity(t: float, utc_offset_h: float) -> float:
    """Cumulative bin-filling activity: its rate 1 - 0.6 cos(...) peaks mid-afternoon
    and never falls below 0.4, so the integral (this) only grows."""
    local = t + utc_offset_h * _HOUR
    return local - 0.6 * _DAY / (2.0 * math.pi) * math.sin(2.0 * math.pi * (local / _DAY - 14.0 / 24.0))


def waste_bin_model(c: Ctx, utc_offset_h: float) -> Values:
    period = (1.0 + math.floor(c.const(1) * 4.0)) * _DAY  # collected every 1-4 days
    phase = 6.0 * _HOUR + c.const(2) * 4.0 * _HOUR  # in the morning round
    k = math.floor((c.t - phase) / period)
    # Walk back over missed collections (a truck that did not come).
    misses = 0
    while misses < 6 and uniform(c.seed, c.dev ^ 0xB1B1, k) < 0.08:
        k -= 1
        misses += 1
    last = k * period + phase
    rate = (55.0 + 70.0 * c.const(3)) / period  # % per second of average activity
    fill = rate * (_activity(c.t, utc_offset_h) - _activity(last, utc_offset_h))
    fill = min(100.0, max(0.0, fill + 0.8 * c.g(1)))
    out: Values = {
        "fill_level": fill,
        "temperature": c.w.temperature + 1.5 + 3.0 * max(0.0, c.w.sun) + 0.3 * c.g(2),
        "tilt_alarm": c.u(3) < 0.002,
        "battery": _battery(c) or 50.0,
    }
    return out


def parking_model(c: Ctx) -> Values:
    h = c.ct.hour
    commercial = c.const(1) < 0.6
    if commercial:
        busy = math.exp(-(((h - 13.0) / 4.0) ** 2)) * (0.75 if c.ct.weekend else 1.0)
        p = 0.08 + 0.85 * busy
    else:  # residents park overnight and leave for work
        away = 0.0 if c.ct.weekend else math.exp(-(((h - 12.5) / 3.5) ** 2))
        p = 0.88 - 0.55 * away
    # A bay changes state rarely: keep one state per 20-minute slot.
    slot = math.floor(c.t / 1200.0)
    occupied = uniform(c.seed, c.dev ^ 0xCA12, slot) < p
    out: Values = {"occupied": occupied}
    if c.const(2) < 0.5:
        out["bay_id"] = f"bay-{int(c.const(3) * 9000) + 1000}"
    battery = _battery(c)
    if battery is not None:
        out["battery"] = battery
    return out


def street_light_model(c: Ctx) -> Values:
    threshold = -0.02 + 0.06 * c.const(1)  # photocell sensitivity
    on = c.w.sun < threshold
    h = c.ct.hour
    dim = (50.0 if 0.5 <= h < 5.0 else 100.0) if on else 0.0
    rated = 30.0 + 150.0 * c.const(2)
    faulty = c.const(3) < 0.01  # a few luminaires have a failed driver
    power = (rated * dim / 100.0 * (1.0 + 0.01 * c.g(1)) if on and not faulty else 0.4) + 0.05 * c.u(2)
    voltage = 230.0 + 3.0 * c.g(3)
    installed = 1.5e9 + c.const(4) * 2.0e8
    years_on = max(0.0, c.t - installed) / _DAY * 0.45 * 24.0  # lit ~45 % of the time, in hours
    lux = max(0.0, c.w.solar * 110.0 * (0.9 + 0.2 * c.u(4))) + (8.0 if on else 0.0)
    return {
        "lamp_on": on,
        "dim_level": dim,
        "power": power,
        "energy": rated / 1000.0 * years_on * 0.8,
        "voltage": voltage,
        "current": power / voltage,
        "ambient_light": lux,
        "lamp_fault": faulty and on,
    }


def generic_model(profile: DeviceProfile) -> Model:
    """For a profile this module has no model of: each field wanders smoothly within
    the middle of its range (booleans and strings get plausible constants)."""
    names = sorted(profile.fields)

    def model(c: Ctx) -> Values:
        out: Values = {}
        for i, name in enumerate(names):
            spec = profile.fields[name]
            if spec.type == "bool":
                out[name] = c.u(i) < 0.5
            elif spec.type == "string":
                out[name] = "sim"
            else:
                lo = spec.min if spec.min is not None else 0.0
                hi = spec.max if spec.max is not None else lo + 100.0
                mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
                out[name] = mid + 0.4 * half * smooth(c.seed, c.dev ^ i, c.t, _DAY) + 0.05 * half * c.g(i)
        return out

    return model


# -- the device signal ---------------------------------------------------------------


def _clamp_to(spec: FieldSpec, v: Value) -> Value | None:
    """Give ``v`` the field's type and range; None if it cannot be (dropped)."""
    if spec.type == "bool":
        return bool(v)
    if spec.type == "string":
        return v if isinstance(v, str) else None
    x = float(v)
    if not math.isfinite(x):
        return None
    if spec.min is not None:
        x = max(float(spec.min), x)
    if spec.max is not None:
        x = min(float(spec.max), x)
    if spec.type == "int":
        i = round(x)
        if spec.min is not None and i < spec.min:
            i = int(spec.min)
        if spec.max is not None and i > spec.max:
            i = int(spec.max)
        return i
    r = round(x, 3)
    if spec.min is not None and r < spec.min:
        r = float(spec.min)
    if spec.max is not None and r > spec.max:
        r = float(spec.max)
    return r


class DeviceSignal:
    """The signal of one device: ``values(ts_ms)`` gives the readings at that instant.

    Construction picks the model by profile name (an unknown profile gets the
    generic model) and precomputes the device key; ``values`` is then a pure
    function of (seed, device, ts_ms, interval).
    """

    __slots__ = (
        "_cache",
        "_model",
        "_profile",
        "_specs",
        "_weather",
        "device_id",
        "interval_s",
        "key",
        "seed",
    )

    def __init__(
        self,
        device_id: str,
        profile: DeviceProfile,
        *,
        seed: int,
        interval_s: float,
        weather: WeatherCache | None = None,
        utc_offset_h: float = 1.0,
    ) -> None:
        self.device_id = device_id
        self.seed = seed
        self.key = device_key(device_id)
        self.interval_s = interval_s
        self._profile = profile
        self._specs = profile.fields
        self._weather = weather if weather is not None else WeatherCache(seed, utc_offset_h)
        self._model = _model_for(profile, self._weather.utc_offset_h)
        self._cache: dict[int, float | int] = {}

    @property
    def profile(self) -> DeviceProfile:
        return self._profile

    def values(self, ts_ms: int) -> Values:
        t = ts_ms / 1000.0
        w = self._weather
        ctx = Ctx(
            seed=self.seed,
            dev=self.key,
            t=t,
            n=ts_ms,
            interval_s=self.interval_s,
            ct=CityTime.at(t, w.utc_offset_h),
            w=w.at(t),
            cache=self._cache,
        )
        raw = self._model(ctx)
        out: Values = {}
        specs = self._specs
        for name, v in raw.items():
            spec = specs.get(name)
            if spec is None:
                continue
            c = _clamp_to(spec, v)
            if c is not None:
                out[name] = c
        for name, spec in specs.items():
            if spec.required and name not in out:
                fallback = generic_model(self._profile)(ctx).get(name)
                if fallback is not None:
                    c = _clamp_to(spec, fallback)
                    if c is not None:
                        out[name] = c
        return out


def _model_for(profile: DeviceProfile, utc_offset_h: float) -> Model:
    models: dict[str, Model] = {
        "air_quality": air_quality_model,
        "noise": noise_model,
        "traffic_counter": traffic_model,
        "weather": weather_model,
        "water_level": water_level_model,
        "parking": parking_model,
        "street_light": street_light_model,
        "waste_bin": lambda c: waste_bin_model(c, utc_offset_h),
    }
    return models.get(profile.name) or generic_model(profile)
