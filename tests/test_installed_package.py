"""The wheel, installed into a fresh venv, carries what ``citygate bench`` runs.

The wheel is built offline with this venv's hatchling and installed with ``--no-deps`` into a
plain venv made in tmp_path. The dependencies come from this venv's site-packages on
PYTHONPATH (a path entry there does not run ``.pth`` files, so the editable install of this
checkout stays out); the test checks that ``citygate`` is imported from the new venv, never
from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import citygate.benchmarks as b
from citygate.benchmarks import SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
PIP = (sys.executable, "-m", "pip")  # this venv's pip and hatchling: offline


def _run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path, timeout: float = 120):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{tail}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("installed")
    wheels = tmp / "wheels"
    _run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-qw", str(wheels), str(ROOT)],
        cwd=tmp,
    )
    (wheel,) = wheels.glob("citygate-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    _run(
        [*PIP, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=tmp,
    )
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHONPATH": os.pathsep.join(deps), "PYTHONNOUSERSITE": "1", "VIRTUAL_ENV": str(venv)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


def test_citygate_is_imported_from_the_wheel_not_the_checkout(installed, tmp_path):
    venv, env = installed
    out = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import citygate, citygate.benchmarks as b; print(citygate.__file__); print(b.bench_dir())",
        ],
        env=env,
        cwd=tmp_path,
    ).stdout.splitlines()
    package, bench = Path(out[0]), Path(out[1])
    assert package.is_relative_to(venv) and not package.is_relative_to(ROOT / "citygate")
    assert bench.is_relative_to(venv) and bench.name == "_bench"
    for s in SCENARIOS:
        assert (bench / s.script).is_file(), s.script
    # the helpers the scripts share, beside them; no test files (the backlog's test cloud is in the package)
    assert (bench / "_common.py").is_file()
    assert not (bench / "tests").exists()


def test_installed_bench_lists_and_runs_a_quick_scenario(installed, tmp_path):
    venv, env = installed
    citygate = str(venv / "bin" / "citygate")
    listed = _run([citygate, "bench", "--list"], env=env, cwd=tmp_path).stdout
    assert [line.split()[0] for line in listed.splitlines() if line.strip()] == [s.name for s in SCENARIOS]

    out = tmp_path / "out"
    _run(
        [citygate, "bench", "validation", "--quick", "--repeats", "1", "--out", str(out)],
        env=env,
        cwd=tmp_path,
    )
    doc = orjson.loads((out / "results.json").read_bytes())
    validation = doc["scenarios"]["validation"]
    assert validation["errors"] == [] and len(validation["raw"]) == 1
    assert {m["metric"] for m in validation["metrics"]} == {"validate_per_s", "orjson_loads_per_s", "ratio"}


def test_missing_scripts_are_a_plain_error_with_exit_2(monkeypatch, tmp_path):
    from citygate.cli import build_app

    monkeypatch.setattr(b, "BENCH_DIRS", (tmp_path / "nowhere",))
    result = CliRunner().invoke(build_app(), ["bench", "validation", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "benchmark scripts were not found" in result.output
    assert "Traceback" not in result.output
