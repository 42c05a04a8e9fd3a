"""Chaos: faults, attacks and bad input against the real system, judged by the simulator's audit.

``citygate chaos`` runs the long versions; ``tests/chaos`` the fast ones. The
scenarios live in :mod:`citygate.chaos.faults` (1-9: nothing acknowledged may
be lost) and :mod:`citygate.chaos.attacks` (10-14: nothing accepted that should
not be, no crash, no 500).
"""

from __future__ import annotations

from citygate.chaos.harness import Scenario


def scenarios() -> tuple[Scenario, ...]:
    """Every scenario, in issue order."""
    from citygate.chaos import attacks, faults

    return tuple(sorted((*faults.SCENARIOS, *attacks.SCENARIOS), key=lambda s: s.number))
