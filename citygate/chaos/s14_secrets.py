"""Scenario 14: secrets and exposure after a run: file modes, logs, command lines, environments,
weak credentials, listeners."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import psutil

from citygate.certs.pki import CaName, CertKind
from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.https import https
from citygate.errors import ConfigError

_LOG_NAMES = ("*.log", "*.stdout", "*.stderr")
_MB = 1024 * 1024


def _files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def _secrets(ctx: ChaosContext) -> None:
    from citygate.cloud.settings import CloudSettings
    from citygate.gateway.settings import GatewaySettings

    node = ctx.start_system()
    stack = ctx.stack
    assert stack is not None and stack.cloud is not None and stack.influx is not None
    pki = ctx.pki
    fleet = ctx.start_fleet(ctx.count(20, 200), ctx.size(100, 1000))
    bogus = "chaos-bogus-" + "b" * 30
    with https(ctx, pki.files(CertKind.GATEWAY, node.name), readers=True) as c:
        for token in (stack.operator_token, bogus):
            for url in ("/v1/gateways", "/metrics", "/v1/devices"):
                c.get(url, headers={"Authorization": f"Bearer {token}"})
        no_token = c.get("/v1/gateways").status_code
        bad_token = c.get("/v1/gateways", headers={"Authorization": f"Bearer {bogus}"}).status_code
    ctx.check("reads without a token refused", no_token == 401, str(no_token))
    ctx.check("reads with an unknown token refused", bad_token in (401, 403), str(bad_token))
    ctx.sleep(ctx.size(5.0, 30.0))
    ctx.act("operator and bogus bearer tokens sent to the cloud; the fleet ran")

    # Which bytes are secret: every private key (its PEM and its base64 body), the tokens.
    keys = [
        p
        for p in _files(stack.dir)
        if p.suffix in (".key", ".pem") and b"PRIVATE KEY" in p.read_bytes()[:100]
    ]
    key_bodies = [p.read_bytes().splitlines()[1] for p in keys]
    secrets = [b"PRIVATE KEY", stack.operator_token.encode(), bogus.encode(), *key_bodies]
    ctx.check("private keys found", len(keys) >= 4, f"{len(keys)} key files")

    # File modes: keys and files holding tokens are 0600 (or stricter).
    loose: list[str] = []
    holding_token: list[Path] = []
    for path in _files(stack.dir):
        if path.stat().st_size > 8 * _MB:
            continue
        data = path.read_bytes()
        is_key = b"PRIVATE KEY" in data[:100]
        if stack.operator_token.encode() in data:
            holding_token.append(path)
        if (is_key or stack.operator_token.encode() in data) and path.stat().st_mode & 0o077:
            loose.append(f"{path.relative_to(stack.dir)} {stat.filemode(path.stat().st_mode)}")
    ctx.check("private keys and token files are 0600", not loose, "; ".join(loose[:5]) or f"{len(keys)} keys")
    ctx.figure("files_with_the_operator_token", len(holding_token))

    # Logs of every process: no key, no token.
    logs = [p for pattern in _LOG_NAMES for p in ctx.dir.rglob(pattern)] + [fleet.log]
    leaks = [f"{p.relative_to(ctx.dir)}" for p in set(logs) if any(s in p.read_bytes() for s in secrets)]
    ctx.check("no key or token in any log", not leaks, f"{len(set(logs))} logs; leaks: {leaks[:5]}")

    # Command lines and environments of the running processes.
    procs = {
        "agent": node.agent.pid,
        "cloud": stack.cloud.pid,
        "broker": node.broker.process.pid,
        "influxdb": stack.influx.process.pid if hasattr(stack.influx, "process") else None,
        "simulator": fleet.proc.pid,
    }
    exposed: list[str] = []
    for name, pid in procs.items():
        if pid is None:
            continue
        try:
            proc = psutil.Process(pid)
            argv = "\0".join(proc.cmdline()).encode()
            env = "\0".join(f"{k}={v}" for k, v in proc.environ().items()).encode()
        except (psutil.NoSuchProcess, psutil.AccessDenied) as e:
            exposed.append(f"{name}: cannot read ({e})")
            continue
        if any(s in argv for s in secrets):
            exposed.append(f"{name}: argv")
        if any(s in env for s in secrets):
            exposed.append(f"{name}: environment")
    ctx.check(
        "no key or token in a command line or environment",
        not exposed,
        ", ".join(exposed) or f"{len(procs)} processes",
    )

    # No weak or default credentials: the cloud refuses to start with them.
    cloud_cfg = stack.dir / "cloud.toml"
    weak_refused: list[str] = []
    for label, tokens in (
        ("empty", {"ops": ""}),
        ("short", {"ops": "admin"}),
        ("23 chars", {"ops": "x" * 23}),
    ):
        try:
            CloudSettings.load(cloud_cfg, operator_tokens=tokens)
        except ConfigError:
            weak_refused.append(label)
    ctx.check(
        "cloud refuses empty and short operator tokens",
        weak_refused == ["empty", "short", "23 chars"],
        f"refused: {weak_refused}",
    )
    try:
        GatewaySettings.load(node.config_path, cloud_url="http://localhost:1")
        plain_refused = False
    except ConfigError:
        plain_refused = True
    ctx.check("gateway refuses a plaintext cloud URL", plain_refused)
    cfg = CloudSettings.load(cloud_cfg)
    ctx.check(
        "cloud requires TLS with the infrastructure CA only",
        cfg.client_ca == pki.ca_cert_path(CaName.INFRA) and cfg.tls_key.exists(),
        f"client_ca {cfg.client_ca.name}",
    )

    # Listeners: exactly what the configuration says, loopback here.
    want = {
        "agent": {("127.0.0.1", node.http_port)},
        "cloud": {(cfg.host, cfg.port)}
        | ({(cfg.gateway_host or cfg.host, cfg.gateway_port)} if cfg.gateway_port else set()),
        "broker": {
            (node.broker.config.device_host, node.broker.device_port),
            (node.broker.config.gateway_host, node.broker.gateway_port),
        },
    }
    for name, expected in want.items():
        pid = procs[name]
        assert pid is not None
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        ctx.check(f"{name} listens only where configured", listening == expected, f"{sorted(listening)}")
    ctx.audit_fleets()


SCENARIO = Scenario(
    14,
    "secrets",
    "Secrets and exposure",
    "After a run: private keys and files holding tokens are 0600; no key or token appears in any log, "
    "command line or environment; the cloud refuses empty or short tokens and the gateway a plaintext "
    "URL; "
    "every process listens only on the addresses its configuration names.",
    _secrets,
)
