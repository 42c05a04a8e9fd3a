"""Open data: the sensor data in the standards portals read.

* :mod:`citygate.opendata.policy`: what is public, what needs a reader token, what is only
  published per zone and late (``[cloud.opendata]``), shared by both surfaces;
* :mod:`citygate.opendata.sta`: an OGC SensorThings API 1.1 read-only service at ``/sta/v1.1``;
* :mod:`citygate.opendata.ngsi`: NGSI-LD entities in the FIWARE Smart Data Models' shapes.
"""
