"""PKI settings: where the CA lives and how long certificates last."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from citygate.config import CitygateSettings


def default_pki_dir() -> Path:
    """Outside any repository: $XDG_DATA_HOME/citygate/pki (or ~/.local/share/...)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "citygate" / "pki"


class PkiSettings(CitygateSettings):
    """``[pki]`` in the config file, or ``CITYGATE_PKI_*`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CITYGATE_PKI_", extra="forbid")
    toml_section: ClassVar[str] = "pki"

    dir: Path = Field(default_factory=default_pki_dir)
    # The device inventory the gateway and cloud load; defaults to <dir>/inventory.json.
    inventory: Path | None = None
    organization: Annotated[str, Field(min_length=1, max_length=64)] = "citygate"
    device_days: Annotated[int, Field(ge=1, le=825)] = 90
    gateway_days: Annotated[int, Field(ge=1, le=825)] = 365
    server_days: Annotated[int, Field(ge=1, le=825)] = 365
    person_days: Annotated[int, Field(ge=1, le=825)] = 365  # reader and operator certificates
    ca_days: Annotated[int, Field(ge=30, le=7300)] = 3650
    # A CRL past its nextUpdate makes Mosquitto refuse every client: keep it
    # short enough to force regular re-signing, long enough to survive a weekend.
    crl_days: Annotated[int, Field(ge=1, le=90)] = 7

    @property
    def inventory_path(self) -> Path:
        return self.inventory if self.inventory is not None else self.dir / "inventory.json"
