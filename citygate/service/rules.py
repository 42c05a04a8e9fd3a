"""Rules: which readings open a case for which city service (citygate/rules/README.md).

A rule file is TOML, one per device profile version (``profile = "waste_bin"``,
``version = 1``) or for gateway health (``kind = "gateway"``, ``version = 1``), with one
``[rules.<name>]`` table per rule. Everything is checked when the file loads: unknown
keys, wrong types, bad durations, fields the profile does not have, a numeric comparison
on a bool or string field, a clear condition that overlaps the condition it clears. A
rule that loads is one the evaluator can judge without further checks; every refusal
names the file, the rule and the key. (The per-rule model and checks are in
:mod:`citygate.service.rule_model`.)

:func:`load_rules` layers directories: a later directory (the city's own) overrides a
rule of an earlier one (the shipped rules) with the same id, ``<profile>.<name>`` or
``gateway.<name>``; the same id twice in one directory is an error.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citygate.contract.profiles import DeviceProfile, ProfileRegistry
from citygate.errors import ConfigError, ProfileError
from citygate.service.rule_model import (
    GATEWAY_KIND,
    ActiveHours,
    Rule,
    RuleProblem,
    RuleSpec,
    Scope,
    Severity,
    compile_rule,
)

__all__ = [
    "GATEWAY_KIND",
    "ActiveHours",
    "Rule",
    "RuleError",
    "RuleSet",
    "Scope",
    "Severity",
    "load_rules",
    "packaged_rules_dir",
    "parse_rule_file",
]

RULES_PACKAGE: Final = "citygate"
RULES_DIRNAME: Final = "rules"
RULE_FORMAT_VERSION: Final = 1
_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")

if TYPE_CHECKING:
    from citygate.service.settings import ServiceSettings


class RuleError(ConfigError):
    """A rule file does not load; ``problems`` lists every refusal (file, rule, key, why)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            msg = self.problems[0]
        else:
            msg = f"{len(self.problems)} problems in the rules:\n" + "\n".join(
                f"  {p}" for p in self.problems
            )
        super().__init__(msg)


class _FileSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    profile: str | None = None
    kind: Literal["gateway"] | None = None
    version: Annotated[int, Field(ge=1)]
    timezone: str | None = None
    rules: Annotated[dict[str, dict[str, Any]], Field(min_length=1)]


class RuleSet:
    """The rules in force, by id, with an index by profile; built by :func:`load_rules`."""

    __slots__ = ("_by_id", "_by_profile", "_gateway", "overrides", "warnings")

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        overrides: Sequence[tuple[str, str, str]] = (),
        warnings: Sequence[str] = (),
    ) -> None:
        self._by_id: dict[str, Rule] = {}
        for r in rules:
            if r.id in self._by_id:
                raise RuleError([f"{r.source}: rule {r.name!r}: id {r.id!r} is defined twice"])
            self._by_id[r.id] = r
        by_profile: dict[str, list[Rule]] = {}
        gateway: list[Rule] = []
        for r in self:
            if r.profile is None:
                gateway.append(r)
            else:
                by_profile.setdefault(r.profile, []).append(r)
        self._by_profile = {k: tuple(v) for k, v in by_profile.items()}
        self._gateway = tuple(gateway)
        # (rule id, overridden source, overriding source)
        self.overrides: tuple[tuple[str, str, str], ...] = tuple(overrides)
        self.warnings: tuple[str, ...] = tuple(warnings)

    def for_profile(self, profile: str) -> tuple[Rule, ...]:
        return self._by_profile.get(profile, ())

    def gateway_rules(self) -> tuple[Rule, ...]:
        return self._gateway

    def get(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def __iter__(self) -> Iterator[Rule]:
        return iter([self._by_id[k] for k in sorted(self._by_id)])

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id


def packaged_rules_dir() -> Traversable:
    """The ``rules`` directory shipped inside the citygate package."""
    return resources.files(RULES_PACKAGE).joinpath(RULES_DIRNAME)


def _validation_problems(e: ValidationError, prefix: str) -> list[str]:
    out = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{prefix}key '{loc}': {msg}")
    return out


def parse_rule_file(
    data: bytes,
    *,
    source: str,
    profiles: ProfileRegistry,
    timezone: str = "UTC",
    warnings: list[str] | None = None,
) -> list[Rule]:
    """Parse and check one rule file; RuleError listing every problem found in it.

    ``timezone`` is the city's, for ``active_hours``; a file's own ``timezone`` key wins.
    """
    warn: list[str] = [] if warnings is None else warnings
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RuleError([f"{source}: not UTF-8 text: {e}"]) from e
    except tomllib.TOMLDecodeError as e:
        raise RuleError([f"{source}: not valid TOML: {e}"]) from e
    try:
        fspec = _FileSpec.model_validate(doc)
    except ValidationError as e:
        raise RuleError(_validation_problems(e, f"{source}: ")) from e
    profile: DeviceProfile | None = None
    if (fspec.profile is None) == (fspec.kind is None):
        raise RuleError(
            [
                f"{source}: key 'profile': a rule file has either profile = \"<name>\" "
                '(device rules) or kind = "gateway" (gateway rules)'
            ]
        )
    if fspec.profile is not None:
        try:
            profile = profiles.get(fspec.profile, fspec.version)
        except ProfileError as e:
            key = "version" if fspec.profile in profiles else "profile"
            raise RuleError([f"{source}: key '{key}': {e}"]) from e
    elif fspec.version != RULE_FORMAT_VERSION:
        raise RuleError([f"{source}: key 'version': gateway rule files are version {RULE_FORMAT_VERSION}"])
    tz_name = fspec.timezone if fspec.timezone is not None else timezone
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise RuleError([f"{source}: key 'timezone': unknown time zone {tz_name!r}"]) from e
    problems: list[str] = []
    rules: list[Rule] = []
    for name, raw in fspec.rules.items():
        prefix = f"{source}: rule {name!r}: "
        if _NAME_RE.fullmatch(name) is None:
            problems.append(f"{prefix}key 'rules.{name}': rule names must match [a-z][a-z0-9_]* (max 64)")
            continue
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as e:
            problems.extend(_validation_problems(e, prefix))
            continue
        try:
            rules.append(compile_rule(name, spec, source=source, profile=profile, tz=tz, warnings=warn))
        except RuleProblem as p:
            problems.append(f"{prefix}key '{p.key}': {p.msg}")
    if problems:
        raise RuleError(problems)
    return rules


def _rule_files(directory: Path | Traversable) -> list[Path | Traversable]:
    return sorted(
        (p for p in directory.iterdir() if p.name.endswith(".toml") and p.is_file()),
        key=lambda p: p.name,
    )


def load_rules(
    dirs: Sequence[Path | Traversable], profiles: ProfileRegistry, *, timezone: str = "UTC"
) -> RuleSet:
    """Load every ``*.toml`` of each directory (or file) in order; later ones override earlier ones.

    All files are read before anything is refused, so one RuleError lists every problem.
    ``timezone`` (IANA name) is the local time of ``active_hours`` unless a file sets its own.
    """
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise RuleError([f"unknown time zone {timezone!r}"]) from e
    problems: list[str] = []
    warnings: list[str] = []
    chosen: dict[str, Rule] = {}
    overrides: list[tuple[str, str, str]] = []
    for d in dirs:
        if d.is_file():
            files: list[Path | Traversable] = [d]
        elif d.is_dir():
            files = _rule_files(d)
        else:
            problems.append(f"rules directory {d} does not exist")
            continue
        layer: dict[str, Rule] = {}
        for f in files:
            source = str(f)
            try:
                data = f.read_bytes()
            except OSError as e:
                problems.append(f"{source}: cannot read: {e}")
                continue
            try:
                rules = parse_rule_file(
                    data, source=source, profiles=profiles, timezone=timezone, warnings=warnings
                )
            except RuleError as e:
                problems.extend(e.problems)
                continue
            for r in rules:
                if r.id in layer:
                    problems.append(
                        f"{source}: rule {r.name!r}: id {r.id!r} is already defined in {layer[r.id].source}"
                    )
                    continue
                layer[r.id] = r
        for rid, r in layer.items():
            if rid in chosen:
                overrides.append((rid, chosen[rid].source, r.source))
            chosen[rid] = r
    if problems:
        raise RuleError(problems)
    return RuleSet(chosen.values(), overrides=overrides, warnings=warnings)


def load_service_rules(settings: ServiceSettings, profiles: ProfileRegistry) -> RuleSet:
    """The rules a service layer with ``settings`` runs: the shipped ones (unless turned off),
    then the city's ``rules_dirs``, which override them."""
    dirs: list[Path | Traversable] = [packaged_rules_dir()] if settings.shipped_rules else []
    dirs += settings.rules_dirs
    return load_rules(dirs, profiles, timezone=settings.timezone)
