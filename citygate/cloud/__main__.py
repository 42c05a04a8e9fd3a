"""``python -m citygate.cloud --config cloud.toml`` (the same as ``citygate cloud run``)."""

from __future__ import annotations

from citygate.cli.cloud import app

app(prog_name="citygate-cloud")
