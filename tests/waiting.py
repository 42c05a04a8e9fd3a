"""The one way tests wait: poll a condition until it holds, or fail naming what was awaited.

    from tests.waiting import wait_until

    h = wait_until(agent.health, timeout=30, message="the agent's /healthz answering")
    wait_until(lambda: cloud.count() >= 20, message=lambda: f"20 readings at the cloud, {agent.log_tail()}")

The predicate is called at once, then every ``interval`` seconds, and once more at the
deadline; its first truthy value is returned. An exception it raises is not caught: a
predicate can fail at once (``assert proc.poll() is None``) instead of waiting the timeout
out. A predicate may block (a queue's ``get(timeout=...)``, a socket read): it then paces the
polling itself, and ``interval=0`` adds no sleep of its own.

Waiting is not sleeping: a test waits for the event it needs. A sleep stays only where a test
must let time pass (to show that nothing happens in it, or to age readings).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_TIMEOUT_S", "WaitTimeoutError", "wait_until"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_INTERVAL_S = 0.05
_MAX_SHOWN = 2000  # characters of the last value in a failure message


class WaitTimeoutError(AssertionError):
    """The awaited condition did not hold in time (an AssertionError: pytest reports it as a failure)."""

    def __init__(self, message: str, last: object) -> None:
        super().__init__(message)
        self.last = last


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(text)} characters)"


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = DEFAULT_INTERVAL_S,
    message: str | Callable[[], str] = "the condition",
) -> T:
    """Return ``predicate()``'s first truthy value; raise WaitTimeoutError after ``timeout`` seconds.

    ``message`` says what is awaited ("the outbox drained"); a callable is called only on
    failure, for details that cost something to gather (a log tail) or change while waiting.
    The failure names it, the timeout and the predicate's last value.
    """
    if timeout < 0 or interval < 0:
        raise ValueError(f"timeout ({timeout}) and interval ({interval}) must not be negative")
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            what = message() if callable(message) else message
            raise WaitTimeoutError(
                f"timed out after {timeout:g} s waiting for {what}; last value seen: {_shown(value)}",
                value,
            )
        time.sleep(min(interval, left))
