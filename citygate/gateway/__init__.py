"""The gateway agent: MQTT intake -> validation -> durable outbox -> forwarder to the cloud.

The modules and what each talks to are listed in docs/GATEWAY.md (the table at the top);
``agent`` wires them together.
"""
