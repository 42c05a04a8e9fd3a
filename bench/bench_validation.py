"""Throughput of payload validation, against bare orjson.loads as the baseline.

Run: .venv/bin/python bench/bench_validation.py [--n 200000] [--runs 5]

Builds an inventory of 1,000 devices spread over every packaged profile,
generates realistic payloads for them (JSON form, a share as SenML, and 10 %
invalid ones of many kinds), then measures ``Validator.validate`` on the raw
bytes and ``orjson.loads`` on the same bytes, best of ``--runs``. The ratio
says how much of the parser's speed the validation keeps; one core.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections import Counter
from collections.abc import Callable

import orjson

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import DeviceProfile, FieldSpec, ProfileRegistry
from citygate.contract.readings import Reading
from citygate.contract.validation import Validator

N_DEVICES = 1000


def realistic_value(rng: random.Random, name: str, spec: FieldSpec):
    """A plausible value: the lower part of the valid range, sensor-like rounding."""
    if spec.type == "bool":
        return rng.random() < 0.3
    if spec.type == "string":
        return f"B-{rng.randint(1, 400):03d}"
    lo = spec.min if spec.min is not None else 0
    hi = spec.max if spec.max is not None else 1000
    span = (hi - lo) * (0.3 if name not in ("level", "temperature", "water_temperature") else 0.5)
    if spec.type == "int":
        return rng.randint(int(lo), int(lo + span))
    x = round(rng.uniform(lo, lo + span), rng.choice((1, 1, 2)))
    # Some firmware prints whole numbers without a decimal point (valid: becomes float).
    return int(x) if rng.random() < 0.05 else x


def valid_readings(rng: random.Random, profile: DeviceProfile) -> dict:
    out = {}
    for name, spec in profile.fields.items():
        if spec.required or rng.random() < 0.5:
            out[name] = realistic_value(rng, name, spec)
    return out


def as_senml(device_id: str, profile: DeviceProfile, ts_ms: int, seq: int, readings: dict) -> bytes:
    records: list[dict] = []
    for i, (name, value) in enumerate(readings.items()):
        rec: dict = {"n": name}
        if i == 0:
            rec.update({"bn": f"urn:dev:{device_id}:", "bt": ts_ms / 1000, "seq": seq})
        unit = profile.fields[name].unit
        if isinstance(value, bool):
            rec["vb"] = value
        elif isinstance(value, str):
            rec["vs"] = value
        else:
            rec["v"] = value
            if unit:
                rec["u"] = unit
        records.append(rec)
    return orjson.dumps(records)


def invalid_payload(
    rng: random.Random, profile: DeviceProfile, ts_ms: int, readings: dict
) -> tuple[bytes, bool]:
    """A payload with one realistic fault; second item True means: send from an unknown device."""
    kind = rng.randrange(9)
    numeric = [n for n, f in profile.fields.items() if f.type in ("float", "int") and n in readings]
    r = dict(readings)
    if kind == 0:
        return orjson.dumps({"ts": ts_ms, "readings": r})[:-7], False  # truncated
    if kind == 1 and numeric:
        text = orjson.dumps({"ts": ts_ms, "readings": r}).decode()
        return text.replace(f'"{numeric[0]}":', f'"{numeric[0]}":NaN,"_":', 1).encode(), False
    if kind == 2 and numeric:
        f = profile.fields[numeric[0]]
        r[numeric[0]] = (f.max or 0) * 10 + 1
    elif kind == 3 and numeric:
        r[numeric[0]] = str(r[numeric[0]])
    elif kind == 4:
        r["firmware"] = "1.2.3"
    elif kind == 5 and profile.required_fields:
        r.pop(profile.required_fields[0], None)
    elif kind == 6:
        return orjson.dumps({"ts": ts_ms + 3_600_000, "readings": r}), False
    elif kind == 7:
        return orjson.dumps({"ts": ts_ms // 1000, "readings": r}), False  # epoch seconds by mistake
    else:
        return orjson.dumps({"ts": ts_ms, "readings": r}), True
    return orjson.dumps({"ts": ts_ms, "readings": r}), False


def build(n: int, seed: int, invalid_share: float, senml_share: float):
    rng = random.Random(seed)
    registry = ProfileRegistry()
    profiles = list(registry)
    records = [
        DeviceRecord(
            device_id=f"{profiles[i % len(profiles)].name.replace('_', '-')}-{i:04d}",
            profile=profiles[i % len(profiles)].name,
            profile_version=profiles[i % len(profiles)].version,
        )
        for i in range(N_DEVICES)
    ]
    inventory = Inventory().with_devices(*records)
    by_name = {p.name: p for p in profiles}
    now_ms = time.time_ns() // 1_000_000
    seqs: Counter[str] = Counter()
    items: list[tuple[str, bytes]] = []
    for i in range(n):
        rec = records[i % N_DEVICES]
        profile = by_name[rec.profile]
        seqs[rec.device_id] += 1
        seq = seqs[rec.device_id]
        ts_ms = now_ms - rng.randint(0, 60_000)
        readings = valid_readings(rng, profile)
        roll = rng.random()
        if roll < invalid_share:
            raw, unknown = invalid_payload(rng, profile, ts_ms, readings)
            items.append((f"rogue-{i}" if unknown else rec.device_id, raw))
        elif roll < invalid_share + senml_share:
            items.append((rec.device_id, as_senml(rec.device_id, profile, ts_ms, seq, readings)))
        else:
            items.append((rec.device_id, orjson.dumps({"ts": ts_ms, "seq": seq, "readings": readings})))
    return Validator(registry, inventory), items


def best_rate(fn: Callable[[], None], n: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--invalid-share", type=float, default=0.10)
    ap.add_argument("--senml-share", type=float, default=0.10)
    args = ap.parse_args()

    validator, items = build(args.n, args.seed, args.invalid_share, args.senml_share)
    validate = validator.validate
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError

    outcome: Counter[str] = Counter()
    for device_id, raw in items:  # warm the caches, count outcomes
        res = validate(device_id, raw)
        outcome["accepted" if isinstance(res, Reading) else res.reason.value] += 1

    def run_validate() -> None:
        for device_id, raw in items:
            validate(device_id, raw)

    def run_loads() -> None:
        for _device_id, raw in items:
            try:  # noqa: SIM105 - contextlib.suppress would add its own cost to the baseline
                loads(raw)
            except decode_error:
                pass

    v_rate = best_rate(run_validate, len(items), args.runs)
    l_rate = best_rate(run_loads, len(items), args.runs)
    mean_bytes = sum(len(raw) for _, raw in items) / len(items)
    rejected = {k: c for k, c in sorted(outcome.items()) if k != "accepted"}

    print(
        f"payloads: {len(items)} from {N_DEVICES} devices over {len(validator.registry)} profiles, "
        f"mean {mean_bytes:.0f} bytes; {args.invalid_share:.0%} invalid, {args.senml_share:.0%} SenML"
    )
    print(f"outcome: accepted {outcome['accepted']}, rejected {sum(rejected.values())} {rejected}")
    print(f"Validator.validate : {v_rate:12,.0f} readings/s  (best of {args.runs})")
    print(f"orjson.loads       : {l_rate:12,.0f} payloads/s  (best of {args.runs})")
    print(f"ratio validate/loads: {v_rate / l_rate:.3f}")
    print(
        orjson.dumps(
            {
                "bench": "validation",
                "payloads": len(items),
                "devices": N_DEVICES,
                "runs": args.runs,
                "mean_payload_bytes": round(mean_bytes, 1),
                "invalid_share": args.invalid_share,
                "senml_share": args.senml_share,
                "accepted": outcome["accepted"],
                "rejected": rejected,
                "validate_per_s": round(v_rate),
                "orjson_loads_per_s": round(l_rate),
                "ratio": round(v_rate / l_rate, 4),
                "python": platform.python_version(),
                "orjson": orjson.__version__,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
