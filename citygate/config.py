"""Configuration: a TOML file plus environment variables (pydantic-settings).

Priority, highest first: explicit overrides (CLI options), environment
variables (``CITYGATE_<SECTION>_<KEY>``), the section ``[<section>]`` of the
TOML file given with ``--config``, then defaults. Secrets are read from the
file or the environment, never from argv. A bad value raises ConfigError
naming the key and where it came from. A table (a dict value, such as a token
table) comes whole from one source: set in the environment, the file's table
is ignored, so rotating tokens through the environment really removes the
file's (pydantic-settings would merge the two).
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Self

import tomli_w
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from citygate.errors import ConfigError

_FILE_VALUES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "citygate_config_file_values", default=None
)


class _TomlSectionSource(PydanticBaseSettingsSource):
    """Values of one ``[section]`` of the TOML config file being loaded."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        values = _FILE_VALUES.get() or {}
        return values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_VALUES.get() or {})


def toml_section(section: str, values: dict[str, Any]) -> str:
    """A ``[section]`` of TOML from plain values (dict values become ``[section.key]`` tables).

    For tools that write configuration files (the demo, tests, benchmarks).
    """
    return tomli_w.dumps({section: values})


def read_toml_section(path: Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML file ({} if the section is absent)."""
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    table = doc.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    return table


class CitygateSettings(BaseSettings):
    """Base of every settings class; subclasses set ``toml_section`` and an env prefix."""

    toml_section: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSectionSource(settings_cls), file_secret_settings)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Self:
        """Build settings from overrides, environment and the config file."""
        file_values = read_toml_section(config_file, cls.toml_section) if config_file else {}
        unknown = set(file_values) - set(cls.model_fields)
        if unknown:
            raise ConfigError(
                f"config file {config_file}: unknown key(s) in [{cls.toml_section}]: "
                + ", ".join(sorted(unknown))
            )
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        in_env = {k.upper() for k in os.environ}
        for name, f in cls.model_fields.items():
            is_table = getattr(f.annotation, "__origin__", None) is dict
            if is_table and f"{prefix}{name.upper()}" in in_env:
                file_values.pop(name, None)
        token = _FILE_VALUES.set(file_values)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as e:
            raise ConfigError(_describe_errors(e, cls, config_file)) from e
        finally:
            _FILE_VALUES.reset(token)


def _describe_errors(e: ValidationError, cls: type[CitygateSettings], path: Path | None) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "?"
        lines.append(
            f"[{cls.toml_section}] {key} (env {prefix}{key.upper()}): {err['msg']}"
            + (f" (config file {path})" if path else "")
        )
    return "invalid configuration:\n  " + "\n  ".join(lines)
