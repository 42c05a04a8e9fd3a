"""Device profiles: the packaged files load, broken files fail loudly, the JSON Schema is right."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from citygate.contract.profiles import (
    JSON_SCHEMA_DIALECT,
    DeviceProfile,
    FieldSpec,
    ProfileRegistry,
    packaged_profiles_dir,
    parse_profile,
)
from citygate.errors import ProfileError

EXPECTED = {
    "air_quality",
    "noise",
    "traffic_counter",
    "water_level",
    "waste_bin",
    "parking",
    "street_light",
    "weather",
}

GOOD = """\
name = "demo"
version = 1
title = "Demo sensor"
description = "A test profile."
expected_interval_s = 30

[fields.level]
type = "float"
unit = "m"
min = 0.0
max = 10.0
required = true
description = "Level"

[fields.ok]
type = "bool"
required = false
description = "Status"
"""


@pytest.fixture(scope="module")
def registry() -> ProfileRegistry:
    return ProfileRegistry()


def write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text, encoding="utf-8")
    return p


# -- packaged profiles ---------------------------------------------------------


def test_every_packaged_profile_loads(registry):
    assert set(registry.names()) >= EXPECTED
    files = sorted(p.name for p in packaged_profiles_dir().iterdir() if p.name.endswith(".toml"))
    assert len(files) == len(registry)
    for p in registry:
        assert f"{p.name}.v{p.version}.toml" in files
        assert p.fields and p.expected_interval_s > 0
        assert p.required_fields, f"{p.name} has no required field"
        for fname, spec in p.fields.items():
            assert re.fullmatch(r"[a-z][a-z0-9_]*", fname) and len(fname) <= 32
            assert spec.description
            if spec.type in ("float", "int"):
                assert spec.min is not None and spec.max is not None, (p.name, fname)
            else:
                assert spec.unit is None


def test_packaged_units_are_senml_names(registry):
    units = {f.unit for p in registry for f in p.fields.values() if f.unit}
    # a sample of what the fleet uses; all are SenML/UCUM spellings
    assert {"ug/m3", "ppb", "ppm", "Cel", "%RH", "hPa", "m/s", "deg", "mm/h", "dB", "%", "W", "kWh"} <= units
    assert registry.get("air_quality").fields["pm2_5"].unit == "ug/m3"


def test_battery_is_a_percentage_where_present(registry):
    batteries = [p.fields["battery"] for p in registry if "battery" in p.fields]
    assert len(batteries) >= 4
    for b in batteries:
        assert (b.type, b.unit, b.min, b.max) == ("float", "%", 0.0, 100.0)


def test_get_latest_and_versions(registry):
    aq = registry.get("air_quality")
    assert aq is registry.latest("air_quality") is registry.get("air_quality", 1)
    assert aq.measurement == "air_quality"
    assert registry.get("traffic_counter").measurement == "traffic"
    assert registry.versions("air_quality") == [1]
    assert "air_quality" in registry and ("air_quality", 1) in registry and "nope" not in registry
    assert [p.key for p in registry] == sorted(p.key for p in registry)


def test_unknown_profile_lists_known_names(registry):
    with pytest.raises(ProfileError, match=r"unknown device profile 'nope'; known profiles: air_quality, "):
        registry.get("nope")
    with pytest.raises(ProfileError, match=r"no version 7; known versions: 1"):
        registry.get("parking", 7)
    with pytest.raises(ProfileError, match="unknown device profile"):
        registry.latest("nope")


def test_extra_directory_adds_a_newer_version(tmp_path):
    text = GOOD.replace('name = "demo"', 'name = "air_quality"').replace("version = 1", "version = 2")
    write(tmp_path, "air_quality.v2.toml", text)
    write(tmp_path, "demo.v1.toml", GOOD)
    write(tmp_path, "README.md", "not a profile")
    reg = ProfileRegistry([tmp_path])
    assert reg.latest("air_quality").version == 2
    assert reg.get("air_quality", 1).title == "Air quality station"
    assert reg.get("demo").measurement == "demo"  # defaults to the name
    assert reg.source("demo", 1).endswith("demo.v1.toml")


def test_identical_duplicate_is_fine_but_a_different_one_is_not(tmp_path):
    src = Path(str(packaged_profiles_dir().joinpath("parking.v1.toml")))
    shutil.copy(src, tmp_path / "parking.v1.toml")
    assert len(ProfileRegistry([tmp_path])) == len(ProfileRegistry())
    text = src.read_text().replace('title = "Parking bay occupancy sensor"', 'title = "Changed"')
    write(tmp_path, "parking.v1.toml", text)
    with pytest.raises(ProfileError, match=r"parking v1 is already defined differently in .*parking.v1.toml"):
        ProfileRegistry([tmp_path])


def test_missing_extra_directory(tmp_path):
    with pytest.raises(ProfileError, match="does not exist"):
        ProfileRegistry([tmp_path / "nope"])


def test_from_profiles_and_no_packaged():
    p = parse_profile(GOOD.encode(), source="demo.v1.toml")
    reg = ProfileRegistry.from_profiles(p)
    assert reg.names() == ["demo"] and len(ProfileRegistry(include_packaged=False)) == 0


# -- broken files --------------------------------------------------------------

BROKEN = [
    ("syntax", "demo.v1.toml", GOOD.replace("version = 1", "version = "), "not valid TOML"),
    ("unknown key", "demo.v1.toml", GOOD.replace('unit = "m"', 'units = "m"'), "fields.level.units"),
    ("min > max", "demo.v1.toml", GOOD.replace("min = 0.0", "min = 20.0"), "min (20.0) is greater than max"),
    (
        "range on bool",
        "demo.v1.toml",
        GOOD.replace('type = "bool"', 'type = "bool"\nmin = 0'),
        "min/max are only allowed for numeric fields",
    ),
    (
        "unit on bool",
        "demo.v1.toml",
        GOOD.replace('type = "bool"', 'type = "bool"\nunit = "%"'),
        "has no unit",
    ),
    ("nan bound", "demo.v1.toml", GOOD.replace("max = 10.0", "max = nan"), "fields.level.max"),
    ("inf bound", "demo.v1.toml", GOOD.replace("max = 10.0", "max = inf"), "finite"),
    ("bad type", "demo.v1.toml", GOOD.replace('type = "float"', 'type = "double"'), "fields.level.type"),
    ("string interval", "demo.v1.toml", GOOD.replace("= 30", '= "30"'), "expected_interval_s"),
    ("zero interval", "demo.v1.toml", GOOD.replace("= 30", "= 0"), "expected_interval_s"),
    ("version 0", "demo.v0.toml", GOOD.replace("version = 1", "version = 0"), "key 'version'"),
    ("no fields", "demo.v1.toml", GOOD.split("[fields.level]")[0] + "fields = {}\n", "key 'fields'"),
    (
        "uppercase field",
        "demo.v1.toml",
        GOOD.replace("[fields.level]", "[fields.Level]"),
        "'Level' must match",
    ),
    ("reserved field", "demo.v1.toml", GOOD.replace("[fields.level]", "[fields.time]"), "'time' is reserved"),
    ("long field", "demo.v1.toml", GOOD.replace("[fields.level]", f"[fields.{'a' * 33}]"), "at most 32"),
    ("bad unit", "demo.v1.toml", GOOD.replace('unit = "m"', 'unit = "µg/m³"'), "not a SenML/UCUM unit"),
    (
        "float bound on int",
        "demo.v1.toml",
        GOOD.replace('type = "float"', 'type = "int"').replace("min = 0.0", "min = 0"),
        "max of an int field must be an integer",
    ),
    ("required missing", "demo.v1.toml", GOOD.replace("required = true\n", ""), "fields.level.required"),
    ("name mismatch", "other.v1.toml", GOOD, "file name says other v1 but the file defines name = 'demo'"),
    ("version mismatch", "demo.v2.toml", GOOD, "file name says demo v2"),
    ("bad file name", "demo.toml", GOOD, "<name>.v<version>.toml"),
    (
        "bad measurement",
        "demo.v1.toml",
        GOOD.replace("version = 1", 'version = 1\nmeasurement = "a b"'),
        "measurement",
    ),
]


@pytest.mark.parametrize(("filename", "text", "needle"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_profile_names_file_and_problem(tmp_path, filename, text, needle):
    path = write(tmp_path, filename, text)
    with pytest.raises(ProfileError) as exc:
        ProfileRegistry([tmp_path])
    msg = str(exc.value)
    assert str(path) in msg
    assert needle in msg


def test_not_utf8(tmp_path):
    (tmp_path / "demo.v1.toml").write_bytes(b"name = '\xff'")
    with pytest.raises(ProfileError, match="not UTF-8"):
        ProfileRegistry([tmp_path])


def test_models_are_frozen_and_strict():
    p = parse_profile(GOOD.encode(), source="demo.v1.toml")
    with pytest.raises(ValidationError):
        p.version = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        FieldSpec(type="float", required="yes", description="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DeviceProfile(
            name="x",
            version=True,
            title="t",
            description="d",
            expected_interval_s=1,  # type: ignore[arg-type]
            fields={"a": FieldSpec(type="bool", required=True, description="d")},
        )


# -- JSON Schema -----------------------------------------------------------------


def checked_validator(schema: dict) -> jsonschema.protocols.Validator:
    """A jsonschema validator of the draft the schema declares in "$schema" (2020-12), after
    checking the schema itself against that draft's metaschema."""
    cls = jsonschema.validators.validator_for(schema, default=None)  # None: no "$schema"
    assert cls is jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(schema: dict, document: object) -> set[tuple[str, str]]:
    """(JSON path, failing keyword) of every error, as the jsonschema package judges them."""
    return {(e.json_path, str(e.validator)) for e in checked_validator(schema).iter_errors(document)}


def test_json_schema_structure(registry):
    aq = registry.get("air_quality")
    s = aq.json_schema()
    assert s["$schema"] == JSON_SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert s["type"] == "object" and s["additionalProperties"] is False
    assert s["required"] == ["ts", "readings"]
    assert set(s["properties"]) == {"ts", "seq", "readings"}
    assert [o["type"] for o in s["properties"]["ts"]["oneOf"]] == ["integer", "string"]
    assert s["properties"]["seq"]["minimum"] == 0
    readings = s["properties"]["readings"]
    assert readings["additionalProperties"] is False
    assert readings["required"] == ["pm2_5", "pm10", "no2", "o3", "co", "temperature", "humidity"]
    pm = readings["properties"]["pm2_5"]
    assert pm["type"] == "number" and pm["minimum"] == 0 and pm["maximum"] == 1000
    assert "[ug/m3]" in pm["description"] and pm["x-unit"] == "ug/m3"

    tc = registry.get("traffic_counter").json_schema()["properties"]["readings"]["properties"]
    assert tc["vehicles"]["type"] == "integer"
    pk = registry.get("parking").json_schema(max_string_len=64)["properties"]["readings"]["properties"]
    assert pk["occupied"] == {"type": "boolean", "description": "True when a vehicle is in the bay"}
    assert pk["bay_id"]["type"] == "string" and pk["bay_id"]["maxLength"] == 64

    good = {
        "ts": 1_700_000_000_000,
        "seq": 1,
        "readings": {
            "pm2_5": 3.5,
            "pm10": 8,
            "no2": 12.0,
            "o3": 30.0,
            "co": 0.3,
            "temperature": 12.0,
            "humidity": 80.0,
        },
    }
    assert schema_errors(s, good) == set()
    jsonschema.validate(good, s)  # the same judgement through the package's one-call API
    assert schema_errors(s, {**good, "device_id": "x"}) == {("$", "additionalProperties")}
    too_high = {**good, "readings": {**good["readings"], "pm2_5": 5000.0}}
    assert schema_errors(s, too_high) == {("$.readings.pm2_5", "maximum")}
    assert schema_errors(s, {**good, "readings": {"pm2_5": 1.0}}) == {("$.readings", "required")}
    assert schema_errors(s, {"readings": good["readings"]}) == {("$", "required")}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"readings": good["readings"]}, s)


def test_every_packaged_json_schema_is_a_valid_draft_2020_12_schema(registry):
    for p in registry:
        for schema in (p.json_schema(), p.json_schema(max_string_len=64)):
            checked_validator(schema)


def test_rfc3339_pattern_in_schema_matches_what_the_validator_accepts(registry):
    from citygate.contract.rfc3339 import parse_rfc3339_ns

    pattern = registry.get("weather").json_schema()["properties"]["ts"]["oneOf"][1]["pattern"]
    for ts in ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123456789+02:00", "2024-05-01 12:00:00z"]:
        assert re.search(pattern, ts) and parse_rfc3339_ns(ts) is not None
    for ts in ["2024-05-01T12:00:00", "2024-05-01T12:00:00.1234567891Z", "2024-05-01"]:
        assert not re.search(pattern, ts) and parse_rfc3339_ns(ts) is None
