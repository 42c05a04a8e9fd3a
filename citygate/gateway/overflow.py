"""The outbox's overflow policy: its own module so the settings and the outbox limits can
both name it without importing each other."""

from __future__ import annotations

from enum import StrEnum


class OverflowPolicy(StrEnum):
    """What happens to a new reading when the outbox is at a bound.

    ``drop_oldest``: delete the oldest unsent readings to make room (counted as
    ``dropped.overflow_oldest``); fresh data keeps flowing.
    ``refuse_new``: keep what is stored, refuse the new reading (counted as
    ``dropped.outbox_full``); it is not confirmed end to end, so a device that
    keeps unconfirmed readings resends it later.
    """

    DROP_OLDEST = "drop_oldest"
    REFUSE_NEW = "refuse_new"
