"""Citizen reports through the Open311 GeoReport v2 API (``/open311/v2``, docs/OPEN311.md)."""
