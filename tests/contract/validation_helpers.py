"""What the validation tests share: the clock, the devices and their profiles, payload builders."""

from __future__ import annotations

import orjson

from citygate.contract.readings import Rejection, RejectReason

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
NOW = NOW_MS * 1_000_000
NOW_S = NOW_MS // 1000

AQ = {"pm2_5": 12.5, "pm10": 20.1, "no2": 14.2, "o3": 30.0, "co": 0.4, "temperature": 18.2, "humidity": 55.0}

DEVICES = {
    "aq-1": "air_quality",
    "tc-1": "traffic_counter",
    "pk-1": "parking",
    "wb-1": "waste_bin",
    "sl-1": "street_light",
    "we-1": "weather",
    "wl-1": "water_level",
    "nz-1": "noise",
}


def j(obj) -> bytes:
    return orjson.dumps(obj)


def aq(**readings) -> bytes:
    return j({"ts": NOW_MS, "seq": 7, "readings": {**AQ, **readings}})


def rejected(result, reason: RejectReason, *needles: str, field: str | None = None) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result
    for n in needles:
        assert n in result.detail, (n, result.detail)
    if field is not None:
        assert result.field == field, result
    return result
