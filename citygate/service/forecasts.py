"""Whether a forecast came true: a forecast rule's case records the predicted crossing
(``forecast_ns``); the readings after it say whether the threshold was crossed in time.

A crossing seen at or before ``forecast_ns + grace`` (a quarter of the rule's horizon)
makes it ``came_true``; a reading later than that with no crossing before makes it
``did_not``. Each case learns its outcome once (:meth:`CaseStore.forecast_outcome`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from citygate.service.cases import CaseStore
from citygate.service.conditions import Forecast, compare
from citygate.service.evaluator import Observation
from citygate.service.rules import RuleSet
from citygate.service.schema import cases


@dataclass(frozen=True, slots=True)
class _Pending:
    case_id: int
    rule: Forecast
    forecast_ns: int
    grace_ns: int


@dataclass(frozen=True, slots=True)
class Outcome:
    case_id: int
    outcome: str  # "came_true" | "did_not"
    note: str


class ForecastWatch:
    def __init__(self, rules: RuleSet) -> None:
        self._rules = rules
        self._pending: dict[tuple[str, str], _Pending] = {}

    def load(self, store: CaseStore) -> None:
        """The open cases whose forecast has no outcome yet."""
        q = select(cases.c.id, cases.c.rule_id, cases.c.subject, cases.c.forecast_ns).where(
            cases.c.is_open, cases.c.forecast_ns.is_not(None), cases.c.forecast_outcome.is_(None)
        )
        with store.engine.connect() as conn:
            for r in conn.execute(q):
                self.watch(r.id, r.rule_id, r.subject, r.forecast_ns)

    def watch(self, case_id: int, rule_id: str, subject: str, forecast_ns: int) -> None:
        rule = self._rules.get(rule_id)
        if rule is None or not isinstance(rule.when, Forecast):
            return
        self._pending[(rule_id, subject)] = _Pending(
            case_id, rule.when, forecast_ns, rule.when.horizon_ns // 4
        )

    def observe(self, obs: Observation) -> list[Outcome]:
        if not self._pending:
            return []
        out: list[Outcome] = []
        for (rule_id, subject), p in list(self._pending.items()):
            if subject != obs.device_id or p.rule.field not in obs.fields:
                continue
            value = obs.fields[p.rule.field]
            deadline = p.forecast_ns + p.grace_ns
            if obs.ts_ns <= deadline and compare(p.rule.op, value, p.rule.value):
                out.append(
                    Outcome(p.case_id, "came_true", f"{p.rule.field} {value} {p.rule.op} {p.rule.value}")
                )
            elif obs.ts_ns > deadline:
                out.append(
                    Outcome(p.case_id, "did_not", f"no {p.rule.field} {p.rule.op} {p.rule.value} in time")
                )
            else:
                continue
            del self._pending[(rule_id, subject)]
        return out

    def __len__(self) -> int:
        return len(self._pending)
