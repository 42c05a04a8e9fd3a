"""``citygate profiles`` through the typer app (in-process runner)."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from citygate.cli.profiles import app

runner = CliRunner()

EXTRA = """\
name = "air_quality"
version = 2
title = "Air quality station with CO2"
description = "v1 plus CO2."
expected_interval_s = 120

[fields.co2]
type = "float"
unit = "ppm"
min = 0.0
max = 10000.0
required = true
description = "Carbon dioxide"
"""


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_no_args_shows_help():
    r = run()
    assert "list" in r.output and "schema" in r.output


def test_list_shows_every_profile():
    r = run("list")
    assert r.exit_code == 0, r.output
    for name in (
        "air_quality",
        "noise",
        "traffic_counter",
        "water_level",
        "waste_bin",
        "parking",
        "street_light",
        "weather",
    ):
        assert name in r.output
    assert "Air quality station" in r.output
    assert "60 s" in r.output and "3600 s" in r.output
    assert "9 (7 required)" in r.output


def test_list_with_extra_directory(tmp_path):
    (tmp_path / "air_quality.v2.toml").write_text(EXTRA)
    r = run("list", "--profiles-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "120 s" in r.output and "1 (1 required)" in r.output


def test_schema_prints_json_schema():
    r = run("schema", "air_quality")
    assert r.exit_code == 0, r.output
    schema = orjson.loads(r.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "pm2_5" in schema["properties"]["readings"]["properties"]
    assert r.stdout.startswith("{\n  ")  # pretty


def test_schema_version_and_extra_dir(tmp_path):
    (tmp_path / "air_quality.v2.toml").write_text(EXTRA)
    latest = orjson.loads(run("schema", "air_quality", "--profiles-dir", str(tmp_path)).stdout)
    assert list(latest["properties"]["readings"]["properties"]) == ["co2"]
    v1 = orjson.loads(run("schema", "air_quality", "--version", "1", "--profiles-dir", str(tmp_path)).stdout)
    assert "pm10" in v1["properties"]["readings"]["properties"]


def test_unknown_profile_exits_2_with_a_message_on_stderr():
    r = run("schema", "teleporter")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert "unknown device profile 'teleporter'" in r.stderr and "air_quality" in r.stderr


def test_unknown_version_exits_2():
    r = run("schema", "parking", "--version", "5")
    assert r.exit_code == 2
    assert "no version 5" in r.stderr


def test_broken_extra_profile_is_reported(tmp_path):
    bad = tmp_path / "demo.v1.toml"
    bad.write_text('name = "demo"\nversion = 1\n')
    r = run("list", "--profiles-dir", str(tmp_path))
    assert r.exit_code == 2
    assert "demo.v1.toml" in r.stderr and "title" in r.stderr
