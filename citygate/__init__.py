"""citygate: municipal sensor data from the street to the city's services, without loss."""

__version__ = "0.1.0"
