"""One base for the gateway's worker threads (pipeline, forwarder, heartbeat).

Each worker is a daemon thread with a liveness :class:`~citygate.gateway.liveness.Deadline`:
the worker promises, before each step that may wait, when it will be back, and the agent
asks :meth:`Worker.stalled` (dead, or past its promise by more than a grace) instead of
reading the thread. Stopping sets an event the loop waits on; the loop finishes its step
in hand (a commit, a batch in flight) and returns.
"""

from __future__ import annotations

import threading

from citygate.gateway.liveness import Deadline


class Worker:
    """A named daemon thread running :meth:`_loop`, with a deadline and a stop event."""

    stop_timeout_s = 10.0  # how long :meth:`stop` waits for the step in hand by default

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.progress = Deadline()

    @property
    def name(self) -> str:
        return self._thread.name

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to finish its step in hand and return (without waiting for it)."""
        self._stop.set()
        self._wake_for_stop()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop, and wait for it (at most ``timeout``, default ``stop_timeout_s``)."""
        self.request_stop()
        if self._thread.ident is not None:  # started
            self._thread.join(self.stop_timeout_s if timeout is None else timeout)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def alive(self) -> bool:
        """The thread exists (it may still be stuck: see :meth:`stalled`)."""
        return self._thread.is_alive()

    def overdue_s(self) -> float:
        """How long the worker's last promise has been broken (0 if it has not)."""
        return self.progress.overdue_s()

    def stalled(self, grace_s: float) -> bool:
        """Dead, or stuck: past its promised return by more than ``grace_s``."""
        return not self.alive() or self.overdue_s() > grace_s

    def _wake_for_stop(self) -> None:
        """Wake a loop that waits on something other than the stop event (override)."""

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.progress.done()

    def _loop(self) -> None:
        raise NotImplementedError
