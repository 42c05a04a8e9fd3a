"""The time windows of the gateway and the cloud, and where they disagree.

The gateway takes a reading whose timestamp is within ``max_past_s`` /
``max_future_s`` of the moment it receives it, confirms it to the device, and
may hold it for ``outbox_max_age_s``. The cloud judges the same reading against
the same moment (the wire's ``received_ms``) with its own ``max_past_s`` /
``max_future_s``, and takes readings a gateway held for up to ``max_buffered_s``.
A reading the gateway takes and the cloud refuses is held at the gateway, not
lost, but not stored either: ``check-config`` on either side warns when the
windows are such that this can happen (docs/GATEWAY.md, "Held readings").

Plain data in, plain text out: each side's check reads the other's TOML file
as a table, without importing the other side's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from citygate.errors import ConfigError

# Each side's defaults (citygate.gateway.settings, citygate.cloud.settings): a test keeps them equal.
GATEWAY_DEFAULTS: dict[str, float] = {
    "max_past_s": 30 * 86400.0,
    "max_future_s": 300.0,
    "outbox_max_age_s": 14 * 86400.0,
}
CLOUD_DEFAULTS: dict[str, float] = {
    "max_past_s": 30 * 86400.0,
    "max_future_s": 300.0,
    "max_buffered_s": 30 * 86400.0,
}


def fmt_seconds(v: float) -> str:
    """``2592000 s (30.0 days)``: the exact value as configured, and a readable one."""
    text = f"{int(v)}" if float(v).is_integer() else f"{v:g}"
    if v >= 86400:
        return f"{text} s ({v / 86400:.1f} days)"
    if v >= 3600:
        return f"{text} s ({v / 3600:.1f} h)"
    return f"{text} s"


def read_windows(
    section: Mapping[str, object], defaults: Mapping[str, float], source: str
) -> dict[str, float]:
    """The window keys of a ``[gateway]`` or ``[cloud]`` table, defaults filled in."""
    out: dict[str, float] = {}
    for key, default in defaults.items():
        v = section.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{source}: {key} must be a number of seconds, got {v!r}")
        out[key] = float(v)
    return out


def describe(side: str, windows: Mapping[str, float]) -> str:
    """One line: ``cloud windows: max_past_s = ..., ...``."""
    return f"{side} windows: " + ", ".join(f"{k} = {fmt_seconds(v)}" for k, v in windows.items())


def check_against(path: Path, side: str, mine: Mapping[str, float], *, i_am_gateway: bool) -> list[str]:
    """The lines ``check-config`` prints about the other side's config file at ``path``: its
    windows, then one WARNING per disagreement, or that they agree. ``side`` is its section."""
    from citygate.config import read_toml_section

    section = read_toml_section(path, side)
    if not section:
        raise ConfigError(f"{path} has no [{side}] section; is it a {side} config?")
    defaults = CLOUD_DEFAULTS if i_am_gateway else GATEWAY_DEFAULTS
    theirs = read_windows(section, defaults, f"{path} [{side}]")
    gateway, cloud = (mine, theirs) if i_am_gateway else (theirs, mine)
    warnings = window_warnings(gateway, cloud)
    ok = "the gateway's windows are within the cloud's: nothing it accepts would be held"
    return [describe(f"{side} {path}", theirs), *(warnings or [ok])]


def window_warnings(gateway: Mapping[str, float], cloud: Mapping[str, float]) -> list[str]:
    """One message per way a gateway with these windows would have readings held by this cloud."""
    out: list[str] = []
    g_past, g_future, g_age = gateway["max_past_s"], gateway["max_future_s"], gateway["outbox_max_age_s"]
    c_past, c_future, c_buffered = cloud["max_past_s"], cloud["max_future_s"], cloud["max_buffered_s"]
    drop = f"they are held at the gateway until its outbox_max_age_s = {fmt_seconds(g_age)} drops them"
    if g_past > c_past:
        out.append(
            f"WARNING: gateway max_past_s = {fmt_seconds(g_past)} is greater than cloud max_past_s = "
            f"{fmt_seconds(c_past)}: the gateway accepts readings older than the cloud "
            f"does (refused timestamp_too_old); {drop}. Set the cloud's max_past_s to at least "
            f"{fmt_seconds(g_past)} or lower the gateway's max_past_s to {fmt_seconds(c_past)}."
        )
    if g_future > c_future:
        out.append(
            f"WARNING: gateway max_future_s = {fmt_seconds(g_future)} is greater than cloud max_future_s = "
            f"{fmt_seconds(c_future)}: the gateway accepts readings further ahead of its "
            f"clock than the cloud does (refused timestamp_in_future); {drop}. Set the cloud's "
            f"max_future_s to at least {fmt_seconds(g_future)} or lower the gateway's max_future_s to "
            f"{fmt_seconds(c_future)}."
        )
    if g_age > c_buffered:
        out.append(
            f"WARNING: gateway outbox_max_age_s = {fmt_seconds(g_age)} is greater than cloud "
            f"max_buffered_s = {fmt_seconds(c_buffered)}: readings the gateway buffers "
            f"longer than {fmt_seconds(c_buffered)} (an outage) are refused received_too_old; "
            f"{drop}. Set the cloud's max_buffered_s to at least {fmt_seconds(g_age)} or lower the "
            f"gateway's outbox_max_age_s to {fmt_seconds(c_buffered)}."
        )
    return out
