"""Stand-ins for the tests and the shipped benchmarks (stdlib and orjson only)."""
