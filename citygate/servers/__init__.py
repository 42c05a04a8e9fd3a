"""Local server processes, started for real: Mosquitto, InfluxDB 1.x, VictoriaMetrics.

Used by the test suite, the benchmarks and the demo. Each server runs on free
loopback ports in a directory it is given, and is stopped by its owner. Nothing
here depends on a service that happens to be running on the machine.
"""
