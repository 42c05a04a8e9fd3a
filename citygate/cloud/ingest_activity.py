"""Whether ingest is busy, and whether it is loaded: what the rules' evaluator in the same
process defers its checkpoint to, and yields the interpreter lock to.

A gateway posts batch after batch; between two of its requests none is in flight, yet
ingest is anything but idle. Counting only the requests in flight, the evaluator took
each such gap for quiet and saved its checkpoint there: seconds of pure Python under the
interpreter lock in the middle of a burst (bench/RESULTS.md, "Ingest before the rules").
So ingest counts as busy until ``quiet_s`` after its last request ended.

Busy is not loaded. At a city's steady 5,000 readings/s ingest is always busy yet uses a
few per cent of the interpreter; an evaluator held to a twentieth of the time whenever
ingest was busy starved there, and cases opened half a minute late (bench/RESULTS.md, "The
evaluator starved"). So the requests report the CPU time their threads spent (``load``, per
second, averaged over about a second), and the evaluator's share of the time falls with it:
all of it at no load, ``min_share`` from ``full_load`` on. Not a threshold: an evaluator
running freely slows ingest's threads (each waits for the lock after its I/O), which keeps
their load below any threshold; a share that falls as the load rises settles.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from citygate.service.machine_load import falling_share

P = ParamSpec("P")
T = TypeVar("T")

LOAD_WINDOW_S = 1.0  # the time constant of the load's moving average


class IngestActivity:
    """Requests begin and end on the event loop; ``busy`` is read from the evaluator's thread
    (an int and a float, each written whole: no lock needed). ``spent`` is called from the
    request's worker threads, so the load it adds up takes a lock."""

    def __init__(
        self,
        quiet_s: float,
        *,
        full_load: float = 0.0,
        min_share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet_s = quiet_s
        self.full_load = full_load
        self.min_share = min_share
        self._clock = clock
        self.in_flight = 0
        self._last_end = float("-inf")
        self._lock = threading.Lock()
        self._load = 0.0  # CPU seconds per second, decayed to ``_load_at``
        self._load_at = clock()

    def begin(self) -> None:
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1
        self._last_end = self._clock()

    def busy(self) -> bool:
        return self.in_flight > 0 or self._clock() - self._last_end < self.quiet_s

    def spent(self, cpu_s: float) -> None:
        """A request's thread spent ``cpu_s`` of CPU time on ingest."""
        with self._lock:
            self._load = self._decayed() + cpu_s / LOAD_WINDOW_S

    def load(self) -> float:
        """Ingest's CPU time per second of late (an exponential moving average)."""
        with self._lock:
            return self._decayed()

    def _decayed(self) -> float:
        now = self._clock()
        self._load *= math.exp(-max(0.0, now - self._load_at) / LOAD_WINDOW_S)
        self._load_at = now
        return self._load

    def evaluator_share(self) -> float:
        """The share of the time the evaluator may take now: 1 while ingest is not busy, else
        falling linearly with the load from 1 to ``min_share`` at ``full_load``."""
        if not self.busy():
            return 1.0
        return falling_share(self.load(), self.full_load, self.min_share)

    def timed(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, its thread's CPU time counted as ingest's."""
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            self.spent(time.thread_time() - t0)
