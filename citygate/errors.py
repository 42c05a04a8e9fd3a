"""The exception tree: every exception class citygate defines, and where it lives.

Our own errors, which the CLI prints as ``error: ...`` (exit 2 for the usage errors
ConfigError, InvalidIdentifierError and ProfileError, exit 1 for the others):

CitygateError
├── ConfigError                 bad or unsafe configuration (names the key)
│   └── RuleError               citygate.service.rules: rule files that do not load (names file,
│                               rule and key)
├── InvalidIdentifierError      a device/gateway/server name that would be unsafe in topics or certs
│                               (also a ValueError)
├── ProfileError                a device profile file that does not load or is inconsistent
├── InventoryError              the device inventory is unreadable or refers to unknown profiles
├── PkiError                    certificate authority operations
│   ├── AlreadyExistsError      refusing to overwrite key material or an identity
│   └── NotFoundError           no such CA, certificate or identity
├── OutboxWriteError            gateway: an outbox write did not commit; nothing of it was stored
├── LedgerError                 simulators: the ledger cannot be read or written
├── AuditError                  simulators: the database could not be read for the audit
└── ServerStartError            servers: a local server process did not become ready

The cloud service's refusals. citygate.cloud.app's exception handlers turn each into
an HTTP answer; they are not CitygateErrors, so none of them is a CLI error:

Exception
├── AuthError                   401 no or unusable credentials, 403 not allowed
├── RevocationUnavailable       503 the CRL cannot be read or verified (fail closed)
├── BatchError                  4xx the whole ingest batch is refused, nothing of it written
├── SinkUnavailable             503 the database did not confirm the write or query
├── QueryError                  502 the database refused a query
└── TooManyReads                429 this token already has its share of reads in flight
ValueError
├── CaseError                   citygate.service.cases: 422 an action that can never apply as asked
│   ├── CaseNotFoundError       404 no case has that id
│   ├── ActionNotAllowedError   409 the case's status does not allow the action
│   └── CaseConflictError       409 another operator acted first, or a reopen would make two open cases
├── ReadError                   422 parameters that cannot make a query, 404 naming nothing known
└── HeartbeatError              422 a heartbeat that cannot be stored as sent

Defined beside the code that raises them, not here:

Exception
├── OutboxCorruptError          citygate.gateway.outbox, private: raised and caught inside the
│                               outbox's integrity check
├── LinkError                   citygate.simulators.link: the simulated devices' DeviceLink protocol;
│   │                           each client adapter turns its library's errors into these
│   ├── ConnackRefusedError     the broker answered CONNECT with a refusal
│   └── LinkClosedError         a publish was pending when we closed the link on purpose
├── Open311Error                citygate.open311.errors: a refused citizen request, answered as
│                               Open311's error list (400/403/404/413/415/429) by its router
├── StaError                    citygate.opendata.sta.errors: SensorThings API refusals, answered by
│   │                           its router
│   ├── BadQueryError           400 a query option that cannot be parsed or would cost too much
│   ├── EntityNotFoundError     404 no such entity
│   ├── ObservationsUnavailableError 501 a store without InfluxQL (VictoriaMetrics)
│   └── ModelUnavailableError   503 the inventory cannot be served as entities
└── MqttLiteError               citygate.simulators.mqtt_lite: the simulators' own MQTT client's
    │                           errors, caught by its adapter (simulators.link_lite); kept with the
    │                           client, whose CONNACK table ConnectRefusedError reads
    ├── ConnectRefusedError     the broker answered CONNECT with a non-zero return code
    ├── ConnectionLostError     the connection closed with the operation still pending
    │   └── DisconnectedError   we disconnected on purpose with the operation pending
    └── SubscribeRefusedError   SUBACK refused the subscription or granted less than asked
ValueError
├── CloudEventError             citygate.service.cloudevent: an event that CloudEvents 1.0 cannot carry
├── WebhookSecretError          citygate.service.signing: a Standard Webhooks secret that does not
│                               decode or is too short (never shows the secret)
└── UrlRefusedError             citygate.service.delivery: a webhook URL the policy refuses (not
                                HTTPS, not allowlisted, userinfo, another port)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citygate.cloud.sink import ErrorKind


class CitygateError(Exception):
    """Base class of every error citygate raises on purpose."""


class ConfigError(CitygateError):
    """Configuration is missing, malformed or unsafe."""


class InvalidIdentifierError(CitygateError, ValueError):
    """An identifier (device id, gateway id, host name) is refused."""


class ProfileError(CitygateError):
    """A device profile does not load or is inconsistent."""


class InventoryError(CitygateError):
    """The device inventory cannot be read or is inconsistent."""


class PkiError(CitygateError):
    """A certificate authority operation failed."""


class AlreadyExistsError(PkiError):
    """Refusing to overwrite existing key material or an existing identity."""


class NotFoundError(PkiError):
    """The CA, certificate or identity asked for does not exist."""


class OutboxWriteError(CitygateError):
    """A write transaction could not commit (disk full, I/O error): nothing of it was stored.

    The caller still holds what it tried to store and may retry; the outbox is
    unchanged (rolled back) and stays usable.
    """


class LedgerError(CitygateError):
    """The ledger cannot be read or written."""


class AuditError(CitygateError):
    """The database could not be read for the audit."""


class ServerStartError(CitygateError):
    """A server process did not become ready."""


# -- the cloud service's refusals (answered by citygate.cloud.app's exception handlers) --


class AuthError(Exception):
    """A refused caller: ``status`` 401 (no or unusable credentials) or 403 (not allowed)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class RevocationUnavailable(Exception):  # noqa: N818 - a state, not a bug
    """The CRL cannot be read or verified: gateway calls are refused (fail closed)."""


class BatchError(Exception):
    """The whole batch is refused; nothing of it is written."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class SinkUnavailable(Exception):  # noqa: N818 - reads better at the call sites than ...Error
    """The database did not confirm the write (or query); nothing can be promised."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


class QueryError(Exception):
    """The database refused a query (a bug in query building, or an unsupported store)."""


class TooManyReads(Exception):  # noqa: N818 - a state the caller answers 429 to
    """This token already has its share of reads in flight."""


class ReadError(ValueError):
    """Parameters that cannot make a query (422) or name nothing known (404)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class HeartbeatError(ValueError):
    """A heartbeat that cannot be stored as sent (422)."""
