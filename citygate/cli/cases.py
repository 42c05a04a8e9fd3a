"""``citygate cases``: list, show and work the service layer's cases through the cloud's API.

The commands talk to the cloud over HTTPS (``/v1/cases``) with an operator token, read from
the environment only (``CITYGATE_OPERATOR_TOKEN``: never an argument, which other users of
the machine could see in the process list). The cloud's URL, the CA that signed its server
certificate and, where the cloud asks for one (``client_cert_mode = "required"``), the
operator's client certificate and key come from options or their environment variables.
Every change is recorded under the token's name.

Text from cases (titles, notes: some of it from devices and other people) is shown with
control characters spelled out and no markup parsed.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from citygate.cli import err_console
from citygate.cli.gateway import plain

if TYPE_CHECKING:
    import httpx

TOKEN_ENV = "CITYGATE_OPERATOR_TOKEN"  # noqa: S105 - the variable's name, not a token
ACTIONS = ("acknowledge", "assign", "start", "resolve", "close", "reopen", "note")
STATUSES = ("new", "acknowledged", "assigned", "in_progress", "resolved", "closed")

app = typer.Typer(
    help=f"Cases: what the rules open and operators work (the cloud's API; token from {TOKEN_ENV}).",
    no_args_is_help=True,
)
console = Console()

UrlOpt = Annotated[
    str,
    typer.Option(
        "--url", envvar="CITYGATE_API_URL", help="The cloud's base URL, e.g. https://cloud.city:8443."
    ),
]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        envvar="CITYGATE_API_CA",
        help="CA file that signed the cloud's server certificate (default: the system's CAs).",
        exists=True,
        dir_okay=False,
    ),
]
CertOpt = Annotated[
    Path | None,
    typer.Option(
        "--cert",
        envvar="CITYGATE_API_CERT",
        help="Client certificate (PEM), when the cloud requires one (citygate pki issue operator NAME).",
        exists=True,
        dir_okay=False,
    ),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key", envvar="CITYGATE_API_KEY", help="The client certificate's key.", exists=True, dir_okay=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


class ApiError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def _client(url: str, ca: Path | None, cert: Path | None, key: Path | None) -> Iterator[httpx.Client]:
    import httpx

    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ApiError(f"set {TOKEN_ENV} to an operator token (it is never taken from the command line)", 2)
    if not url.startswith("https://"):
        raise ApiError(f"--url {url!r}: expected https:// (the token must not travel in the clear)", 2)
    if (cert is None) != (key is None):
        raise ApiError("--cert and --key go together", 2)
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    with httpx.Client(
        base_url=url.rstrip("/"),
        verify=ctx,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,  # no proxy from the environment sees the token
    ) as client:
        yield client


def _call(
    url: str,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
) -> Any:
    """The JSON answer, or ApiError naming the API's error and detail."""
    import httpx

    try:
        with _client(url, ca, cert, key) as client:
            r = client.request(method, path, params=params, json=body)
    except (httpx.TransportError, ssl.SSLError, OSError) as e:
        raise ApiError(f"cannot reach {url}: {e}") from e
    if r.is_success:
        return r.json()
    try:
        doc = r.json()
    except ValueError:
        doc = {"detail": r.text[:300]}
    error = doc.get("error", "") if isinstance(doc, dict) else ""
    detail = doc.get("detail", doc) if isinstance(doc, dict) else doc
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    raise ApiError(f"HTTP {r.status_code}{' ' + error if error else ''}: {detail}")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ApiError as e:
        err_console.print(plain(f"error: {e}"), highlight=False)
        raise typer.Exit(e.code) from e


def _print_json(doc: Any) -> None:
    typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _cell(v: Any) -> Any:
    return plain("–" if v is None or v == "" else str(v))


@app.command("list")
def list_cases(
    url: UrlOpt,
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    status: Annotated[str | None, typer.Option(help=f"Only this status: {', '.join(STATUSES)}.")] = None,
    service: Annotated[str | None, typer.Option(help="Only this city service (waste, flood...).")] = None,
    district: Annotated[str | None, typer.Option(help="Only this district.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Closed cases too.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Cases, newest first: open ones unless --all."""
    params: dict[str, Any] = {"open": str(not all_).lower(), "limit": limit, "offset": offset}
    params |= {k: v for k, v in (("status", status), ("service", service), ("district", district)) if v}
    with _errors():
        doc = _call(url, ca, cert, key, "GET", "/v1/cases", params=params)
    if as_json:
        _print_json(doc)
        return
    t = Table(title=f"cases ({'all' if all_ else 'open'})", title_justify="left")
    for col in ("id", "status", "severity", "service", "district", "subject", "title", "assignee", "opened"):
        t.add_column(col, no_wrap=col in ("id", "status", "opened"))
    for c in doc["cases"]:
        t.add_row(
            str(c["id"]),
            *(
                _cell(c[k])
                for k in ("status", "severity", "service", "district", "subject", "title", "assignee")
            ),
            _cell(c["opened_at"]),
        )
    console.print(t)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(doc["counts"].items())) or "none"
    typer.echo(f"{len(doc['cases'])} shown; open: {counts}")


@app.command("show")
def show(
    case_id: Annotated[int, typer.Argument(help="The case's id.")],
    url: UrlOpt,
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One case and its history (who did what, when, with their notes)."""
    with _errors():
        doc = _call(url, ca, cert, key, "GET", f"/v1/cases/{case_id}")
    if as_json:
        _print_json(doc)
        return
    _print_case(doc["case"])
    h = Table(title="history", title_justify="left")
    for col in ("at", "actor", "action", "from", "to", "note"):
        h.add_column(col, no_wrap=col != "note")
    for e in doc["history"]:
        h.add_row(*(_cell(e[k]) for k in ("at", "actor", "action", "from_status", "to_status", "note")))
    console.print(h)


def _print_case(c: dict[str, Any]) -> None:
    t = Table(title=f"case {c['id']}", title_justify="left", show_header=False)
    t.add_column("key", style="bold", no_wrap=True)
    t.add_column("value")
    keys = (
        "status", "title", "rule", "subject", "service", "severity", "district", "site", "assignee",
        "occurrences", "escalation", "merged_into", "detail", "opened_at", "acknowledged_at",
        "resolved_at", "closed_at", "condition_at", "cleared_at",
    )  # fmt: skip
    for k in keys:
        t.add_row(k, _cell(c.get(k)))
    console.print(t)


@app.command("act")
def act(
    case_id: Annotated[int, typer.Argument(help="The case's id.")],
    action: Annotated[str, typer.Argument(help=f"One of: {', '.join(ACTIONS)}.")],
    url: UrlOpt,
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    note: Annotated[str, typer.Option(help="A note for the history (at most 2000 characters).")] = "",
    assignee: Annotated[str | None, typer.Option(help="Who takes the case (assign only).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Act on a case; it is recorded under the operator token's name."""
    if action not in ACTIONS:
        err_console.print(plain(f"error: unknown action {action!r}; expected one of {', '.join(ACTIONS)}"))
        raise typer.Exit(2)
    body: dict[str, Any] = {"action": action, "note": note}
    if assignee is not None:
        body["assignee"] = assignee
    with _errors():
        doc = _call(url, ca, cert, key, "POST", f"/v1/cases/{case_id}/actions", body=body)
    if as_json:
        _print_json(doc)
        return
    t = doc["transition"]
    typer.echo(
        plain(f"case {t['case_id']}: {t['action']} ({t['from_status'] or '–'} -> {t['to_status']})").plain
    )
