"""Scenario 10: a device with a valid certificate acting as others: forged readings and acks on
their topics, eavesdropping, client-id takeovers."""

from __future__ import annotations

import time

from citygate.certs.pki import CertKind
from citygate.chaos.devices import FORGED_SEQ, gateway_validator, profile_of, record, valid_payload
from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.influx import stored_seqs
from citygate.chaos.mqtt_peer import MqttPeer
from citygate.chaos.publisher import Publisher
from citygate.contract.readings import Reading
from citygate.contract.topics import ack_topic, telemetry_topic


def _impersonation(ctx: ChaosContext) -> None:
    ctx.start_system()
    pki = ctx.pki
    victim_id, attacker_id = "victim-0001", "mallory-0001"
    pki.issue_devices([record(victim_id, ctx.node.name), record(attacker_id, ctx.node.name)])
    devices = ctx.count(50, 500)
    fleet = ctx.start_fleet(devices, ctx.size(200, 2000))
    validator, inventory, registry = gateway_validator(ctx)
    port, ca = ctx.node.broker.device_port, ctx.infra_ca

    victim = MqttPeer.connect(port, ca=ca, cert=pki.files(CertKind.DEVICE, victim_id), client_id=victim_id)
    ctx.check("victim device connected with its own certificate", victim.connected, victim.reason)
    victim.subscribe(ack_topic(victim_id))
    noise = registry.get("noise", 1)
    publisher = Publisher(victim, victim_id, noise, rate=ctx.size(20, 50)).start()
    attacker = MqttPeer.connect(
        port, ca=ca, cert=pki.files(CertKind.DEVICE, attacker_id), client_id=attacker_id
    )
    ctx.check("attacker device connected with its own certificate", attacker.connected, attacker.reason)
    connects_before = int(fleet.stats().get("connects", 0))

    # Forged readings on another device's topic: the victim's and fleet devices'.
    rounds = ctx.count(3, 20)
    forged = would_store = 0
    fleet_ids = [f"sim-{i:05d}" for i in range(1, devices + 1)]
    for r in range(rounds):
        batch = ctx.count(50, 200)
        for i in range(batch):
            seq = FORGED_SEQ + r * batch + i
            target = victim_id if i % 2 == 0 else ctx.rng.choice(fleet_ids)
            payload = valid_payload(profile_of(inventory, registry, target), seq)
            would_store += isinstance(validator.validate(target, payload), Reading)
            forged += attacker.publish(telemetry_topic(target), payload)
            attacker.publish(ack_topic(target), b"forged-ack")  # the acks a device trusts
        # Eavesdropping on everyone's telemetry.
        attacker.subscribe("devices/+/telemetry")
        attacker.subscribe(f"devices/{victim_id}/ack")
        # Taking over sessions by client id: the victim's and a fleet device's.
        for stolen in (victim_id, ctx.rng.choice(fleet_ids)):
            thief = MqttPeer.connect(
                port, ca=ca, cert=pki.files(CertKind.DEVICE, attacker_id), client_id=stolen
            )
            time.sleep(0.3)
            thief.close()
        ctx.sleep(ctx.size(1.0, 5.0))
    ctx.act(
        f"attacker {attacker_id}: {forged:,} forged readings on the victim's and fleet devices' topics, "
        f"forged acks, a wildcard subscription, {2 * rounds} client-id takeovers ({rounds} rounds)"
    )
    ctx.check(
        "the forged readings are valid (the gateway would store them if they got through)",
        would_store == forged,
        f"{would_store:,} of {forged:,}",
    )
    acks_mid = victim.received(lambda t, p: t == ack_topic(victim_id))
    ctx.sleep(ctx.size(3.0, 10.0))
    acks_end = victim.received(lambda t, p: t == ack_topic(victim_id))
    ctx.check(
        "victim never kicked off",
        not victim.disconnects and victim.connected,
        f"{len(victim.disconnects)} disconnects",
    )
    ctx.check(
        "victim's readings keep being confirmed after the attacks",
        acks_end > acks_mid,
        f"acks {acks_mid} -> {acks_end}",
    )
    ctx.check(
        "no forged ack reached the victim",
        victim.received(lambda t, p: p == b"forged-ack") == 0,
    )
    others = attacker.received(lambda t, p: t != ack_topic(attacker_id))
    ctx.check("attacker received nobody else's messages", others == 0, f"{others} messages")
    connects_after = int(fleet.stats().get("connects", 0))
    ctx.check(
        "no fleet device lost its session to a takeover",
        connects_after == connects_before,
        f"fleet connects {connects_before} -> {connects_after}",
    )
    publisher.stop()
    victim.close()
    attacker.close()
    ctx.act(f"victim {victim_id} published {len(publisher.sent):,} readings throughout")
    ctx.audit_fleets()
    stored = stored_seqs(ctx, noise.measurement, victim_id)
    ctx.check(
        "victim's readings all stored, once",
        sorted(stored) == sorted(publisher.sent),
        f"sent {len(publisher.sent):,}, stored {len(stored):,}",
    )
    from_attacker = sum(1 for s in stored if s >= FORGED_SEQ)
    ctx.check(
        "nothing of the attacker's stored under the victim", from_attacker == 0, f"{from_attacker} forged"
    )
    ctx.check(
        "attacker stored nothing under its own name either (it sent nothing there)",
        not stored_seqs(ctx, noise.measurement, attacker_id),
    )


SCENARIO = Scenario(
    10,
    "impersonation",
    "A device impersonating another",
    "A device with a valid certificate publishes forged readings and acks on other devices' "
    "topics, subscribes to everyone's telemetry and connects with other devices' client ids while they "
    "publish: the broker drops all of it, nothing forged is stored, and no victim is disconnected or "
    "loses a reading.",
    _impersonation,
)
