"""Chaos: faults, attacks and bad input against the real system, judged by the simulator's audit.

``citygate chaos`` runs the long versions; ``tests/chaos`` the fast ones. Scenario N lives in
``sNN_<name>.py`` (docs/RELIABILITY.md's table names them): 1-9 are faults (nothing acknowledged
may be lost), 10-14 attacks from outside while a well-behaved fleet publishes (nothing accepted
that should not be, no crash, no 500), 15-17 the contract between gateway and cloud (a reading the
gateway confirmed is never lost at the cloud's door), 18 the service layer (every case event
delivered, none twice under two ids). Each ends with the audit.

The rest is their toolkit: :mod:`~citygate.chaos.harness` (the system, fleets, checks, the judge),
and the attackers' tools (:mod:`~citygate.chaos.mqtt_peer`, :mod:`~citygate.chaos.https`,
:mod:`~citygate.chaos.garbage`, :mod:`~citygate.chaos.slowloris`, ...).
"""

from __future__ import annotations

from importlib import import_module
from typing import cast

from citygate.chaos.harness import Scenario

# The registry: scenario N is SCENARIO in module N here (its number, name, title and checks).
_MODULES = (
    "s01_agent_kill",
    "s02_power_loss",
    "s03_broker_restart",
    "s04_cloud_outage",
    "s05_influx_down",
    "s06_disk_full",
    "s07_flapping_link",
    "s08_clock_trouble",
    "s09_reconnect_storm",
    "s10_impersonation",
    "s11_certificates",
    "s12_fuzz",
    "s13_hostile_http",
    "s14_secrets",
    "s15_cloud_inventory_lag",
    "s16_buffered_past_window",
    "s17_device_reboot",
    "s18_service_faults",
)


def scenarios() -> tuple[Scenario, ...]:
    """Every scenario, in issue order: what ``citygate chaos`` and the tests run."""
    # Imported on call: listing the CLI's commands must not load every attack's tools.
    return tuple(cast(Scenario, import_module(f"{__name__}.{m}").SCENARIO) for m in _MODULES)
