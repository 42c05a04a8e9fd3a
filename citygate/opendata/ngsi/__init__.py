"""NGSI-LD entities in the FIWARE Smart Data Models' shapes, and a small read-only NGSI-LD API.

docs/NGSI-LD.md describes the export. The modules, each one thing:

* :mod:`~citygate.opendata.ngsi.units`: UN/CEFACT unit codes and the conversions the models need;
* :mod:`~citygate.opendata.ngsi.entity`: an entity, its id, times and location;
* :mod:`~citygate.opendata.ngsi.forms`: normalized, keyValues and concise representations;
* :mod:`~citygate.opendata.ngsi.mapping`: how a profile's reading becomes a device's entity;
* :mod:`~citygate.opendata.ngsi.models`: the eight profiles' mappings;
* :mod:`~citygate.opendata.ngsi.zones`: parking published per zone (OnStreetParking);
* :mod:`~citygate.opendata.ngsi.latest`: each device's newest reading, one statement per profile;
* :mod:`~citygate.opendata.ngsi.exporter`: the entities per type, cached per ``cache_s``;
* :mod:`~citygate.opendata.ngsi.params`, :mod:`~citygate.opendata.ngsi.problems`,
  :mod:`~citygate.opendata.ngsi.caller`, :mod:`~citygate.opendata.ngsi.select`,
  :mod:`~citygate.opendata.ngsi.api`: the API (parameters, refusals, who asks, which
  entities answer, the routes);
* ``schemas/``: the models' JSON Schemas and contexts, stored as data (the tests validate
  every exported entity against them, offline: ``tests/ngsi/sdm.py``).
"""
