"""The device fleet simulator: realistic signals, faults on demand, a ledger and its audit.

Modules (no work at import time; the MQTT libraries are imported only by the link adapters,
which ``link_factory`` imports when a fleet first asks for one):

- :mod:`.signals`      pure, deterministic signal models per device profile
- :mod:`.faults`       fault requests and their exact per-device plans
- :mod:`.device`       one device's keep / resend / bounded-memory logic, without I/O
- :mod:`.ledger`       the append-only record of what every device produced
- :mod:`.audit`        ledger versus database: expected, stored, lost, duplicated, unexpected
- :mod:`.provision`    the fleet's certificates and inventory records
- :mod:`.fleet`        the asyncio runner: one connection per device, mTLS
- :mod:`.link`         the device connection the fleet uses (``DeviceLink``), its errors
- :mod:`.link_factory` the adapter for a ``ClientKind``: :mod:`.link_lite`, :mod:`.link_aiomqtt`
- :mod:`.mqtt_lite`    citygate's own small asyncio MQTT 3.1.1 client
- :mod:`.progress`     live display and the run summary
"""
