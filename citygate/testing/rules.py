"""A rule file for tests and benchmarks: a PM2.5 spike on the air-quality profile, with
hysteresis (opens above 100, clears below 50), so that a test controls every transition."""

PM_SPIKE_RULES = """\
profile = "air_quality"
version = 1

[rules.pm_spike]
title = "PM2.5 spike"
service = "environment"
severity = "warning"
when = "pm2_5 > 100"
clear = "pm2_5 < 50"
"""
