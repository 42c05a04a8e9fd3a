"""What the dashboard is told besides the fleet API: units, positions, map tiles and its CSP.

The pure parts (the tile URL's CSP source and attribution, the context built from an
inventory and the profiles) without a server; then ``/dashboard/context``, the page's
Content-Security-Policy and the vendored assets against the real cloud service.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from citygate.contract.inventory import DeviceRecord, GatewayRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.dashboard.context import build_context, content_security_policy, tile_layer, tile_source

VENDOR = Path(__file__).resolve().parents[2] / "citygate" / "dashboard" / "static" / "vendor"
OSM = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


@pytest.mark.parametrize(
    ("url", "source"),
    [
        (OSM, "https://tile.openstreetmap.org"),
        ("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png", "https://*.tile.openstreetmap.org"),
        ("https://Tiles.Example.org:8443/osm/{z}/{x}/{y}@2x.png?key=abc", "https://tiles.example.org:8443"),
        ("http://127.0.0.1:8080/{z}/{x}/{y}.png", "http://127.0.0.1:8080"),
        ("", None),
        # Nothing that could end the CSP's directive or header value, nor a host wildcard elsewhere.
        ("https://a.example.org;script-src */{z}/{x}/{y}.png", None),
        ("https://a.example.org/{z}/{x}/{y}.png' 'unsafe-inline", None),
        ("https://tile-{s}.example.org/{z}/{x}/{y}.png", None),
        ("javascript:alert(1)//{z}/{x}/{y}", None),
    ],
)
def test_tile_source(url: str, source: str | None) -> None:
    assert tile_source(url) == source


def test_the_csp_allows_images_from_the_tile_server_only_when_set() -> None:
    plain = content_security_policy("")
    assert "img-src 'self' data:;" in plain
    assert "default-src 'self'" in plain and "connect-src 'self'" in plain
    with_tiles = content_security_policy("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png")
    assert "img-src 'self' data: https://*.tile.openstreetmap.org;" in with_tiles
    assert with_tiles.replace(" https://*.tile.openstreetmap.org", "") == plain
    # A template without {z}/{x}/{y} gives no tile layer, so no exception in the policy either.
    assert content_security_policy("https://tiles.example.org/static.png") == plain


def test_tile_attribution() -> None:
    osm = tile_layer(OSM)
    assert osm is not None and osm.url == OSM
    assert osm.attribution == "© OpenStreetMap contributors"
    assert osm.attribution_url == "https://www.openstreetmap.org/copyright"
    other = tile_layer("https://tiles.example.org/{z}/{x}/{y}.png")
    assert other is not None and other.attribution == "map tiles: tiles.example.org"
    assert tile_layer("") is None


def test_context_units_positions_and_gateways_at_the_centre_of_their_devices() -> None:
    inventory = (
        Inventory()
        .with_gateways(
            GatewayRecord(gateway_id="north-gw1", district="north"),
            GatewayRecord(gateway_id="south-gw1"),
            GatewayRecord(gateway_id="east-gw1"),
        )
        .with_devices(
            DeviceRecord(
                device_id="aq-1",
                profile="air_quality",
                profile_version=1,
                district="north",
                lat=50.0,
                lon=8.0,
                gateways=("north-gw1",),
            ),
            DeviceRecord(
                device_id="aq-2",
                profile="air_quality",
                profile_version=1,
                lat=50.2,
                lon=8.4,
                gateways=("north-gw1", "south-gw1"),
            ),
            DeviceRecord(
                device_id="light-1", profile="street_light", profile_version=1, gateways=("south-gw1",)
            ),
        )
    )
    ctx = build_context(inventory, ProfileRegistry(), "", "v-1")
    assert ctx.tiles is None and ctx.contract_version == "v-1"
    # Only the profiles in use, with each field's type and unit.
    assert [(p.name, p.version) for p in ctx.profiles] == [("air_quality", 1), ("street_light", 1)]
    aq = {f.name: f for f in ctx.profiles[0].fields}
    assert (aq["pm2_5"].type, aq["pm2_5"].unit) == ("float", "ug/m3")
    assert aq["temperature"].unit == "Cel"
    light = {f.name: f for f in ctx.profiles[1].fields}
    assert (light["lamp_on"].type, light["lamp_on"].unit) == ("bool", None)
    assert {d.device_id: (d.lat, d.lon) for d in ctx.devices} == {
        "aq-1": (50.0, 8.0),
        "aq-2": (50.2, 8.4),
        "light-1": (None, None),
    }
    gateways = {g.gateway_id: g for g in ctx.gateways}
    north, south, east = gateways["north-gw1"], gateways["south-gw1"], gateways["east-gw1"]
    assert (north.lat, north.lon, north.devices, north.placed_by) == (50.1, 8.2, 2, "devices")
    assert north.district == "north"
    # Only its placed device counts for the position; both for the count.
    assert (south.lat, south.lon, south.devices) == (50.2, 8.4, 2)
    assert (east.lat, east.lon, east.devices, east.placed_by) == (None, None, 0, "none")
    with_tiles = build_context(inventory, ProfileRegistry(), OSM, "v-1")
    assert with_tiles.tiles is not None and with_tiles.tiles.url == OSM


def test_the_vendored_libraries_keep_their_licences_and_versions() -> None:
    notes = (VENDOR / "README.md").read_text()
    for lib, version, licence in (("uplot", "1.6.32", "MIT License"), ("leaflet", "1.9.4", "BSD 2-Clause")):
        assert licence in (VENDOR / lib / "LICENSE").read_text()
        assert f"| `{lib}/` |" in notes and f"| {version} |" in notes
    # The files are the ones the notes name, byte for byte.
    for line in notes.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "(v1.6.32)" in (VENDOR / "uplot" / "uPlot.iife.min.js").read_text()[:200]
    assert "Leaflet 1.9.4" in (VENDOR / "leaflet" / "leaflet.js").read_text()[:200]


def test_the_page_names_only_assets_the_route_serves() -> None:
    import re

    from citygate.dashboard import _ASSETS, _read

    html = _read("index.html")[0].decode()
    named = set(re.findall(r'(?:src|href)="/dashboard/static/([^"]+)"', html))
    assert named == set(_ASSETS), named ^ set(_ASSETS)
    for name in _ASSETS:  # each one in the package (importlib.resources, as the route reads it)
        assert _read(name)[0], name


# -- against the service ------------------------------------------------------------------


def test_tile_url_setting_is_checked_at_load(cloud_pki: Any, tmp_path: Path) -> None:
    from tests.cloud.conftest import make_settings

    assert make_settings(cloud_pki, tmp_path).dashboard_tile_url == ""
    ok = "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert make_settings(cloud_pki, tmp_path, dashboard_tile_url=ok).dashboard_tile_url == ok
    for bad in (
        "https://tile.openstreetmap.org/tiles.png",  # no {z}/{x}/{y}
        "http://tiles.example.org/{z}/{x}/{y}.png",  # plain http to another host
        "https://tiles.example.org/{z}/{x}/{y}.png' 'unsafe-inline'",
        "https://a.example.org;script-src/{z}/{x}/{y}",
        "ftp://tiles.example.org/{z}/{x}/{y}.png",
    ):
        with pytest.raises(ValidationError, match="dashboard_tile_url"):
            make_settings(cloud_pki, tmp_path, dashboard_tile_url=bad)


@pytest.mark.servers
def test_context_route_assets_and_csp(cloud_factory: Any) -> None:
    cloud = cloud_factory()
    op = cloud.operator()
    r = op.get("/dashboard/context")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tiles"] is None
    assert {d["device_id"] for d in body["devices"]} == {"dev-a", "dev-b", "dev-n", "dev-silent"}
    assert {g["gateway_id"]: g["devices"] for g in body["gateways"]} == {"gw-test": 4, "gw-cloud-b": 0}
    assert "ug/m3" in {f["unit"] for p in body["profiles"] for f in p["fields"]}
    assert r.headers["cache-control"] == "private, no-cache"
    # Unchanged inventory: 304 to a poll that names the ETag.
    again = op.get("/dashboard/context", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == r.headers["etag"]
    # Operators only.
    assert cloud.reader().get("/dashboard/context").status_code == 403
    assert cloud.client(cloud.cloud_pki.gateway()).get("/dashboard/context").status_code == 401
    # No tiles configured: the page's policy allows nothing from elsewhere.
    csp = op.get("/dashboard").headers["content-security-policy"]
    assert "img-src 'self' data:;" in csp
    for name, kind in (
        ("vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("vendor/uplot/uPlot.min.css", "text/css"),
        ("vendor/leaflet/leaflet.js", "text/javascript"),
        ("vendor/leaflet/leaflet.css", "text/css"),
        ("app.js", "text/javascript"),
    ):
        got = op.get(f"/dashboard/static/{name}")
        assert got.status_code == 200 and got.headers["content-type"].startswith(kind), name
        assert got.content == (VENDOR.parent / name).read_bytes()
        cached = op.get(f"/dashboard/static/{name}", headers={"If-None-Match": got.headers["etag"]})
        assert cached.status_code == 304, name
    for name in ("vendor/leaflet/LICENSE", "vendor/README.md", "../__init__.py", "index.html", "vendor/x.js"):
        assert op.get(f"/dashboard/static/{name}").status_code == 404, name


@pytest.mark.servers
def test_the_csp_names_the_configured_tile_server(cloud_factory: Any) -> None:
    cloud = cloud_factory(dashboard_tile_url="https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png")
    op = cloud.operator()
    assert (
        "img-src 'self' data: https://*.tile.openstreetmap.org;"
        in op.get("/dashboard").headers["content-security-policy"]
    )
    tiles = op.get("/dashboard/context").json()["tiles"]
    assert tiles["url"] == "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert tiles["attribution"] == "© OpenStreetMap contributors"
