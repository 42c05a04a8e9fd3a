"""End to end: devices -> Mosquitto -> gateway agent -> cloud service -> InfluxDB, all real."""

from tests.cloud.conftest import cloud_factory, cloud_pki
from tests.gateway.conftest import gw_pki, rig_factory

__all__ = ["cloud_factory", "cloud_pki", "gw_pki", "rig_factory"]
