"""The exception tree.

CitygateError
├── ConfigError             bad or unsafe configuration (names the key)
├── InvalidIdentifierError  a device/gateway/server name that would be unsafe in topics or certs
├── ProfileError            a device profile file that does not load or is inconsistent
├── InventoryError          the device inventory is unreadable or refers to unknown profiles
└── PkiError                certificate authority operations
    ├── AlreadyExistsError  refusing to overwrite key material or an identity
    └── NotFoundError       no such CA, certificate or identity
"""

from __future__ import annotations


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
