"""Whether a worker thread still makes progress, not only whether it exists.

``Thread.is_alive()`` is true for a thread that is stuck: in a deadlock, or in a
write to storage that never returns. Such a thread is alive and does nothing,
and a watchdog that asks only ``is_alive()`` keeps the agent running while no
reading moves (a deadlock in the intake did exactly that). So each worker
promises, before each step that may wait, when it will be back
(:meth:`Deadline.within`); the agent is unhealthy once a promise is overdue by
more than the configured grace, and systemd's watchdog restarts it. A restart
loses nothing: what the outbox committed survives it, and what it has not, the
broker or the device still holds.

Each worker thread holds one (:class:`citygate.gateway.worker.Worker`); the agent asks
the worker, not its thread, whether it is alive and keeping its promises.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Deadline:
    __slots__ = ("_clock", "_due")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due = math.inf  # not started: nothing promised yet

    def within(self, seconds: float) -> None:
        """The worker will pass its checkpoint again within ``seconds``."""
        self._due = self._clock() + seconds

    def done(self) -> None:
        """The worker has stopped on purpose: no promise to keep."""
        self._due = math.inf

    def overdue_s(self) -> float:
        """How long the last promise has been broken (0 if it has not)."""
        return max(0.0, self._clock() - self._due)
