"""The SensorThings API's refusals: each is answered by its router as an STA error document.

    StaError                          the request names nothing servable, or asks what is refused
    ├── BadQueryError                 400 a malformed or unsupported path or query option, or a
    │                                 query beyond a bound (the message says which, how to narrow)
    ├── EntityNotFoundError           404 no such entity (or one the caller may not see)
    ├── ObservationsUnavailableError  501 the store has no InfluxQL: no Observations
    └── ModelUnavailableError         503 the inventory does not fit the id spaces

Not in :mod:`citygate.errors`' tree: nothing outside this package raises or catches them.
"""

from __future__ import annotations


class StaError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadQueryError(StaError):
    status = 400


class EntityNotFoundError(StaError):
    status = 404


class ObservationsUnavailableError(StaError):
    """501: this deployment's store has no InfluxQL (VictoriaMetrics), so no Observations."""

    status = 501


class ModelUnavailableError(StaError):
    """503: the inventory cannot be served as entities (more Datastreams than ids)."""

    status = 503
