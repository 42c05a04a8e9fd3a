"""Where the gateway agent's resident memory goes before it handles a single reading.

Imports what the agent imports, one library at a time in dependency order, and
prints the RSS each adds (a library's shared dependencies are charged to the
first one that pulls them in). The 80 MB target of the agent (issue #3) is
compared with this floor in bench/RESULTS.md.

    .venv/bin/python bench/agent_memory.py
"""

from __future__ import annotations

import importlib
import json

import psutil

ORDER = (
    "ssl",
    "sqlite3",
    "orjson",
    "pydantic",
    "pydantic_settings",
    "cryptography.x509",
    "paho.mqtt.client",
    "httpx",
    "structlog",
    "citygate.contract.validation",
    "citygate.certs.pki",
    "citygate.gateway.agent",
    "citygate.cli.gateway",
)


def main() -> None:
    proc = psutil.Process()
    start = last = proc.memory_info().rss
    rows = {}
    for name in ORDER:
        importlib.import_module(name)
        now = proc.memory_info().rss
        rows[name] = round((now - last) / 1e6, 1)
        last = now
        print(f"{name:32} +{rows[name]:5.1f} MB  (total {now / 1e6:5.1f} MB)")
    summary = {"interpreter_mb": round(start / 1e6, 1), "imports_mb": rows, "total_mb": round(last / 1e6, 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
