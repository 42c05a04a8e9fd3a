"""The contract shared by devices, gateway and cloud.

Identifiers, MQTT topics, device profiles, the device inventory, payload
validation and the gateway -> cloud wire form. Both the gateway and the cloud
import this package; it depends only on the core requirements (pydantic,
orjson), never on MQTT, HTTP or database clients.
"""
