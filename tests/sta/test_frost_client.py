"""The judge: Fraunhofer's frost-sta-client (synchronous, on requests) against a running cloud.

It walks every entity set through the @iot.nextLinks, expands Datastreams -> Observations and
filters Observations by time; what it gets must match what was posted through /v1/ingest.
The client has no TLS settings of its own: :class:`SessionService` gives it a requests
Session that trusts the test CA (and carries a reader token when asked for).
"""

from __future__ import annotations

from typing import Any

import frost_sta_client as fsc  # type: ignore[import-untyped]
import pytest
import requests

from citygate.contract.rfc3339 import format_rfc3339_ns
from tests.cloud.conftest import READER_TOKEN
from tests.sta.conftest import N_AQ, N_LIGHT, N_NOISE, STEP_NS, T0_NS, StaCloud

pytestmark = pytest.mark.servers


class SessionService(fsc.SensorThingsService):  # type: ignore[misc]
    """frost-sta-client's service, its HTTP calls made on our Session (CA, token)."""

    def __init__(self, url: str, session: requests.Session) -> None:
        super().__init__(url)
        self.session = session

    def execute(self, method: str, url: Any, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, str(url), **kwargs)
        response.raise_for_status()
        return response


def service(cloud: StaCloud, token: str | None = None) -> SessionService:
    return SessionService(cloud.base, cloud.requests_session(token=token))


def walk(query: Any) -> list[Any]:
    return list(query.list())


def test_walks_every_entity_set_through_next_links(sta_cloud: StaCloud) -> None:
    svc = service(sta_cloud, READER_TOKEN)
    things = walk(svc.things().query().top(2))  # 2 a page: the walk follows next links
    assert sorted(t.name for t in things) == ["aq-1", "aq-2", "light-1", "noise-1"]  # no parking bay
    assert {t.properties["site"] for t in things} == {"centre", "park, north", "main street"}
    assert len({t.id for t in things}) == 4 and all(isinstance(t.id, int) for t in things)
    datastreams = walk(svc.datastreams().query().top(5))
    # air_quality 9 fields x 2, noise 6, street_light 8
    assert len(datastreams) == 2 * 9 + 6 + 8
    assert len(walk(svc.locations().query().top(2))) == 3  # light-1 has no location
    assert len(walk(svc.historical_locations().query().top(2))) == 3
    assert len(walk(svc.sensors().query().top(1))) == 3
    assert len(walk(svc.observed_properties().query().top(4))) == 9 + 6 + 8
    assert len(walk(svc.features_of_interest().query().top(3))) == 4
    start = format_rfc3339_ns(T0_NS)
    end = format_rfc3339_ns(T0_NS + 3600 * 10**9)  # after every reading
    observations = walk(
        svc.observations().query().filter(f"phenomenonTime ge {start} and phenomenonTime lt {end}").top(50)
    )
    # every stored field value once: aq 7 required fields x 2 x N_AQ, noise 2 x N, light 2 x N
    assert len(observations) == 7 * 2 * N_AQ + 2 * N_NOISE + 2 * N_LIGHT
    assert len({o.id for o in observations}) == len(observations)


def test_expands_datastreams_to_observations(sta_cloud: StaCloud) -> None:
    svc = service(sta_cloud)  # anonymous: air_quality and noise are public
    thing = walk(svc.things().query().filter("name eq 'aq-1'"))[0]
    datastreams = walk(
        thing.get_datastreams().query().expand("Observations($orderby=phenomenonTime desc;$top=5)")
    )
    pm = next(d for d in datastreams if d.name == "aq-1/pm2_5")
    assert pm.unit_of_measurement.symbol == "ug/m3"
    assert pm.unit_of_measurement.name == "microgram per cubic metre"
    got = list(pm.observations)  # the expanded page, then its next link
    assert [o.result for o in got] == [float(i) for i in reversed(range(N_AQ))]
    optional = next(d for d in datastreams if d.name == "aq-1/pm1")
    assert list(optional.observations or []) == []  # never sent: no Observations


def test_filters_observations_by_time(sta_cloud: StaCloud) -> None:
    svc = service(sta_cloud)
    pm = walk(svc.datastreams().query().filter("name eq 'aq-2/pm2_5'"))[0]
    start = format_rfc3339_ns(T0_NS + 10 * STEP_NS)  # aq-2 reads at T0 + 5 s + i x 10 s
    end = format_rfc3339_ns(T0_NS + 20 * STEP_NS)
    got = walk(
        pm.get_observations()
        .query()
        .filter(f"phenomenonTime gt {start} and phenomenonTime le {end}")
        .orderby("phenomenonTime", "ASC")
        .top(3)
    )
    assert [o.result for o in got] == [100.0 + i for i in range(10, 20)]
    one = svc.observations().find(got[0].id)
    assert one.result == got[0].result
    assert one.phenomenon_time == got[0].phenomenon_time
