"""Scenario 12: payload fuzzing at the gateway (a device on its own topic) and the cloud (a gateway
posting garbage to /v1/ingest)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from citygate.certs.pki import CertKind
from citygate.chaos.devices import gateway_validator, record
from citygate.chaos.garbage import MB, cloud_garbage, mqtt_garbage
from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.health import readings_out, rejected_total
from citygate.chaos.https import https, outcome
from citygate.chaos.mqtt_peer import MqttPeer
from citygate.chaos.rss import RssPeak
from citygate.contract.readings import Reading
from citygate.contract.topics import telemetry_topic

RSS_BOUND_MB = 300


def _fuzz(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    pki = ctx.pki
    fuzz_id = "fuzz-0001"
    pki.issue_devices([record(fuzz_id, node.name)])
    ctx.start_fleet(ctx.count(50, 500), ctx.size(200, 2000))
    validator, _, _ = gateway_validator(ctx)

    def connect() -> MqttPeer:
        """The fuzzing device on the gateway's broker, with its own valid certificate."""
        return MqttPeer.connect(
            node.broker.device_port,
            ca=ctx.infra_ca,
            cert=pki.files(CertKind.DEVICE, fuzz_id),
            client_id=fuzz_id,
        )

    assert ctx.stack is not None
    with RssPeak({"agent": node.agent.pid, "cloud": ctx.stack.cloud.pid if ctx.stack.cloud else None}) as rss:
        ctx.figure("agent_rss_before_mb", round(rss.now_mb("agent"), 1))
        ctx.figure("cloud_rss_before_mb", round(rss.now_mb("cloud"), 1))
        # At the gateway: a device with a valid certificate, on its own topic.
        # Over the agent's max_payload_bytes but under the broker's max_packet_size: the agent
        # must reject them; bigger ones the broker must refuse before anyone holds them in memory.
        huge = [20_000, 256 * 1024, MB - 1024]
        oversized = [4 * MB] + ([16 * MB, 64 * MB] if ctx.long else [])
        garbage = mqtt_garbage(ctx.rng, ctx.count(300, 5000), huge)
        accepted_locally = [k for k, p in garbage if isinstance(validator.validate(fuzz_id, p), Reading)]
        ctx.check(
            "every generated payload is invalid", not accepted_locally, f"valid: {accepted_locally[:5]}"
        )
        attacker = connect()
        ctx.check("fuzzing device connected", attacker.connected, attacker.reason)
        rejected0, out0 = rejected_total(ctx), readings_out(ctx)
        delivered = 0
        t0 = time.monotonic()
        for _kind, payload in garbage:
            delivered += attacker.publish(telemetry_topic(fuzz_id), payload, timeout=30)
        # A burst of big ones without waiting for each PUBACK.
        burst = ctx.count(8, 32)
        infos = (
            []
            if attacker.client is None
            else [
                attacker.client.publish(telemetry_topic(fuzz_id), b"[" + b"0," * (256 * 1024) + b"0]", qos=1)
                for _ in range(burst)
            ]
        )
        for info in infos:
            info.wait_for_publish(60)
            delivered += info.is_published()
        ctx.act(
            f"device {fuzz_id}: {len(garbage) + burst:,} bad payloads on its own topic in "
            f"{time.monotonic() - t0:.1f} s (largest {max(huge) // 1024} KiB; a burst of {burst} x 512 KiB), "
            f"{delivered:,} acknowledged by the broker"
        )
        try:
            ctx.wait_for(
                lambda: rejected_total(ctx) - rejected0 >= delivered,
                timeout=60,
                what="every bad payload counted as rejected",
            )
        except TimeoutError as e:
            ctx.act(str(e))
        ctx.sleep(1.0)
        counted = rejected_total(ctx) - rejected0
        reasons = ctx.health().get("rejected")
        ctx.check(
            "gateway: every bad payload rejected with a reason",
            counted == delivered,
            f"{delivered:,} delivered, {counted:,} rejected: {reasons}",
        )
        attacker.close()

        # Packets over the broker's max_packet_size: the connection is closed, nothing delivered.
        refused_big = 0
        rejected_before = rejected_total(ctx)
        for size in oversized:
            big = connect()
            acked = big.publish(
                telemetry_topic(fuzz_id), b'{"ts":1,"seq":1,"readings":{"laeq":' + b"1" * size + b"}}", 20
            )
            deadline = time.monotonic() + 20
            while not big.disconnects and time.monotonic() < deadline:
                time.sleep(0.1)
            refused_big += int(not acked and bool(big.disconnects))
            big.close()
        ctx.act(
            f"device {fuzz_id}: {len(oversized)} packets over max_packet_size ({oversized[-1] // MB} MiB max)"
        )
        ctx.check(
            "broker: oversized packets refused (connection closed), never delivered",
            refused_big == len(oversized) and rejected_total(ctx) == rejected_before,
            f"{refused_big}/{len(oversized)} refused; agent rejected {rejected_total(ctx) - rejected_before}",
        )

        # At the cloud: garbage as an authenticated gateway.
        statuses: dict[int | str, int] = {}
        bad: list[str] = []
        sent = 0
        with https(ctx, pki.files(CertKind.GATEWAY, node.name), timeout=60) as c:
            for kind, body, headers in cloud_garbage(ctx.rng, ctx.count(150, 3000), ctx.count(64, 1024) * MB):
                sent += 1
                try:
                    resp = c.post("/v1/ingest", content=body, headers=headers)
                except httpx.TransportError as e:
                    statuses["closed"] = statuses.get("closed", 0) + 1
                    bad.append(f"{kind}: connection error {type(e).__name__}")
                    continue
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code == 200:
                    doc = resp.json()
                    if doc.get("accepted") != 0 or not all(r.get("reason") for r in doc.get("rejected", [])):
                        bad.append(f"{kind}: 200 {resp.text[:200]}")
                elif resp.status_code not in (400, 413, 415, 422):
                    bad.append(f"{kind}: {resp.status_code} {resp.text[:200]}")

            # Streamed (chunked) beyond the body limit.
            def stream() -> Iterator[bytes]:
                for _ in range(12):
                    yield ctx.rng.randbytes(MB // 2)

            code = outcome(
                lambda: c.post("/v1/ingest", content=stream(), headers={"Content-Encoding": "gzip"})
            )
            statuses[code] = statuses.get(code, 0) + 1
            sent += 1
            if code not in (413, "refused"):
                bad.append(f"chunked 6 MiB: {code}")
        ctx.act(f"{sent:,} garbage requests to POST /v1/ingest as the gateway: {statuses}")
        ctx.check(
            "cloud: every garbage request refused with a 4xx (or its readings rejected)",
            not bad,
            "; ".join(bad[:5]),
        )
        fives = sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500)
        ctx.check("cloud: no 5xx", fives == 0, f"{fives} 5xx")
        ctx.check(
            "good data kept flowing during the fuzzing",
            readings_out(ctx) > out0,
            f"readings_out {out0:,} -> {readings_out(ctx):,}",
        )
        ctx.check("agent alive", node.agent.running and bool(ctx.health()))
        ctx.check("cloud alive", ctx.stack.cloud is not None and ctx.stack.cloud.running)
    for name, peak in rss.peak_mb.items():
        ctx.figure(f"{name}_rss_peak_mb", round(peak, 1))
        ctx.check(
            f"{name} memory bounded", peak < RSS_BOUND_MB, f"peak {peak:.0f} MB (bound {RSS_BOUND_MB} MB)"
        )
    ctx.audit_fleets()


SCENARIO = Scenario(
    12,
    "fuzz",
    "Payload fuzzing at the gateway and the cloud",
    "A device with a valid certificate publishes huge, deeply nested, non-finite, wrongly typed, invalid "
    "UTF-8 and random payloads on its own topic, and a gateway posts garbage, gzip bombs and bad headers "
    "to /v1/ingest: every payload is counted as rejected with a reason, the cloud answers 4xx and never "
    "5xx, both stay under a memory bound, and the fleet's data keeps flowing with nothing lost.",
    _fuzz,
)
