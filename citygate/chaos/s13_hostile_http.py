"""Scenario 13: slow and hostile HTTP clients against the cloud while the gateway delivers."""

from __future__ import annotations

import time

from citygate.certs.pki import CertKind
from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.health import readings_out
from citygate.chaos.https import https, outcome, raw_request
from citygate.chaos.slowloris import Slowloris


def _hostile_http(ctx: ChaosContext) -> None:
    from citygate.cloud.settings import CloudSettings

    node = ctx.start_system()
    assert ctx.stack is not None and ctx.stack.cloud is not None
    port, ca = ctx.stack.cloud_port, ctx.infra_ca
    header_timeout = float(CloudSettings.model_fields["header_timeout_s"].default)
    ctx.start_fleet(ctx.count(50, 500), ctx.size(200, 2000))
    gw_cert = ctx.pki.files(CertKind.GATEWAY, node.name)
    out0 = readings_out(ctx)
    attack_s = ctx.size(header_timeout + 8.0, 150.0)
    slow = Slowloris(port, ctx.count(100, 500), ca=ca, drip_every=ctx.size(1.0, 2.0), replace=True).start()
    silent = Slowloris(port, ctx.count(50, 300), ca=None, drip_every=1.0, replace=False).start()
    ctx.act(
        f"{slow.n} TLS clients sending their headers a byte every {slow.drip_every:.0f} s (replaced when "
        f"closed) and {silent.n} TCP clients that never start TLS, for {attack_s:.0f} s"
    )
    latencies: list[float] = []
    probe_status: dict[int | str, int] = {}
    t_end = time.monotonic() + attack_s
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        with https(ctx, gw_cert, timeout=30) as c:  # a new connection each time: handshake included
            got = outcome(lambda c=c: c.get("/readyz"))  # type: ignore[misc]
        latencies.append(time.monotonic() - t0)
        probe_status[got] = probe_status.get(got, 0) + 1
        ctx.sleep(0.5)
    # Huge headers and many headers, while the slow clients are still there.
    big = {
        "16 KiB header": 16 * 1024,
        "60 KiB header": 60 * 1024,
        "100 KiB header": 100 * 1024,
        "1 MiB header": 1024 * 1024,
    }
    header_status: dict[str, int | str] = {}
    for name, size in big.items():
        req = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        header_status[name] = raw_request(port, ca, req)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(ctx.count(3000, 20000)))
    header_status["many headers"] = raw_request(
        port, ca, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n"
    )
    long_url = b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    header_status["200 KB request line"] = raw_request(port, ca, long_url)
    ctx.act(f"huge headers: {header_status}")
    out1 = readings_out(ctx)
    slow.stop()
    lifetimes, still_open = slow.lifetimes()
    silent_lives, silent_open = silent.lifetimes()
    if ctx.long:
        # The TLS handshake is bounded by asyncio's 60 s: wait for the silent ones to go.
        try:
            ctx.wait_for(lambda: not silent.any_open(), timeout=90, what="silent TCP clients closed")
        except TimeoutError as e:
            ctx.act(str(e))
        silent_lives, silent_open = silent.lifetimes()
    silent.stop()

    lat = sorted(latencies)
    ctx.figure("probe_p50_s", round(lat[len(lat) // 2], 3))
    ctx.figure("probe_max_s", round(lat[-1], 3))
    ctx.figure("slow_connections_opened", len(slow.held))
    ctx.figure("slow_connection_max_life_s", round(max(lifetimes, default=0.0), 1))
    ctx.check(
        "well-behaved gateway requests answered during the attack",
        set(probe_status) == {200},
        f"{len(latencies)} GET /readyz with a new TLS connection each: {probe_status}",
    )
    ctx.check(
        "and promptly",
        lat[-1] < 3.0,
        f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms",
    )
    ctx.check("the gateway kept delivering", out1 > out0, f"readings_out {out0:,} -> {out1:,}")
    bound = header_timeout + 2 * slow.drip_every + 2.0
    ctx.check(
        "slow clients are disconnected by the server",
        bool(lifetimes) and max(lifetimes) <= bound and still_open <= slow.n,
        f"{len(lifetimes)} of {len(slow.held)} closed by the server, "
        f"longest lived {max(lifetimes, default=0):.1f} s "
        f"(header timeout {header_timeout:.0f} s); {slow.open_failures} could not connect",
    )
    if ctx.long:
        ctx.figure("silent_connection_max_life_s", round(max(silent_lives, default=0.0), 1))
        ctx.check(
            "silent TCP clients are disconnected (TLS handshake timeout)",
            silent_open == 0 and max(silent_lives, default=0.0) < 75.0,
            f"{len(silent_lives)} closed, longest {max(silent_lives, default=0):.0f} s, "
            f"{silent_open} still open",
        )
    else:
        ctx.act(
            f"silent TCP clients: {len(silent_lives)} closed, {silent_open} still open "
            "(asyncio closes at 60 s)"
        )
    fives = {k: v for k, v in header_status.items() if isinstance(v, int) and v >= 500}
    # h11 refuses a request whose head is still incomplete beyond 64 KiB of buffered bytes; a head
    # that arrives whole in fewer reads may be parsed: only the megabyte one is certain to be refused.
    refused_ok = header_status["1 MiB header"] in (400, 431, "closed")
    ctx.check(
        "a 1 MiB header is refused (400/431 or closed); no header size gets a 5xx",
        refused_ok and not fives,
        str(header_status),
    )
    ctx.check("cloud alive", ctx.stack.cloud.running)
    ctx.audit_fleets()


SCENARIO = Scenario(
    13,
    "hostile-http",
    "Slow and hostile HTTP clients against the cloud",
    "While the gateway delivers, hundreds of TLS clients send their headers a byte at a time, TCP "
    "clients "
    "never start TLS, and others send huge headers: gateway requests keep being answered promptly, slow "
    "clients are disconnected after the header timeout, huge headers get 400/431, never a 5xx.",
    _hostile_http,
)
