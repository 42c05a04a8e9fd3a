"""``citygate rules check`` through the typer app (in-process runner)."""

from __future__ import annotations

from typer.testing import CliRunner

from citygate.cli.rules import app

runner = CliRunner()

GOOD = """\
profile = "waste_bin"
version = 1

[rules.bin_full]
title = "Bin full (city threshold)"
service = "waste"
severity = "warning"
when = "fill_level > 70"
clear = "fill_level < 10"
"""


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_no_args_shows_help():
    r = run()
    assert "check" in r.output


def test_check_defaults_to_the_shipped_rules():
    r = run("check")
    assert r.exit_code == 0, r.output
    for rid in ("waste_bin.bin_full", "noise.night_noise", "gateway.offline", "water_level.flood_watch"):
        assert rid in r.stdout
    assert "rules OK (0 overridden, 0 warnings)" in r.stdout
    assert r.stderr == ""


def test_check_a_city_directory_over_the_shipped_rules_reports_the_override(tmp_path):
    (tmp_path / "bins.toml").write_text(GOOD)
    r = run("check", "--shipped", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "waste_bin.bin_full:" in r.stdout and "overrides" in r.stdout
    assert "(1 overridden, 0 warnings)" in r.stdout
    alone = run("check", str(tmp_path))
    assert alone.exit_code == 0 and "1 rules OK" in alone.stdout


def test_errors_exit_2_naming_file_rule_and_key_each_on_its_own_line(tmp_path):
    bad = tmp_path / "bins.toml"
    bad.write_text(
        GOOD.replace("fill_level > 70", "fill_levle > 70")
        + '\n[rules.other]\ntitle = "x"\nservice = "waste"\nseverity = "warning"\n'
        'when = "tilt_alarm == true"\nfor = "[soon]"\n'
    )
    r = run("check", str(tmp_path))
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith(
        f"error: {bad}: rule 'bin_full': key 'when': field 'fill_levle' is not in profile"
    )
    # Square brackets from the file are printed as they are, not eaten as markup.
    assert lines[1] == f"error: {bad}: rule 'other': key 'for': '[soon]' is not a duration; " + (
        'a duration is a string like "30s", "10m", "2h", "1d" or "1h30m"'
    )
    assert "2 problem(s)" in r.stderr


def test_warnings_go_to_stderr_and_do_not_fail(tmp_path):
    (tmp_path / "bins.toml").write_text(GOOD.replace('clear = "fill_level < 10"\n', ""))
    r = run("check", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "rule 'bin_full'" in r.stderr
    assert "(0 overridden, 1 warnings)" in r.stdout


def test_missing_path_and_bad_timezone_exit_2(tmp_path):
    r = run("check", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = run("check", "--timezone", "Nowhere/Town")
    assert r.exit_code == 2 and "unknown time zone" in r.stderr


def test_unknown_profile_in_extra_profiles_dir_is_a_usage_error(tmp_path):
    (tmp_path / "demo.v1.toml").write_text('name = "demo"\nversion = 1\n')
    r = run("check", "--profiles-dir", str(tmp_path))
    assert r.exit_code == 2
    assert "demo.v1.toml" in r.stderr
