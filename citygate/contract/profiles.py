"""Device profiles: what each sensor type sends, in which units, within which ranges.

A profile is one TOML file per sensor type and version in the packaged
``citygate/device_profiles/`` directory, named ``<name>.v<version>.toml``. The
gateway and the cloud load the same files, so a reading the gateway accepted is
one the cloud accepts too. Versions exist because a deployed fleet cannot be
upgraded at once: a device's inventory record names the exact version it speaks.

The models here check the files strictly (unknown keys, wrong types and
impossible ranges are errors naming the file and the key) because a typo in a
profile would otherwise silently reject, or worse accept, a whole fleet's data.
The hot-path checking of payloads lives in :mod:`citygate.contract.validation`;
:mod:`citygate.contract.rules` compiles these models into plain tuples once.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from citygate.contract.rfc3339 import RFC3339_PATTERN
from citygate.errors import ProfileError

FieldType = Literal["float", "int", "bool", "string"]
NUMERIC_TYPES: frozenset[str] = frozenset({"float", "int"})

# InfluxDB stores integers as signed 64-bit; an int field can never hold more.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Default longest string value; validation.ValidationLimits.max_string_len is the
# enforced limit, this is only what the JSON Schema advertises by default.
DEFAULT_MAX_STRING_LEN = 256

MAX_FIELD_NAME_LEN = 32
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
# Measurement names go into InfluxDB line protocol and InfluxQL unquoted.
_MEASUREMENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# SenML/UCUM unit names are short printable ASCII ("ug/m3", "%RH", "km/h", "W/m2").
_UNIT_RE = re.compile(r"[A-Za-z0-9%/._]{1,16}")
_FILE_RE = re.compile(r"([a-z][a-z0-9_]*)\.v([0-9]+)\.toml")

# Field names that would collide with what readings carry besides their values:
# InfluxQL's ``time`` column, the payload's ``ts``/``seq`` (seq is stored as a
# field) and the device identity stored with every point.
RESERVED_FIELD_NAMES: frozenset[str] = frozenset(
    {"time", "ts", "seq", "device_id", "site", "district", "profile", "profile_version"}
)

PROFILES_PACKAGE = "citygate"
PROFILES_DIRNAME = "device_profiles"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_JSON_TYPES: dict[str, str] = {
    "float": "number",
    "int": "integer",
    "bool": "boolean",
    "string": "string",
}


class FieldSpec(BaseModel):
    """One field of a profile: its type, unit, valid range and whether it must be present."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    type: FieldType
    unit: str | None = None
    # int | float, not float: an int field's bounds must stay exact beyond 2**53.
    min: int | float | None = None
    max: int | float | None = None
    required: bool
    description: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("unit")
    @classmethod
    def _unit_syntax(cls, v: str | None) -> str | None:
        if v is not None and _UNIT_RE.fullmatch(v) is None:
            raise ValueError(
                f"unit {v!r} is not a SenML/UCUM unit name (1-16 characters of "
                "letters, digits, '%', '/', '.', '_'; e.g. 'ug/m3', 'Cel', '%RH')"
            )
        return v

    @field_validator("min", "max")
    @classmethod
    def _finite(cls, v: int | float | None) -> int | float | None:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        numeric = self.type in NUMERIC_TYPES
        if not numeric:
            if self.min is not None or self.max is not None:
                raise ValueError(f"min/max are only allowed for numeric fields, not {self.type}")
            if self.unit is not None:
                raise ValueError(f"a {self.type} field has no unit; remove 'unit'")
        if self.type == "int":
            for key, bound in (("min", self.min), ("max", self.max)):
                if bound is None:
                    continue
                if not isinstance(bound, int):
                    raise ValueError(f"{key} of an int field must be an integer, got {bound!r}")
                if not INT64_MIN <= bound <= INT64_MAX:
                    raise ValueError(f"{key} of an int field must fit in a signed 64-bit integer")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def json_schema(self, *, max_string_len: int = DEFAULT_MAX_STRING_LEN) -> dict[str, Any]:
        """The JSON Schema of this field's value in a device payload."""
        schema: dict[str, Any] = {"type": _JSON_TYPES[self.type]}
        desc = self.description
        if self.unit is not None:
            desc = f"{desc} [{self.unit}]"
            schema["x-unit"] = self.unit
        schema["description"] = desc
        if self.min is not None:
            schema["minimum"] = self.min
        if self.max is not None:
            schema["maximum"] = self.max
        if self.type == "string":
            schema["maxLength"] = max_string_len
            schema["pattern"] = r"^[^\u0000-\u001f\u007f-\u009f]*$"
        return schema


class DeviceProfile(BaseModel):
    """A sensor type at one version: the contract for its payloads."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_NAME_LEN)]
    version: Annotated[int, Field(ge=1)]
    title: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str, Field(min_length=1, max_length=1000)]
    measurement: Annotated[str, Field(min_length=1, max_length=64)]
    expected_interval_s: Annotated[int, Field(gt=0)]
    fields: Annotated[dict[str, FieldSpec], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _default_measurement(cls, data: Any) -> Any:
        # The InfluxDB measurement defaults to the profile name; a city that
        # already has a "traffic" measurement can keep it.
        if isinstance(data, dict) and "measurement" not in data and "name" in data:
            return {**data, "measurement": data["name"]}
        return data

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, v: str) -> str:
        if _NAME_RE.fullmatch(v) is None:
            raise ValueError(f"profile name {v!r} must match [a-z][a-z0-9_]*")
        return v

    @field_validator("measurement")
    @classmethod
    def _measurement_syntax(cls, v: str) -> str:
        if _MEASUREMENT_RE.fullmatch(v) is None:
            raise ValueError(f"measurement {v!r} must match [A-Za-z][A-Za-z0-9_]*")
        return v

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for fname in v:
            if len(fname) > MAX_FIELD_NAME_LEN or _NAME_RE.fullmatch(fname) is None:
                raise ValueError(
                    f"field name {fname!r} must match [a-z][a-z0-9_]* "
                    f"and be at most {MAX_FIELD_NAME_LEN} characters"
                )
            if fname in RESERVED_FIELD_NAMES:
                raise ValueError(
                    f"field name {fname!r} is reserved (it would collide with "
                    f"{', '.join(sorted(RESERVED_FIELD_NAMES))})"
                )
        return v

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def required_fields(self) -> list[str]:
        return [n for n, f in self.fields.items() if f.required]

    def json_schema(self, *, max_string_len: int = DEFAULT_MAX_STRING_LEN) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of a device's JSON payload for this profile.

        Published so that device vendors can check their firmware's output
        without running citygate; SenML payloads are not described here.
        """
        props = {n: f.json_schema(max_string_len=max_string_len) for n, f in self.fields.items()}
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"urn:citygate:profile:{self.name}:v{self.version}",
            "title": f"{self.title} (profile {self.name} v{self.version}) device payload",
            "description": (
                f"{self.description} Published on devices/{{device_id}}/telemetry; the device "
                f"id comes from the topic, never from the payload. Expected every "
                f"{self.expected_interval_s} s."
            ),
            "type": "object",
            "properties": {
                "ts": {
                    "description": (
                        "Measurement time: epoch milliseconds (integer), or an RFC 3339 "
                        "date-time with a time zone offset and up to 9 fractional digits"
                    ),
                    "oneOf": [
                        {"type": "integer", "description": "epoch milliseconds [ms]"},
                        {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN},
                    ],
                },
                "seq": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": INT64_MAX,
                    "description": (
                        "Per-device sequence number, increasing; the gateway confirms the "
                        "highest committed one on devices/{device_id}/ack"
                    ),
                },
                "readings": {
                    "type": "object",
                    "description": "Field values, in the units given in each description",
                    "properties": props,
                    "required": self.required_fields,
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            },
            "required": ["ts", "readings"],
            "additionalProperties": False,
        }


def _format_validation_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
        parts.append(f"key '{loc}': {err['msg']}")
    return "; ".join(parts)


def parse_profile(data: bytes, *, source: str) -> DeviceProfile:
    """Parse one profile file's bytes; ``source`` names it in error messages.

    The file name must be ``<name>.v<version>.toml`` and agree with the name and
    version inside, so that a copied-and-edited file cannot shadow another.
    """
    filename = source.replace("\\", "/").rsplit("/", 1)[-1]
    m = _FILE_RE.fullmatch(filename)
    if m is None:
        raise ProfileError(
            f"{source}: profile file names must look like <name>.v<version>.toml (e.g. air_quality.v1.toml)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"{source}: not UTF-8 text: {e}") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{source}: not valid TOML: {e}") from e
    try:
        profile = DeviceProfile.model_validate(doc)
    except ValidationError as e:
        raise ProfileError(f"{source}: {_format_validation_error(e)}") from e
    if (profile.name, profile.version) != (m.group(1), int(m.group(2))):
        raise ProfileError(
            f"{source}: the file name says {m.group(1)} v{int(m.group(2))} but the file "
            f"defines name = {profile.name!r}, version = {profile.version}; "
            f"rename it to {profile.name}.v{profile.version}.toml or fix the keys"
        )
    return profile


def packaged_profiles_dir() -> Traversable:
    """The ``device_profiles`` directory shipped inside the citygate package."""
    return resources.files(PROFILES_PACKAGE).joinpath(PROFILES_DIRNAME)


def _profile_files(directory: Traversable) -> list[Traversable]:
    return sorted(
        (p for p in directory.iterdir() if p.name.endswith(".toml") and p.is_file()),
        key=lambda p: p.name,
    )


class ProfileRegistry:
    """All known device profiles, by name and version.

    Loaded once when constructed (never at import): the packaged profiles plus
    any ``extra_dirs`` a site adds. A profile defined twice with different
    content is an error rather than an override, so the gateway and the cloud
    cannot silently disagree about one (name, version).
    """

    __slots__ = ("_by_key", "_sources")

    def __init__(self, extra_dirs: Iterable[Path] = (), *, include_packaged: bool = True) -> None:
        self._by_key: dict[tuple[str, int], DeviceProfile] = {}
        self._sources: dict[tuple[str, int], str] = {}
        if include_packaged:
            self._load_dir(packaged_profiles_dir())
        for d in extra_dirs:
            if not d.is_dir():
                raise ProfileError(f"profile directory {d} does not exist or is not a directory")
            self._load_dir(d)

    @classmethod
    def from_profiles(cls, *profiles: DeviceProfile) -> ProfileRegistry:
        """A registry of exactly ``profiles`` (for tests and tools)."""
        reg = cls(include_packaged=False)
        for p in profiles:
            reg._add(p, source="<memory>")
        return reg

    def _load_dir(self, directory: Traversable) -> None:
        for path in _profile_files(directory):
            source = str(path)
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ProfileError(f"{source}: cannot read: {e}") from e
            self._add(parse_profile(data, source=source), source=source)

    def _add(self, profile: DeviceProfile, *, source: str) -> None:
        existing = self._by_key.get(profile.key)
        if existing is not None:
            if existing == profile:
                return
            raise ProfileError(
                f"{source}: profile {profile.name} v{profile.version} is already defined "
                f"differently in {self._sources[profile.key]}; give the new one another version"
            )
        self._by_key[profile.key] = profile
        self._sources[profile.key] = source

    def names(self) -> list[str]:
        """Profile names, sorted."""
        return sorted({name for name, _ in self._by_key})

    def versions(self, name: str) -> list[int]:
        """Known versions of ``name``, ascending (empty if unknown)."""
        return sorted(v for n, v in self._by_key if n == name)

    def get(self, name: str, version: int | None = None) -> DeviceProfile:
        """The profile ``name`` at ``version`` (None: the latest), or ProfileError."""
        if version is None:
            return self.latest(name)
        profile = self._by_key.get((name, version))
        if profile is None:
            versions = self.versions(name)
            if versions:
                raise ProfileError(
                    f"profile {name!r} has no version {version}; known versions: "
                    f"{', '.join(str(v) for v in versions)}"
                )
            raise ProfileError(self._unknown(name))
        return profile

    def latest(self, name: str) -> DeviceProfile:
        """The highest version of profile ``name``, or ProfileError."""
        versions = self.versions(name)
        if not versions:
            raise ProfileError(self._unknown(name))
        return self._by_key[(name, versions[-1])]

    def find(self, name: str, version: int) -> DeviceProfile | None:
        """The profile, or None: for callers that handle absence themselves."""
        return self._by_key.get((name, version))

    def source(self, name: str, version: int) -> str | None:
        """Where the profile was loaded from (a file path or ``<memory>``)."""
        return self._sources.get((name, version))

    def _unknown(self, name: str) -> str:
        known = ", ".join(self.names()) or "(none)"
        return f"unknown device profile {name!r}; known profiles: {known}"

    def __iter__(self) -> Iterator[DeviceProfile]:
        return iter([self._by_key[k] for k in sorted(self._by_key)])

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return any(n == key for n, _ in self._by_key)
        return key in self._by_key
