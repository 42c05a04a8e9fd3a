"""The eight device profiles as Smart Data Models: which model, which attribute, which unit.

docs/NGSI-LD.md has this table in prose with the reasons; ``tests/ngsi`` checks that every
profile field is either mapped here with the profile's own unit or listed in ``unmapped``.

Choices the models leave open:

* **water_level -> FloodMonitoring** (dataModel.Environment): its ``currentLevel`` is the
  level a flood-watch sensor over a river reports, with no lower bound. ``WaterObserved``
  has a ``waterLevel`` too, but with ``minimum: 0``: a level below the gauge datum (the
  profile allows down to -10 m) would make an invalid entity; WeatherObserved's
  ``streamGauge`` has the same bound; ``WaterQualityObserved`` is about water chemistry.
* **AirQualityObserved gases** as mass concentrations (NO2, O3 in ug/m3, CO in mg/m3), the
  units of the EU directive and of the model's own examples; the profile's ppb/ppm are
  converted at the directive's 293 K and 101.3 kPa (:mod:`citygate.opendata.ngsi.units`).
* **NoiseLevelObserved / TrafficFlowObserved** describe an interval: the reading is taken
  as covering the profile's ``expected_interval_s`` up to its device time.
* **WasteContainer status**: the profile's ``tilt_alarm`` is "knocked over or lid left
  open", which the sensor cannot tell apart; both are a container not standing properly
  (``ok`` is "stands properly"), so an alarm is ``dropped``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from citygate.contract.inventory import DeviceRecord
from citygate.opendata.ngsi.mapping import Derived, DeviceModel, Measured, Row
from citygate.opendata.ngsi.units import (
    PERCENT_TO_FRACTION,
    RH_TO_FRACTION,
    ppb_to_ug_m3,
    ppm_to_mg_m3,
)
from citygate.opendata.ngsi.zones import PARKING_CONTEXT, zone_id, zone_of

_SDM: Final = "https://raw.githubusercontent.com/smart-data-models/dataModel.{}/master/context.jsonld"
ENVIRONMENT: Final = _SDM.format("Environment")
TRANSPORTATION: Final = _SDM.format("Transportation")
WASTE: Final = _SDM.format("WasteManagement")
STREETLIGHTING: Final = _SDM.format("Streetlighting")
WEATHER: Final = _SDM.format("Weather")

_BATTERY: Final = "the device's battery is not part of the observation (the model has no such attribute)"


def _flag(name: str, true: str, false: str) -> Callable[[Row, DeviceRecord], str | None]:
    """A bool field as one of two words; None (left out) when the reading does not carry it."""

    def derive(row: Row, _record: DeviceRecord) -> str | None:
        v = row.get(name)
        return None if v is None else (true if v else false)

    return derive


def _street_light_status(row: Row, _record: DeviceRecord) -> str:
    # The model requires a status; a controller that reports no fault flag reports no fault.
    return "defectiveLamp" if row.get("lamp_fault") is True else "ok"


def _bay_name(row: Row, _record: DeviceRecord) -> Any:
    return row.get("bay_id")


def _parking_site(_row: Row, record: DeviceRecord) -> str | None:
    zone = zone_of(record)
    return zone_id(zone) if zone is not None else None


AIR_QUALITY = DeviceModel(
    type="AirQualityObserved",
    profile="air_quality",
    context=ENVIRONMENT,
    measured=(
        Measured("pm2_5", "pm25", "ug/m3"),
        Measured("pm10", "pm10", "ug/m3"),
        Measured("pm1", "pm1", "ug/m3"),
        Measured("no2", "no2", "ppb", ppb_to_ug_m3("no2")),
        Measured("o3", "o3", "ppb", ppb_to_ug_m3("o3")),
        Measured("co", "co", "ppm", ppm_to_mg_m3("co")),
        Measured("temperature", "temperature", "Cel"),
        Measured("humidity", "relativeHumidity", "%RH", RH_TO_FRACTION),
    ),
    constants={"typeofLocation": "outdoor"},
    unmapped={"battery": _BATTERY},
)

NOISE = DeviceModel(
    type="NoiseLevelObserved",
    profile="noise",
    context=ENVIRONMENT,
    measured=(
        Measured("laeq", "LAeq", "dB"),
        Measured("lamax", "LAmax", "dB"),
    ),
    time_attrs=(),
    interval=True,
    unmapped={
        "lamin": "the model has no minimum level",
        "la10": "the model has no percentile levels",
        "la90": "the model has no percentile levels",
        "battery": _BATTERY,
    },
)

TRAFFIC = DeviceModel(
    type="TrafficFlowObserved",
    profile="traffic_counter",
    context=TRANSPORTATION,
    measured=(
        Measured("vehicles", "intensity", "count"),
        Measured("avg_speed", "averageVehicleSpeed", "km/h"),
        Measured("occupancy", "occupancy", "%", PERCENT_TO_FRACTION),
    ),
    time_attrs=(),
    interval=True,
    unmapped={
        "cars": "the model splits vehicle classes into one entity per vehicleType; 'cars and vans' is two",
        "trucks": "'heavy goods vehicles and buses' is two of the model's vehicleType values",
        "bicycles": "per-class entities (vehicleType bicycle) are not exported; intensity is motor vehicles",
        "pedestrians": "pedestrians are not traffic flow (CrowdFlowObserved would be their model)",
    },
)

WASTE_BIN = DeviceModel(
    type="WasteContainer",
    profile="waste_bin",
    context=WASTE,
    measured=(
        Measured("fill_level", "fillingLevel", "%", PERCENT_TO_FRACTION),
        Measured("temperature", "temperature", "Cel"),
    ),
    derived=(Derived("status", ("tilt_alarm",), _flag("tilt_alarm", "dropped", "ok")),),
    time_attrs=("dateObserved", "timeInstant"),
    unmapped={"battery": _BATTERY},
)

PARKING_SPOT = DeviceModel(
    type="ParkingSpot",
    profile="parking",
    context=PARKING_CONTEXT,
    measured=(),
    derived=(
        Derived("status", ("occupied",), _flag("occupied", "occupied", "free")),
        Derived("name", ("bay_id",), _bay_name, observed=False),
        Derived("refParkingSite", (), _parking_site, kind="Relationship", observed=False),
    ),
    constants={"category": ["onStreet"]},
    time_attrs=("timeInstant",),  # the Parking context has no dateObserved
    requires=("status", "refParkingSite"),
    unmapped={"battery": _BATTERY},
)

STREET_LIGHT = DeviceModel(
    type="Streetlight",
    profile="street_light",
    context=STREETLIGHTING,
    measured=(
        Measured("dim_level", "illuminanceLevel", "%", PERCENT_TO_FRACTION),
        Measured("power", "powerConsumption", "W"),
        Measured("energy", "lifetimePowerConsumption", "kWh"),
        Measured("voltage", "voltage", "V"),
        Measured("current", "current", "A"),
    ),
    derived=(
        Derived("powerState", ("lamp_on",), _flag("lamp_on", "on", "off")),
        Derived("status", ("lamp_fault",), _street_light_status),
    ),
    time_attrs=("observationDateTime",),  # the Streetlighting context has no dateObserved
    unmapped={"ambient_light": "the model's illuminanceLevel is the lamp's setting, not the ambient light"},
)

WEATHER_STATION = DeviceModel(
    type="WeatherObserved",
    profile="weather",
    context=WEATHER,
    measured=(
        Measured("temperature", "temperature", "Cel"),
        Measured("humidity", "relativeHumidity", "%RH", RH_TO_FRACTION),
        Measured("pressure", "atmosphericPressure", "hPa"),
        Measured("wind_speed", "windSpeed", "m/s"),
        Measured("wind_gust", "gustSpeed", "m/s"),
        Measured("wind_dir", "windDirection", "deg"),
        Measured("solar_radiation", "solarRadiation", "W/m2"),
        Measured("uv_index", "uVIndexMax", None),
    ),
    unmapped={
        "rain_rate": "the model's precipitation is an amount (l/m2) over a period, not an intensity",
    },
)

WATER_LEVEL = DeviceModel(
    type="FloodMonitoring",
    profile="water_level",
    context=ENVIRONMENT,
    measured=(Measured("level", "currentLevel", "m"),),
    time_attrs=("dateObserved", "observationDateTime"),
    unmapped={
        "level_trend": "the model has no rate of change",
        "water_temperature": "the model has no water temperature",
        "battery": _BATTERY,
    },
)

# Every model of one device per entity, by entity type.
_ALL: Final = (
    AIR_QUALITY,
    NOISE,
    TRAFFIC,
    WASTE_BIN,
    PARKING_SPOT,
    STREET_LIGHT,
    WEATHER_STATION,
    WATER_LEVEL,
)
DEVICE_MODELS: Final[dict[str, DeviceModel]] = {m.type: m for m in _ALL}
