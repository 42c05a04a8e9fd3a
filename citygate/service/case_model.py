"""What a case is, apart from where it is stored: its statuses, what people may do to it,
the changes recorded (:class:`Condition`, :class:`Transition`) and the errors of an action.

The store that writes them, with their history and events, is :mod:`citygate.service.cases`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

Status = Literal["new", "acknowledged", "assigned", "in_progress", "resolved", "closed"]
STATUSES: tuple[Status, ...] = ("new", "acknowledged", "assigned", "in_progress", "resolved", "closed")
WORKING: frozenset[str] = frozenset({"new", "acknowledged", "assigned", "in_progress"})
OPEN: frozenset[str] = WORKING | {"resolved"}

# What people (and the escalation clock) may do: action -> (from statuses, to status or
# None for "unchanged", the event's action name).
OPERATOR_ACTIONS: dict[str, tuple[frozenset[str], Status | None, str]] = {
    "acknowledge": (frozenset({"new"}), "acknowledged", "acknowledged"),
    "assign": (WORKING, "assigned", "assigned"),
    "start": (frozenset({"acknowledged", "assigned"}), "in_progress", "started"),
    "resolve": (WORKING, "resolved", "resolved"),
    "close": (OPEN, "closed", "closed"),
    "reopen": (frozenset({"resolved", "closed"}), "new", "reopened"),
    "note": (OPEN | {"closed"}, None, "noted"),
}


class CaseError(ValueError):
    """An operator action that can never apply as asked (unknown action, assign without an
    assignee, a case merged into itself); the base of the case errors below."""


class CaseNotFoundError(CaseError):
    """No case has that id."""


class ActionNotAllowedError(CaseError):
    """The case's status does not allow the action (OPERATOR_ACTIONS), or a merge of a case
    that is not open."""


class CaseConflictError(CaseError):
    """The case changed under the action (another operator acted first), or reopening it
    would make a second open case for its (rule, subject)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A change made: the case after it, the history row and the event written with it."""

    case_id: int
    action: str
    from_status: str | None
    to_status: str
    event_id: str
    history_id: int


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition change to record (from the rules, or raised by the system itself)."""

    kind: Literal["opened", "cleared"]
    rule_id: str
    subject: str
    service: str
    severity: str
    title: str
    at_ns: int  # device time it took effect
    detail: str = ""
    value: float | None = None
    late: bool = False
    forecast_ns: int | None = None
    source: Literal["sensor", "system"] = "sensor"
    site: str | None = None
    district: str | None = None

    @property
    def change_key(self) -> str:
        return f"{self.rule_id}|{self.subject}|{self.kind}|{self.at_ns}"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
