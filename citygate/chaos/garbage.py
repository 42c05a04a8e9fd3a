"""Payloads that must be refused: bad documents, bytes, bombs and headers, for the fuzz scenario."""

from __future__ import annotations

import gzip
import random
import time
import zlib
from collections.abc import Callable, Iterator

import orjson

MB = 1024 * 1024


def json_garbage(rng: random.Random, now_ms: int) -> object:
    """A payload document that must be refused: wrong shapes, types, ranges, times, fields."""
    good: dict[str, object] = {
        "ts": now_ms,
        "seq": rng.randrange(10**6),
        "readings": {"laeq": 55.0, "lamax": 70.0},
    }
    choices: list[Callable[[], object]] = [
        lambda: good | {"readings": {"laeq": rng.choice(["loud", True, None, [], {}, [55.0], {"v": 1}])}},
        lambda: good | {"readings": {"laeq": rng.choice([1e6, -5.0, 141.0, 19.99, 2**64 - 1])}},
        lambda: good | {"readings": {"laeq": 55.0, "lamax": 70.0, f"evil{rng.randrange(99)}": 1.0}},
        lambda: good | {"readings": {"lamax": 70.0}},  # a required field missing
        lambda: good | {"readings": rng.choice([[], "x", 5, None, True])},
        lambda: good | {"seq": rng.choice(["1", -1, 2**64 - 1, 1.5, [], {}, True])},
        lambda: good | {"ts": rng.choice(["yesterday", [], {}, True, 1e30, -1, "2024-13-45T99:00:00Z"])},
        lambda: good | {"ts": now_ms + rng.choice([86_400_000, 10**12])},  # the future
        lambda: good | {"ts": rng.choice([0, 1000, now_ms - 400 * 86_400_000])},  # long ago
        lambda: good | {"device_id": "someone-else"},
        lambda: rng.choice([None, 0, "str", [], {}, [1, 2], True, 1.5]),
        lambda: [{"n": "laeq", "v": rng.choice(["x", None, [], 1e6])}],  # SenML, bad
        lambda: [{"bn": 5}, {"n": 7}],
        lambda: {"readings": {"laeq": [[[[55.0]]]]}},
    ]
    return rng.choice(choices)()


def mqtt_garbage(rng: random.Random, n: int, huge: list[int]) -> list[tuple[str, bytes]]:
    """(kind, payload): every kind of bad payload a device could send on its own topic."""
    now_ms = time.time_ns() // 1_000_000
    fixed: list[tuple[str, bytes]] = [
        ("nested arrays", b"[" * 4000 + b"]" * 4000),
        ("nested objects", b'{"a":' * 1500 + b"1" + b"}" * 1500),
        ("nested readings", b'{"ts":%d,"seq":1,"readings":{"laeq":%s}}' % (now_ms, b"[" * 200 + b"]" * 200)),
        ("NaN", b'{"ts":%d,"seq":2,"readings":{"laeq":NaN,"lamax":70.0}}' % now_ms),
        ("Infinity", b'{"ts":%d,"seq":3,"readings":{"laeq":Infinity,"lamax":70.0}}' % now_ms),
        ("-Infinity", b'{"ts":%d,"seq":4,"readings":{"laeq":-Infinity,"lamax":70.0}}' % now_ms),
        ("1e999", b'{"ts":%d,"seq":5,"readings":{"laeq":1e999,"lamax":70.0}}' % now_ms),
        ("invalid UTF-8 value", b'{"ts":%d,"seq":6,"readings":{"laeq":"\xff\xfe","lamax":70.0}}' % now_ms),
        ("invalid UTF-8 key", b'{"ts":%d,"seq":7,"readings":{"\xc3\x28":55.0,"lamax":70.0}}' % now_ms),
        ("empty", b""),
        ("null", b"null"),
        ("truncated", b'{"ts":%d,"seq":8,"readings":{"laeq":5' % now_ms),
        ("BOM", b'\xef\xbb\xbf{"ts":1,"seq":9}'),
    ]
    out = list(fixed)
    for size in huge:
        out.append((f"huge {size // 1024} KiB", b'{"ts":1,"seq":1,"readings":{"laeq":' + b"1" * size + b"}}"))
    while len(out) < n:
        kind = rng.random()
        if kind < 0.25:
            out.append(("random bytes", rng.randbytes(rng.randrange(1, 3000))))
        elif kind < 0.35:
            blob = bytearray(orjson.dumps(json_garbage(rng, now_ms)))
            for _ in range(rng.randrange(1, 4)):  # flip a few bytes
                if blob:
                    blob[rng.randrange(len(blob))] = rng.randrange(256)
            out.append(("mutated JSON", bytes(blob)))
        else:
            out.append(("bad document", orjson.dumps(json_garbage(rng, now_ms))))
    return out


def cloud_garbage(rng: random.Random, n: int, bomb_bytes: int) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(kind, body, headers) for POST /v1/ingest: garbage bodies, bombs, bad headers."""
    gz = {"Content-Encoding": "gzip"}
    now_ms = time.time_ns() // 1_000_000
    zeros = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * MB
    bomb = b"".join(zeros.compress(chunk) for _ in range(bomb_bytes // MB)) + zeros.flush()
    yield f"gzip bomb ({bomb_bytes // MB} MiB of zeros)", bomb, gz
    for name, unit in (("[]", b"[],"), ("{}", b"{},"), ("1.5", b"1.5,")):
        k = (30 * MB) // len(unit)
        doc = b'{"batch_id":"bomb","readings":[' + unit * k + b"0]}"
        yield f"gzip JSON bomb ({k:,} x {name})", gzip.compress(doc, 6), gz
    yield "gzip of gzip", gzip.compress(gzip.compress(b'{"batch_id":"x","readings":[]}')), gz
    yield "deeply nested", b"[" * 200_000 + b"]" * 200_000, {}
    yield "NaN", b'{"batch_id":"n","readings":[{"device_id":"fuzz-0001","ts":1,"readings":{"laeq":NaN}}]}', {}
    yield "5 MiB identity", rng.randbytes(5 * MB), {}
    yield "too many readings", gzip.compress(b'{"batch_id":"many","readings":[' + b"{}," * 6000 + b"{}]}"), gz
    for enc in ("br", "deflate", "gzip, gzip", "x" * 2000, "compress", "GZIP"):
        yield (
            f"Content-Encoding {enc[:12]!r}",
            gzip.compress(b'{"batch_id":"e","readings":[]}'),
            {"Content-Encoding": enc},
        )
    yield "wrong content type", b'{"batch_id":"t","readings":[]}', {"Content-Type": "text/html"}
    yield "bad batch id", b'{"batch_id":"../../etc/passwd","readings":[]}', {}
    devices = ["fuzz-0001", "sim-00001", "nobody", "", "victim/../x", "a" * 300]
    while n > 0:
        n -= 1
        r = rng.random()
        if r < 0.2:
            yield "random bytes", rng.randbytes(rng.randrange(0, 4000)), rng.choice([{}, gz])
        elif r < 0.3:
            yield "gzip of random bytes", gzip.compress(rng.randbytes(rng.randrange(0, 4000))), gz
        else:
            readings: list[object] = []
            for _ in range(rng.randrange(1, 40)):
                item = json_garbage(rng, now_ms)
                if isinstance(item, dict) and "device_id" not in item:
                    item["device_id"] = rng.choice(devices)
                readings.append(item)
            yield (
                "garbage readings",
                gzip.compress(orjson.dumps({"batch_id": f"f{n}", "readings": readings})),
                gz,
            )
