"""The gateway -> cloud wire contract: ingest batches, their answers, heartbeats.

``POST /v1/ingest`` carries a gzip JSON :class:`IngestBatch`. Each reading is in
the device payload form (``ts``, ``seq``, ``readings``) plus ``device_id``, so
the cloud re-validates it with the very function the gateway used
(:meth:`citygate.contract.validation.Validator.validate_obj`) and trusts no
gateway's validation. ``ts`` is epoch milliseconds when the time is a whole
millisecond, else an RFC 3339 string with nanoseconds, so no precision is lost
on the way.

Each reading also carries ``received_ms``, when the gateway received it (its
trusted clock, epoch ms): the cloud judges a reading's age against that, not
against when the batch arrives, so a reading fresh at the gateway stays good
however long the gateway buffered it (within the cloud's ``max_buffered_s``).

The answer (:class:`IngestResult`) names every rejected reading by its index
in the batch, with the reason, and carries the cloud's ``contract_version``
(a digest of its inventory and profiles). A refusal the gateway would also
have made is final (dead-lettered); any other is held in the gateway's outbox
and retried, at once when ``contract_version`` changes (docs/GATEWAY.md,
"Held readings"). The batch is deleted from the outbox only on a 2xx. 503 and
429 come with ``Retry-After``.

The gateway writes the bodies by hand (:func:`wire_body`, :func:`batch_body`), not
through the models: it encodes every reading it stores, and the model costs several
times more. tests/contract/test_wire_forms.py holds the hand-written forms to the
models' serialisation.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from citygate.contract.ids import MAX_ID_LENGTH
from citygate.contract.readings import Reading, Value
from citygate.contract.rfc3339 import format_rfc3339_ns

# Defaults the cloud enforces (configurable there); the gateway keeps its batches under them.
MAX_BATCH_READINGS = 5_000
MAX_BODY_BYTES = 4 * 1024 * 1024  # compressed, as received
MAX_DECOMPRESSED_BYTES = 32 * 1024 * 1024  # a zip bomb stops here

INGEST_PATH = "/v1/ingest"
HEARTBEAT_PATH = "/v1/gateways/{gateway_id}/heartbeat"

# The batch id rule: the model states it (min/max length and a pattern, as its JSON Schema
# shows); the cloud's hand-written batch check (cloud/ingest.py) fullmatches BATCH_ID_RE.
MAX_BATCH_ID_LENGTH: Final = 64
_BATCH_ID_CHAR: Final = "[A-Za-z0-9._:-]"
BATCH_ID_RE: Final = re.compile(f"{_BATCH_ID_CHAR}{{1,{MAX_BATCH_ID_LENGTH}}}")

# Reasons the cloud gives beside citygate.contract.readings.RejectReason's.
WRITE_REJECTED = "write_rejected"  # the database refused the point
RECEIVED_IN_FUTURE = "received_in_future"  # received_ms ahead of the cloud's clock
RECEIVED_TOO_OLD = "received_too_old"  # buffered at the gateway longer than max_buffered_s
NOT_ASSIGNED = "not_assigned"  # the device is not assigned to the calling gateway


def ts_to_wire(ts_ns: int) -> int | str:
    """Epoch ms when exact, else RFC 3339 with nanoseconds (UTC)."""
    ms, rest = divmod(ts_ns, 1_000_000)
    if rest == 0:
        return ms
    return format_rfc3339_ns(ts_ns)


class WireReading(BaseModel):
    """One reading in a batch: the device payload form plus the device id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
    ts: int | str
    seq: int | None = None
    readings: dict[str, Value]
    # When the gateway received it (epoch ms, the gateway's trusted clock); absent from
    # gateways older than this field, and then the batch's arrival stands in.
    received_ms: int | None = None


class IngestBatch(BaseModel):
    """The body of ``POST /v1/ingest`` (before gzip)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: Annotated[
        str, Field(min_length=1, max_length=MAX_BATCH_ID_LENGTH, pattern=f"^{_BATCH_ID_CHAR}+$")
    ]
    readings: Annotated[list[WireReading], Field(max_length=MAX_BATCH_READINGS)]


def stored_body(r: Reading) -> bytes:
    """What the gateway's outbox stores of ``r``'s wire form: ts, seq and readings. The device id
    and the receive time are columns of their own there; :func:`wire_from_stored` puts them
    back. A quarter fewer bytes per row: fewer flash writes, a longer backlog in the same room."""
    return orjson.dumps({"ts": ts_to_wire(r.ts_ns), "seq": r.seq, "readings": r.values})


_WHOLE = b'{"device_id":'


def wire_from_stored(device_id: str, received_ns: int, stored: bytes) -> bytes:
    """The :class:`WireReading` JSON of a stored reading (a row stored whole, as outboxes before
    schema 4 did, is already that)."""
    if stored.startswith(_WHOLE):
        return stored
    return b"".join(
        (
            _WHOLE,
            orjson.dumps(device_id),
            b",",
            stored[1:-1],
            b',"received_ms":',
            b"%d}" % (received_ns // 1_000_000),
        )
    )


def wire_body(r: Reading, received_ns: int) -> bytes:
    """``r`` received at ``received_ns``, as :class:`WireReading` serialises it."""
    return wire_from_stored(r.device_id, received_ns, stored_body(r))


def batch_body(batch_id: str, bodies: list[bytes]) -> bytes:
    """The :class:`IngestBatch` of readings already in their wire form (no re-encoding)."""
    return b'{"batch_id":' + orjson.dumps(batch_id) + b',"readings":[' + b",".join(bodies) + b"]}"


class RejectedReading(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    device_id: str
    reason: str  # a citygate.contract.readings.RejectReason value, or one of the constants above
    detail: str


class IngestResult(BaseModel):
    """The 200 answer: written means durably confirmed by the database."""

    model_config = ConfigDict(frozen=True)

    batch_id: str
    gateway_id: str
    accepted: int
    rejected: list[RejectedReading] = []
    # Changes whenever the cloud's inventory or profiles change: the gateway then retries
    # the readings it holds for a refusal it did not foresee.
    contract_version: str | None = None


class HeartbeatAnswer(BaseModel):
    """The 200 answer to a heartbeat (``contract_version`` as in :class:`IngestResult`)."""

    model_config = ConfigDict(frozen=True)

    gateway_id: str
    stored: bool
    contract_version: str | None = None


class GatewayHealth(BaseModel):
    """The body of a heartbeat; the same numbers the gateway shows on /metrics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_version: str
    uptime_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    readings_in: Annotated[int, Field(ge=0)]
    readings_out: Annotated[int, Field(ge=0)]
    rejected: dict[str, Annotated[int, Field(ge=0)]] = {}
    dropped: dict[str, Annotated[int, Field(ge=0)]] = {}
    outbox_depth: Annotated[int, Field(ge=0)]
    outbox_bytes: Annotated[int, Field(ge=0)]
    # Readings the cloud refused for a reason the gateway did not foresee, held by reason.
    held: dict[str, Annotated[int, Field(ge=0)]] = {}
    oldest_held_age_s: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    oldest_unsent_age_s: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    last_forward_at: dt.datetime | None = None
    disk_free_bytes: Annotated[int, Field(ge=0)]
    rss_bytes: Annotated[int, Field(ge=0)]
    cpu_percent: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    broker_connected: bool
    cert_days_left: Annotated[float, Field(allow_inf_nan=False)]
    # The gateway's clock minus the cloud's (from HTTP Date), None before the first answer.
    clock_offset_s: Annotated[float | None, Field(allow_inf_nan=False)] = None
