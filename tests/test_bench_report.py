"""A tiny benchmark run produces a well-formed report (the numbers themselves are not judged here)."""

import orjson

from citygate.benchmarks import SCENARIOS, run_scenarios, write_report


def test_tiny_bench_run_writes_json_markdown_and_plot(tmp_path):
    runs = run_scenarios(["validation"], quick=True, repeats=2, log=lambda m: None)
    files = write_report(runs, tmp_path, command="citygate bench validation --quick", quick=True)
    doc = orjson.loads(files["json"].read_bytes())
    assert doc["machine"]["cpus"] >= 1 and doc["quick"] is True
    metrics = {m["metric"]: m for m in doc["scenarios"]["validation"]["metrics"]}
    assert set(metrics) == {"validate_per_s", "orjson_loads_per_s", "ratio"}
    for m in metrics.values():
        assert 0 < m["min"] <= m["median"] <= m["max"]
    assert len(doc["scenarios"]["validation"]["raw"]) == 2
    md = files["markdown"].read_text()
    assert "| validated readings/s |" in md and "Machine:" in md
    assert files["validation"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_scenario_has_a_baseline_or_says_so():
    for s in SCENARIOS:
        assert s.baseline and s.metrics and s.quick_args


def test_max_repeats_caps_full_runs_only(monkeypatch):
    import dataclasses

    import citygate.benchmarks as b

    once = dataclasses.replace(
        next(s for s in SCENARIOS if s.name == "validation"),
        full_args=("--n", "2000", "--runs", "1"),
        quick_args=("--n", "2000", "--runs", "1"),
        max_repeats=1,
    )
    monkeypatch.setattr(b, "SCENARIOS", (once,))
    assert len(run_scenarios(["validation"], quick=False, repeats=3, log=lambda m: None)[0].results) == 1
    assert len(run_scenarios(["validation"], quick=True, repeats=2, log=lambda m: None)[0].results) == 2
