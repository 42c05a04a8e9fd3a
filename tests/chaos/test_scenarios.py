"""Every chaos scenario (issue #8), fast sizes: the same bodies ``citygate chaos`` runs long.

Each starts the real system (InfluxDB, the cloud, a gateway agent with its
Mosquitto), runs simulated devices with a ledger, breaks something, and passes
only if every check holds, the audit included (nothing lost, duplicated or
unexpected; for the disk-full scenario, lost equal to the agent's drop counters).
"""

from __future__ import annotations

import pytest

from citygate.chaos import scenarios
from citygate.chaos.harness import run_scenario

pytestmark = pytest.mark.servers


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: f"{s.number:02d}-{s.name}")
def test_scenario(scenario, tmp_path):
    result = run_scenario(scenario, tmp_path, long=False)
    print(result.describe())
    assert result.passed, result.describe()


def test_all_eighteen_scenarios_are_there():
    assert [s.number for s in scenarios()] == list(range(1, 19))


def test_scenario_n_lives_in_the_module_named_by_its_number_and_name():
    for s in scenarios():
        assert s.body.__module__ == f"citygate.chaos.s{s.number:02d}_{s.name.replace('-', '_')}"
