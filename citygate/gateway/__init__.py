"""The gateway agent: MQTT intake -> validation -> durable outbox -> forwarder to the cloud.

Modules: ``settings`` (configuration), ``intake`` (the only MQTT code),
``outbox`` (the only SQLite code), ``cloud_client`` (the only HTTP client
code), ``pipeline`` (validation and group commit, plain code), ``forwarder``
(batching and retry policy), ``health`` (numbers for heartbeats, /metrics and
/healthz), ``local_http`` (the local /metrics and /healthz endpoint),
``agent`` (wires them together and handles signals).
"""
