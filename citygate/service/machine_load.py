"""How much of the machine's CPU the other processes use: what the rules' evaluator in
`citygate service run` yields to.

In its own process the evaluator shares no interpreter lock with ingest, but on a small
machine it shares the cores with the cloud, InfluxDB and the store. Niceness does not keep it
out of their way: it runs in every gap the others leave, and on shared hardware those gaps are
not free. A busy loop at nice 19 beside the cloud cut ingest by about 28 % on the bench's two
cores, and the workers at nice 10 or 19 alike held ingest with the rules on to 0.72 of the
rate without them, against 0.90 with the workers stopped during the burst (bench/RESULTS.md,
"The workers in their own process"). So the evaluator measures what the rest of the machine
uses (all busy CPU time but its own process's, as a share of all the cores) and takes a share
of the time that falls with it, as the evaluator in the cloud's process does with ingest's
load (citygate/cloud/ingest_activity.py): all of the time while the others leave the machine
idle, ``min_share`` once they use ``full_load`` of it. On a machine with cores to spare the
others never come near ``full_load``, and the evaluator runs freely.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import psutil

SAMPLE_S = 0.2  # the shortest interval between two readings of the CPU counters
LOAD_WINDOW_S = 1.0  # the time constant of the load's moving average


def falling_share(load: float, full_load: float, min_share: float) -> float:
    """The evaluator's share of the time under a load: falling linearly from 1 at none to
    ``min_share`` at ``full_load`` and above. The rule for both the machine's load here and
    ingest's load in the cloud's process (citygate/cloud/ingest_activity.py)."""
    if full_load <= 0:
        return min_share
    return max(min_share, 1.0 - load / full_load)


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (not idle, waiting for I/O, or stolen
    by the hypervisor for other machines)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


class MachineLoad:
    """Read from one thread (the evaluator's): no lock."""

    def __init__(
        self,
        *,
        full_load: float,
        min_share: float,
        busy_s: Callable[[], float] = machine_busy_s,
        own_s: Callable[[], float] = time.process_time,
        cpus: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_load = full_load
        self.min_share = min_share
        self._busy_s = busy_s
        self._own_s = own_s
        self._cpus = cpus or psutil.cpu_count() or 1
        self._clock = clock
        self._load = 0.0
        self._at = clock()
        self._others_at = busy_s() - own_s()

    def others(self) -> float:
        """The share of the machine's CPU time the other processes used of late (0 to 1; an
        exponential moving average)."""
        now = self._clock()
        dt = now - self._at
        if dt >= SAMPLE_S:
            others_s = self._busy_s() - self._own_s()
            used = min(1.0, max(0.0, (others_s - self._others_at) / (dt * self._cpus)))
            keep = math.exp(-dt / LOAD_WINDOW_S)
            self._load = self._load * keep + used * (1.0 - keep)
            self._at, self._others_at = now, others_s
        return self._load

    def evaluator_share(self) -> float:
        """The share of the time the evaluator may take now (:func:`falling_share` of the
        others' load)."""
        return falling_share(self.others(), self.full_load, self.min_share)
