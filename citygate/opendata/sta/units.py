"""The profiles' ``unit`` strings as STA ``unitOfMeasurement`` s with UCUM codes.

Mapped one by one, not guessed: a profile's unit is a SenML-style name ("%RH", "count",
"ppb") and only some are UCUM codes as written. ``symbol`` is the UCUM code (case-sensitive
form), ``name`` its English name, ``definition`` the OGC URN of the UCUM code. A unit the
table does not know (a city's own profile) is passed through as its own symbol and name,
with no definition: it is not claimed to be UCUM. A field without a unit (bool, string)
has all three null, as STA 1.1 has it for truth and category observations.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

# profile unit -> (UCUM code, name)
UCUM: Final[dict[str, tuple[str, str]]] = {
    "%": ("%", "percent"),
    "%RH": ("%", "percent (relative humidity)"),
    "A": ("A", "ampere"),
    "Cel": ("Cel", "degree Celsius"),
    "V": ("V", "volt"),
    "W": ("W", "watt"),
    "W/m2": ("W/m2", "watt per square metre"),
    "count": ("{count}", "count"),
    "dB": ("dB", "decibel"),
    "deg": ("deg", "degree (plane angle)"),
    "hPa": ("hPa", "hectopascal"),
    "kWh": ("kW.h", "kilowatt hour"),
    "km/h": ("km/h", "kilometre per hour"),
    "lx": ("lx", "lux"),
    "m": ("m", "metre"),
    "m/h": ("m/h", "metre per hour"),
    "m/s": ("m/s", "metre per second"),
    "mm/h": ("mm/h", "millimetre per hour"),
    "ppb": ("[ppb]", "part per billion"),
    "ppm": ("[ppm]", "part per million"),
    "ug/m3": ("ug/m3", "microgram per cubic metre"),
}

_URN: Final = "urn:ogc:def:uom:UCUM::"


def unit_of_measurement(unit: str | None) -> dict[str, str | None]:
    """The STA ``unitOfMeasurement`` object of a profile field's unit."""
    if unit is None:
        return {"name": None, "symbol": None, "definition": None}
    known = UCUM.get(unit)
    if known is None:
        return {"name": unit, "symbol": unit, "definition": None}
    code, name = known
    return {"name": name, "symbol": code, "definition": _URN + quote(code, safe="/.[]{}")}
