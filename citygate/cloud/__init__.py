"""The cloud ingestion service: authenticated gateways in, InfluxDB out, fleet and series reads.

Nothing here does work at import time: :func:`citygate.cloud.app.create_app`
builds the FastAPI app from :class:`citygate.cloud.settings.CloudSettings`, and
:func:`citygate.cloud.server.serve` runs it under uvicorn with mutual TLS.
"""
