"""Generate deploy/grafana/dashboards/citygate.json from the device profiles.

Run: .venv/bin/python deploy/grafana/build_dashboard.py  (a unit test checks the
committed file is up to date). InfluxQL panels, so InfluxDB 1.x, 2.x (v1 compat
endpoint) and 3.x all serve it.
"""

from __future__ import annotations

import json
from pathlib import Path

from citygate.contract.profiles import ProfileRegistry

DS = {"type": "influxdb", "uid": "citygate-influxdb"}
OUT = Path(__file__).resolve().parent / "dashboards" / "citygate.json"


def _target(query: str, ref: str = "A", alias: str = "") -> dict[str, object]:
    return {
        "refId": ref,
        "datasource": DS,
        "rawQuery": True,
        "resultFormat": "time_series",
        "query": query,
        "alias": alias,
    }


def _panel(
    pid: int,
    title: str,
    targets: list[dict[str, object]],
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    kind: str = "timeseries",
    unit: str = "short",
) -> dict[str, object]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "targets": targets,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }


def build() -> dict[str, object]:
    reg = ProfileRegistry()
    latest = [reg.latest(n) for n in reg.names()]
    measurements = "|".join(sorted({p.measurement for p in latest}))
    panels: list[dict[str, object]] = []
    y = 0
    panels.append(
        _panel(
            1,
            "Readings per interval by sensor type",
            [
                _target(
                    f'SELECT count("seq") FROM /^({measurements})$/ WHERE $timeFilter '
                    "GROUP BY time($__interval)",
                    alias="$measurement",
                )
            ],
            0,
            y,
        )
    )
    panels.append(
        _panel(
            2,
            "Readings per interval by district",
            [
                _target(
                    f'SELECT count("seq") FROM /^({measurements})$/ WHERE $timeFilter '
                    'GROUP BY time($__interval), "district"',
                    alias="$tag_district",
                )
            ],
            12,
            y,
        )
    )
    y += 8
    pid = 3
    for i, p in enumerate(latest):
        numeric = [n for n, f in p.fields.items() if f.type in ("float", "int") and f.required]
        if not numeric:
            continue
        field = numeric[0]
        unit = p.fields[field].unit or ""
        panels.append(
            _panel(
                pid,
                f"{p.title}: {field} ({unit}) by district",
                [
                    _target(
                        f'SELECT mean("{field}") FROM "{p.measurement}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "district" fill(null)',
                        alias="$tag_district",
                    )
                ],
                (i % 2) * 12,
                y + (i // 2) * 8,
            )
        )
        pid += 1
    y += ((len(latest) + 1) // 2) * 8
    health = "citygate_gateway_health"
    for j, (title, field, unit) in enumerate(
        [
            ("Gateway outbox depth (readings waiting)", "outbox_depth", "short"),
            ("Oldest unsent reading (s)", "oldest_unsent_age_s", "s"),
            ("Gateway readings in/out", "readings_in", "short"),
            ("Gateway memory (RSS)", "rss_bytes", "bytes"),
            ("Gateway disk free", "disk_free_bytes", "bytes"),
            ("Gateway certificate days left", "cert_days_left_reported", "d"),
        ]
    ):
        panels.append(
            _panel(
                pid,
                title,
                [
                    _target(
                        f'SELECT last("{field}") FROM "{health}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "gateway_id" fill(previous)',
                        alias="$tag_gateway_id",
                    )
                ],
                (j % 2) * 12,
                y + (j // 2) * 8,
                unit=unit,
            )
        )
        pid += 1
    y += 24
    panels.append(
        _panel(
            pid,
            "Drops and rejections by reason (cumulative)",
            [
                _target(
                    f'SELECT last(/^(dropped|rejected)_/) FROM "{health}" WHERE $timeFilter '
                    'GROUP BY time($__interval), "gateway_id" fill(previous)',
                    alias="$tag_gateway_id $col",
                )
            ],
            0,
            y,
            w=24,
        )
    )
    return {
        "uid": "citygate-overview",
        "title": "citygate: city sensors and gateway health",
        "tags": ["citygate"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
        "templating": {"list": []},
        "annotations": {"list": []},
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
