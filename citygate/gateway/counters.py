"""Names of the outbox's counters: one spelling for the outbox that writes them and the
health snapshot that reads them.

A counter is a plain name (``readings_in``) or a kind and a reason (``rejected.out_of_range``,
``dropped.max_age``); the health snapshot reports each kind as a mapping of reason to count.
"""

from __future__ import annotations

from collections.abc import Mapping

READINGS_IN = "readings_in"
READINGS_OUT = "readings_out"
FORWARDED_BATCHES = "forwarded_batches"
HELD_STORED = "held_stored"
OUTBOX_RECOVERED = "outbox_recovered"

# Kinds of counter that carry a reason after the separator.
_SEPARATOR = "."
REJECTED = "rejected"  # dead-lettered: the reading is final and wrong
DROPPED = "dropped"  # lost to a bound or an operator, counted by why
HELD_IN = "held_in"  # moved to the held table, by the cloud's reason

# The reasons a reading is dropped (docs/GATEWAY.md, "Bounds").
OVERFLOW_OLDEST = "overflow_oldest"
OUTBOX_FULL = "outbox_full"
MAX_AGE = "max_age"
OPERATOR_DISCARDED = "operator_discarded"


def _named(kind: str, reason: str) -> str:
    return f"{kind}{_SEPARATOR}{reason}"


def rejected(reason: str) -> str:
    return _named(REJECTED, reason)


def dropped(reason: str) -> str:
    return _named(DROPPED, reason)


def held_in(reason: str) -> str:
    return _named(HELD_IN, reason)


def is_rejected(name: str) -> bool:
    return name.startswith(REJECTED + _SEPARATOR)


def by_reason(counters: Mapping[str, int], kind: str) -> dict[str, int]:
    """The counters of one kind, keyed by their reason."""
    prefix = kind + _SEPARATOR
    return {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)}


def split_counters(counters: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(rejected, dropped), each keyed by reason."""
    return by_reason(counters, REJECTED), by_reason(counters, DROPPED)
