"""``citygate gateway deadletters`` shows device text as plain text, control characters visible.

A dead letter's device id, detail and payload come from a device (or from what a device
sent): rendered as rich markup, the payload ``{"readings":{"[/]":1}}`` crashed the command
(``MarkupError``), and an escape sequence in a payload reached the operator's terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from citygate.cli.gateway import visible
from citygate.config import toml_section
from citygate.gateway.outbox import DeadLetter, Outbox

ESC_PAYLOAD = b'{"readings":{"pm2_5":"\x1b[2J\x1b]0;owned\x07"},"note":"\xe2\x80\xaeevil"}'
MARKUP_PAYLOAD = b'{"readings":{"[/]":1}}'


@pytest.fixture
def gateway_config(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    outbox = Outbox(state / "outbox.db")
    try:
        outbox.commit(
            [],
            [
                DeadLetter(
                    1_767_225_600_000_000_000, "dev-a", "bad_shape", "field [/] unknown", MARKUP_PAYLOAD
                ),
                DeadLetter(
                    1_767_225_601_000_000_000, "dev-b", "malformed_json", "bad \x1b[31mred", ESC_PAYLOAD
                ),
            ],
            free_disk=10**12,
        )
    finally:
        outbox.close()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        toml_section(
            "gateway",
            {
                "cert_file": str(tmp_path / "gw.pem"),
                "key_file": str(tmp_path / "gw.key"),
                "ca_file": str(tmp_path / "ca.pem"),
                "inventory": str(tmp_path / "inventory.json"),
                "state_dir": str(state),
                "cloud_url": "https://cloud.invalid",
                "outbox_min_free_disk_bytes": 0,
            },
        )
    )
    return cfg


def _deadletters(cfg: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYGATE_")}
    env["COLUMNS"] = "400"  # one line per cell: nothing folded
    return subprocess.run(
        [sys.executable, "-m", "citygate", "gateway", "deadletters", "--config", str(cfg), *extra],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_table_shows_device_text_plainly_with_control_characters_visible(gateway_config: Path) -> None:
    r = _deadletters(gateway_config)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    out = r.stdout.decode()
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, repr(out)
    assert '{"readings":{"[/]":1}}' in out  # shown as it is, not parsed as markup
    assert "field [/] unknown" in out
    assert r"\x1b[2J\x1b]0;owned\x07" in out
    assert r"\u202eevil" in out
    assert r"bad \x1b[31mred" in out


def test_escape_sequences_never_reach_the_terminal(gateway_config: Path) -> None:
    r = _deadletters(gateway_config, "--reason", "malformed_json")  # no markup in this one
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout, r.stdout
    assert rb"\x1b[2J" in r.stdout


def test_json_output_keeps_the_exact_text(gateway_config: Path) -> None:
    r = _deadletters(gateway_config, "--json")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"\x1b" not in r.stdout  # JSON escapes control characters itself
    rows = orjson.loads(r.stdout)
    assert {row["payload"] for row in rows} == {MARKUP_PAYLOAD.decode(), ESC_PAYLOAD.decode()}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain {json} [b]x[/b]", "plain {json} [b]x[/b]"),
        ("\x1b[31m", r"\x1b[31m"),
        ("a\tb\nc\r", r"a\x09b\x0ac\x0d"),
        ("\x00\x7f\x9b", r"\x00\x7f\x9b"),
        ("\u202e\u200b\u2028", r"\u202e\u200b\u2028"),
        ("\U000e0001", r"\U000e0001"),
        ("é ü 温度", "é ü 温度"),
    ],
)
def test_visible(text: str, shown: str) -> None:
    assert visible(text) == shown
