"""An OGC SensorThings API 1.1 read-only service at ``/sta/v1.1`` (docs/SENSORTHINGS.md).

One module per concept:

* :mod:`.settings`: ``[cloud.sta]``;
* :mod:`.ids`: stable integer ``@iot.id`` s (hashes, and the Observations' reversible ids);
* :mod:`.units`: the profiles' unit strings as UCUM units of measurement;
* :mod:`.entities`: the inventory and the profiles as STA entities (Things, Locations,
  HistoricalLocations, Datastreams, Sensors, ObservedProperties, FeaturesOfInterest);
* :mod:`.paths`: resource paths (``Things(1)/Datastreams``, ``$ref``, ``$value``);
* :mod:`.query`: the query options and the ``$filter`` parser;
* :mod:`.filters`: ``$filter`` as a predicate over inventory entities;
* :mod:`.geo`: the WKT geometries of the spatial functions;
* :mod:`.observations`: ``$filter`` and the paging of Observations as InfluxQL;
* :mod:`.render`: entities as STA JSON with their links;
* :mod:`.service`: one request resolved into its answer;
* :mod:`.cache`: anonymous answers reused for a while;
* :mod:`.runtime`: what the router keeps between requests (model, rate limiter, cache);
* :mod:`.api`: the router.
"""
