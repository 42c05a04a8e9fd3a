"""Chaos: faults, attacks and bad input against the real system, judged by the simulator's audit.

``citygate chaos`` runs the long versions; ``tests/chaos`` the fast ones. The
scenarios live in :mod:`citygate.chaos.faults` (1-9: nothing acknowledged may
be lost), :mod:`citygate.chaos.attacks` (10-14: nothing accepted that should
not be, no crash, no 500) and :mod:`citygate.chaos.contract` (15-17: a reading
the gateway confirmed is never lost at the cloud's door).
"""

from __future__ import annotations

from citygate.chaos.harness import Scenario


def scenarios() -> tuple[Scenario, ...]:
    """Every scenario, in issue order."""
    from citygate.chaos import attacks, contract, faults

    return tuple(sorted((*faults.SCENARIOS, *attacks.SCENARIOS, *contract.SCENARIOS), key=lambda s: s.number))
