"""The device fleet simulator: realistic signals, faults on demand, a ledger and its audit.

Modules (no work at import time; the MQTT dependencies are imported only by ``fleet``):

- :mod:`.signals`  pure, deterministic signal models per device profile
- :mod:`.faults`   fault requests and their exact per-device plans
- :mod:`.device`   one device's keep / resend / bounded-memory logic, without I/O
- :mod:`.ledger`   the append-only record of what every device produced
- :mod:`.audit`    ledger versus database: expected, stored, lost, duplicated, unexpected
- :mod:`.fleet`    the asyncio runner (aiomqtt, one client per device, mTLS)
- :mod:`.progress` live display and the run summary
"""
