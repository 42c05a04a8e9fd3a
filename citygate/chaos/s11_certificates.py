"""Scenario 11: bad certificates at the broker and the cloud, and gateways acting as others."""

from __future__ import annotations

import datetime as dt
import gzip
import time
from collections.abc import Callable

import httpx
import orjson

from citygate.certs.pki import CertFiles, CertKind, Pki
from citygate.certs.settings import PkiSettings
from citygate.chaos.devices import FORGED_SEQ, gateway_validator, profile_of, record, valid_readings
from citygate.chaos.forge import unclear_identity_certificates
from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.health import heartbeat_body, readings_out
from citygate.chaos.https import https, outcome
from citygate.chaos.mqtt_peer import MqttPeer, was_refused
from citygate.contract.inventory import Inventory


def _certificates(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    pki = ctx.pki
    now = dt.datetime.now(dt.UTC)
    mine = node.name
    pki.issue_devices([record(d, mine) for d in ("cert-ok", "cert-revoked", "cert-live", "cert-live-ok")])
    pki.issue_device(record("cert-expired", mine), not_before=now - dt.timedelta(days=10), days=1)
    foreign = Pki.init(PkiSettings(dir=ctx.dir / "foreign-pki"))
    foreign_gw = foreign.issue_gateway(node.name)
    foreign.issue_devices([record("cert-ok", mine), record("sim-00001", mine)])
    gw_b_name = "impostor-gw2"
    gw_b = pki.issue_gateway(gw_b_name)
    gw_revoked = pki.issue_gateway("revoked-gw3")
    gw_expired = pki.issue_gateway("expired-gw4", not_before=now - dt.timedelta(days=10), days=1)
    pki.revoke("revoked-gw3", kind=CertKind.GATEWAY, reason="keyCompromise")
    # A spare gateway certificate the city's CA issued but the cloud never registered.
    gw_spare = pki.issue_gateway("spare-gw5")
    Inventory.load(pki.inventory_path).without_gateway("spare-gw5").save(pki.inventory_path)
    unclear = unclear_identity_certificates(pki, ctx.dir / "unclear-certs", node.name, gw_b_name)
    # aiomqtt: the lite client's fleet did not finish its drain after a broker restart (scenarios 2, 3).
    ctx.start_fleet(ctx.count(50, 500), ctx.size(200, 2000), client="aiomqtt")
    port, ca = ctx.node.broker.device_port, ctx.infra_ca

    def dev(name: str, client_id: str | None = None, p: Pki = pki) -> MqttPeer:
        return MqttPeer.connect(port, ca=ca, cert=p.files(CertKind.DEVICE, name), client_id=client_id or name)

    control = dev("cert-ok")
    ctx.check(
        "a valid device certificate is accepted (control)", was_refused(control) is False, control.reason
    )
    pki.revoke("cert-revoked", reason="keyCompromise")
    ctx.node.broker.reload()
    ctx.act("revoked cert-revoked (never connected) and reloaded the broker (SIGHUP)")
    tries = ctx.count(3, 20)
    outcomes: dict[str, int] = {}
    attempts: list[tuple[str, Callable[[], MqttPeer]]] = [
        ("no certificate", lambda: MqttPeer.connect(port, ca=ca, cert=None, client_id="nocert")),
        ("foreign CA", lambda: dev("cert-ok", "foreign-1", foreign)),
        ("foreign CA, a fleet device's name", lambda: dev("sim-00001", "foreign-2", foreign)),
        ("expired", lambda: dev("cert-expired")),
        ("revoked", lambda: dev("cert-revoked")),
        (
            "gateway certificate on the device listener",
            lambda: MqttPeer.connect(
                port, ca=ca, cert=pki.files(CertKind.GATEWAY, ctx.node.name), client_id="gw-as-dev"
            ),
        ),
    ]
    for _ in range(tries):
        for name, attempt in attempts:
            outcomes[name] = outcomes.get(name, 0) + was_refused(attempt())
    ctx.act(f"{tries} connection attempts each: {', '.join(outcomes)}")
    for name, refused in outcomes.items():
        ctx.check(f"broker refuses: {name}", refused == tries, f"{refused}/{tries} refused")

    # Revoked while connected: the CRL change restarts the broker (deploy/systemd/citygate-crl-reload.*).
    live = dev("cert-live")
    other = MqttPeer.connect(
        port,
        ca=ca,
        cert=pki.files(CertKind.DEVICE, "cert-live-ok"),
        client_id="cert-live-ok",
        keep_trying=True,
    )
    ctx.check("live devices connected", live.connected and other.connected, f"{live.reason}; {other.reason}")
    # The revoked device keeps trying to come back, as a real one would.
    live_reconnects = live.connects
    t0 = time.monotonic()
    pki.revoke("cert-live", reason="keyCompromise")
    ctx.node.broker.restart()
    ctx.act("revoked cert-live while connected; restarted the broker as citygate-crl-reload.service does")
    try:
        ctx.wait_for(
            lambda: bool(live.disconnects), timeout=30, what="revoked device disconnected", every=0.05
        )
        ctx.figure("revoked_to_disconnect_s", round(live.disconnects[0] - t0, 2))
        ctx.check("revoked device disconnected", True, f"{live.disconnects[0] - t0:.2f} s after revocation")
    except TimeoutError as e:
        ctx.check("revoked device disconnected", False, str(e))
    ctx.wait_for(lambda: other.connected, timeout=30, what="unrevoked device reconnected")
    ctx.sleep(ctx.size(3.0, 10.0))
    ctx.check(
        "revoked device cannot come back (it keeps trying)",
        live.connects == live_reconnects and not live.connected,
        f"{live.connects - live_reconnects} reconnects",
    )
    ctx.check("unrevoked device is back after the restart", other.connected)
    live.close()
    other.close()
    ctx.wait_for(
        lambda: readings_out(ctx) > 0 and bool(ctx.health().get("broker_connected")),
        timeout=30,
        what="agent back on the broker",
    )

    # The cloud: only gateways, each only as itself.
    own = pki.files(CertKind.GATEWAY, node.name)
    hb = heartbeat_body(ctx)

    def post_empty(c: httpx.Client) -> httpx.Response:
        body = gzip.compress(b'{"batch_id":"chaos-1","readings":[]}')
        return c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})

    def naming_a(c: httpx.Client) -> httpx.Response:
        body = gzip.compress(orjson.dumps({"batch_id": "x1", "gateway_id": node.name, "readings": []}))
        return c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})

    case = tuple[str, CertFiles | None, Callable[[httpx.Client], httpx.Response], set[int | str]]
    cases: list[case] = [
        ("device certificate", pki.files(CertKind.DEVICE, "cert-ok"), post_empty, {"refused"}),
        ("no certificate", None, post_empty, {401, 403, "refused"}),
        ("foreign-CA gateway certificate with A's name", foreign_gw, post_empty, {"refused"}),
        ("revoked gateway", gw_revoked, post_empty, {403, "refused"}),
        ("expired gateway", gw_expired, post_empty, {403, "refused"}),
        (
            "server certificate as a gateway",
            pki.files(CertKind.SERVER, "localhost"),
            post_empty,
            {403, "refused"},
        ),
        (
            "gateway A heartbeating as B",
            own,
            lambda c: c.post(f"/v1/gateways/{gw_b_name}/heartbeat", json=hb),
            {403},
        ),
        (
            "gateway B heartbeating as A",
            gw_b,
            lambda c: c.post(f"/v1/gateways/{node.name}/heartbeat", json=hb),
            {403},
        ),
        ("gateway B naming A in the batch", gw_b, naming_a, {422}),
        ("a spare gateway certificate never registered", gw_spare, post_empty, {403}),
    ]
    forbidden: set[int | str] = {403}
    cases += [
        (f"a CA-signed certificate with {label}", f, post_empty, forbidden) for label, f in unclear.items()
    ]
    statuses: list[int | str] = []
    rounds = ctx.count(2, 10)
    wrong: dict[str, list[int | str]] = {}
    for _ in range(rounds):
        for name, cert, fn, allowed in cases:
            with https(ctx, cert) as c:
                got = outcome(lambda c=c, fn=fn: fn(c))  # type: ignore[misc]
            statuses.append(got)
            if got not in allowed:
                wrong.setdefault(name, []).append(got)
    ctx.act(f"{len(statuses)} requests to the cloud with wrong identities ({rounds} rounds of {len(cases)})")
    for name, _cert, _fn, allowed in cases:
        ctx.check(
            f"cloud refuses: {name}",
            name not in wrong,
            f"got {wrong[name]}" if name in wrong else "answers: " + "/".join(sorted(map(str, allowed))),
        )
    with https(ctx, gw_b) as c:
        who = post_empty(c)
    ctx.check(
        "the cloud names a gateway by its certificate",
        who.status_code == 200 and who.json().get("gateway_id") == gw_b_name,
        f"{who.status_code} {who.text[:120]}",
    )
    # Gateway B, registered and valid, posts readings of gateway A's devices (it wrote and
    # overwrote them before): every reading refused per reading, nothing stored.
    _, inventory, registry = gateway_validator(ctx)
    victims = [d for d in inventory if d.startswith("sim-")][:20]
    base_ms = int(time.time() * 1000) - 3_600_000  # an hour back: no fleet reading there
    forged = [
        {
            "device_id": d,
            "ts": base_ms + i,
            "seq": FORGED_SEQ + i,
            "readings": valid_readings(profile_of(inventory, registry, d)),
        }
        for i, d in enumerate(victims)
    ]
    with https(ctx, gw_b) as c:
        body = gzip.compress(orjson.dumps({"batch_id": "chaos-forged", "readings": forged}))
        answer = c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
    doc = answer.json() if answer.status_code == 200 else {}
    reasons = {r["reason"] for r in doc.get("rejected", [])}
    ctx.check(
        "gateway B's readings of A's devices are refused per reading (not_assigned)",
        doc.get("accepted") == 0 and reasons == {"not_assigned"},
        f"{answer.status_code}: accepted {doc.get('accepted', '-')} of {len(forged)}, "
        f"reasons {sorted(reasons)}",
    )
    fives = [s for s in statuses if isinstance(s, int) and s >= 500]
    ctx.check("no 5xx from the cloud", not fives, f"{len(statuses)} requests, 5xx: {fives}")
    ctx.audit_fleets()


SCENARIO = Scenario(
    11,
    "certificates",
    "Bad certificates at the broker and the cloud",
    "Devices without a certificate, with a foreign-CA, expired, revoked or gateway certificate are "
    "refused "
    "by the broker; a device revoked while connected is cut off by the broker restart that a CRL change "
    "triggers (seconds measured) and stays out, while the fleet loses nothing. The cloud refuses device, "
    "foreign, revoked and expired certificates and a gateway acting as another, never with a 5xx.",
    _certificates,
)
