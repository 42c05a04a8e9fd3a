"""Units: the profiles' unit names as UN/CEFACT common codes, and the conversions the models need.

NGSI-LD's normalized form states a Property's unit in ``unitCode`` with a UN/CEFACT
Recommendation 20 code (the Smart Data Models say so in every description that names a
unit). keyValues has no place for a unit, so where a model fixes one (``fillingLevel`` and
``relativeHumidity`` are 0-1 fractions, not percent) or its examples and users assume one
(AirQualityObserved's gases as mass concentrations), the value itself is converted.

Every conversion is linear and rounded to ``digits`` decimals: ``55 * 0.01`` is
``0.5500000000000002`` in binary floating point, and a published value should not carry
noise the sensor never measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Profile unit (as written in citygate/device_profiles) -> UN/CEFACT Rec. 20 common code,
# checked against the Rec. 20 code list (uncefact/vocab-codes, CLR/Rec20).
UNIT_CODES: Final[dict[str, str]] = {
    "ug/m3": "GQ",  # microgram per cubic metre
    "mg/m3": "GP",  # milligram per cubic metre
    "ppb": "61",  # part per billion
    "ppm": "59",  # part per million
    "Cel": "CEL",  # degree Celsius
    "%": "P1",  # percent
    "%RH": "P1",
    "dB": "2N",  # decibel
    "km/h": "KMH",
    "m/s": "MTS",
    "hPa": "A97",  # hectopascal
    "deg": "DD",  # degree (angle)
    "mm/h": "H67",
    "W/m2": "D54",
    "W": "WTT",
    "kWh": "KWH",
    "V": "VLT",
    "A": "AMP",
    "lx": "LUX",
    "m": "MTR",
    "m/h": "M60",
}
FRACTION: Final = "C62"  # "one": a dimensionless ratio (0-1)


@dataclass(frozen=True, slots=True)
class Conversion:
    """``value * factor``, rounded to ``digits`` decimals, from ``source`` (a profile unit) to ``target``."""

    source: str
    target: str  # UN/CEFACT code of the converted value
    factor: float
    digits: int

    def apply(self, value: float) -> float:
        return round(value * self.factor, self.digits)


PERCENT_TO_FRACTION: Final = Conversion("%", FRACTION, 0.01, 6)
RH_TO_FRACTION: Final = Conversion("%RH", FRACTION, 0.01, 6)

# Gas mixing ratios to mass concentrations at the reference conditions of the EU air quality
# directive 2008/50/EC, Annex VI ("standardised at a temperature of 293 K and an atmospheric
# pressure of 101,3 kPa"), the units EU portals and the model's examples publish.
_R: Final = 8.314462618  # J/(mol K)
MOLAR_VOLUME_L: Final = _R * 293.0 / 101.3  # litres per mole at 293 K, 101.3 kPa (24.05 L)
MOLAR_MASS_G: Final[dict[str, float]] = {"no2": 46.0055, "o3": 47.9982, "co": 28.0101}


def ppb_to_ug_m3(gas: str) -> Conversion:
    """1 ppb of ``gas`` is M / Vm ug/m3 (M in g/mol, Vm in L/mol)."""
    return Conversion("ppb", UNIT_CODES["ug/m3"], MOLAR_MASS_G[gas] / MOLAR_VOLUME_L, 3)


def ppm_to_mg_m3(gas: str) -> Conversion:
    """1 ppm of ``gas`` is M / Vm mg/m3, the same factor one thousandth as large a unit."""
    return Conversion("ppm", UNIT_CODES["mg/m3"], MOLAR_MASS_G[gas] / MOLAR_VOLUME_L, 4)
