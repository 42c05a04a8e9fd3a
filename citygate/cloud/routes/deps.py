"""Request-scoped helpers shared by the routers: state, callers, bounded body reading."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from citygate.cloud.auth import GatewayIdentity
from citygate.cloud.state import CloudState
from citygate.errors import AuthError, BatchError


def get_state(request: Request) -> CloudState:
    state: CloudState = request.app.state.cloud
    return state


State = Annotated[CloudState, Depends(get_state)]


def gateway(request: Request, state: State) -> GatewayIdentity:
    """The calling gateway from its certificate, registered in the inventory (raises AuthError,
    RevocationUnavailable)."""
    try:
        gw = state.verifier.gateway(request.scope)
    finally:
        nu = state.verifier.crl_next_update
        if nu is not None:
            state.metrics.crl_next_update.set(nu.timestamp())
    holder = state.inventory
    # A gateway registered a moment ago: look at the file once more before refusing.
    if gw.gateway_id not in holder.validator.inventory.gateways and not (
        holder.refresh() and gw.gateway_id in holder.validator.inventory.gateways
    ):
        raise AuthError(
            403,
            "gateway_not_registered",
            f"gateway {gw.gateway_id!r} is not registered in the cloud's inventory "
            "(citygate pki issue gateway registers it; a revoked gateway is unregistered)",
        )
    return gw


def reader(request: Request, state: State) -> str:
    return state.tokens.check(request.headers.get("authorization"), operator=False)


def operator(request: Request, state: State) -> str:
    return state.tokens.check(request.headers.get("authorization"), operator=True)


Gateway = Annotated[GatewayIdentity, Depends(gateway)]
Reader = Annotated[str, Depends(reader)]
Operator = Annotated[str, Depends(operator)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it grows past ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BatchError(413, "body_too_large", f"body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BatchError(413, "body_too_large", f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
