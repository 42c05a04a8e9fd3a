"""Whether ingest is busy: what the rules' evaluator in the same process yields to.

A gateway posts batch after batch; between two of its requests none is in flight, yet
ingest is anything but idle. Counting only the requests in flight, the evaluator took
each such gap for quiet and saved its checkpoint there: seconds of pure Python under the
interpreter lock in the middle of a burst (bench/RESULTS.md, "Ingest before the rules").
So ingest counts as busy until ``quiet_s`` after its last request ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class IngestActivity:
    """Requests begin and end on the event loop; ``busy`` is read from the evaluator's thread
    (an int and a float, each written whole: no lock needed)."""

    def __init__(self, quiet_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self._clock = clock
        self.in_flight = 0
        self._last_end = float("-inf")

    def begin(self) -> None:
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1
        self._last_end = self._clock()

    def busy(self) -> bool:
        return self.in_flight > 0 or self._clock() - self._last_end < self.quiet_s
