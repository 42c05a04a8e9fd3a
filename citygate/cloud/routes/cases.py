"""Cases and subscriptions for operators: list, show, act, merge; delivery logs and replay.

Every endpoint needs an operator token; the actor recorded for a change is that token's
name. Without ``[cloud.service]`` they answer 404 ``service_layer_off``. The store is a
blocking database: every call to it runs in the thread pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from citygate.cloud.cases import (
    MAX_LIMIT,
    ActionAnswer,
    ActionRequest,
    Case,
    CaseDetail,
    CaseList,
    CaseStatus,
    DeliveryAttempt,
    DeliveryLog,
    HistoryEntry,
    MergeRequest,
    NotFound,
    ReplayAnswer,
    ReplayRequest,
    ServiceLayerOff,
    SubscriptionList,
    TransitionOut,
    subscription_known,
    subscription_rows,
)
from citygate.cloud.routes.deps import Operator, State

if TYPE_CHECKING:
    from citygate.service.case_model import Transition
    from citygate.service.cases import CaseStore
    from citygate.service.layer import ServiceLayer

router = APIRouter(tags=["cases"])


def service_layer(_op: Operator, state: State) -> ServiceLayer:
    """The service layer (after the operator check: no token is 401 even when it is off)."""
    if state.service is None:
        raise ServiceLayerOff("the service layer is off on this cloud ([cloud.service] enabled = false)")
    return state.service


# FastAPI reads the annotation at runtime, where ServiceLayer (and SQLAlchemy behind it) is
# not imported unless the service layer runs; mypy sees the real type.
if TYPE_CHECKING:
    Service = Annotated[ServiceLayer, Depends(service_layer)]
else:
    Service = Annotated[object, Depends(service_layer)]


def _case_or_404(store: CaseStore, case_id: int) -> Case:
    row = store.get(case_id)
    if row is None:
        raise NotFound("no_such_case", f"no case {case_id}")
    return Case.of(row)


@router.get("/v1/cases", response_model=CaseList, summary="Cases, newest first (open ones by default)")
async def list_cases(
    service: Service,
    status: CaseStatus | None = None,
    service_name: Annotated[str | None, Query(alias="service")] = None,
    district: str | None = None,
    open_only: Annotated[bool, Query(alias="open")] = True,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CaseList:
    store = service.store

    def read() -> CaseList:
        rows = store.list_cases(
            status=status,
            service=service_name,
            district=district,
            open_only=open_only,
            limit=limit,
            offset=offset,
        )
        return CaseList(cases=[Case.of(r) for r in rows], counts=store.counts(), limit=limit, offset=offset)

    return await run_in_threadpool(read)


@router.get("/v1/cases/{case_id}", response_model=CaseDetail, summary="One case with its history")
async def get_case(case_id: int, service: Service) -> CaseDetail:
    store = service.store

    def read() -> CaseDetail:
        case = _case_or_404(store, case_id)
        return CaseDetail(case=case, history=[HistoryEntry.of(h) for h in store.history(case_id)])

    return await run_in_threadpool(read)


@router.post(
    "/v1/cases/{case_id}/actions",
    response_model=ActionAnswer,
    summary="Acknowledge, assign, start, resolve, close, reopen or note a case",
)
async def act(case_id: int, body: ActionRequest, operator: Operator, service: Service) -> ActionAnswer:
    """404 for no such case (CaseNotFoundError), 409 when the case's status does not allow the
    action or it changed meanwhile."""
    store = service.store

    def change() -> ActionAnswer:
        t = store.act(case_id, body.action, operator, note=body.note, assignee=body.assignee)
        service.dispatcher.wake()
        return _answer(store, t)

    return await run_in_threadpool(change)


@router.post(
    "/v1/cases/{case_id}/merge",
    response_model=ActionAnswer,
    summary="Close a case as a duplicate of another (which stays open, with a note)",
)
async def merge(case_id: int, body: MergeRequest, operator: Operator, service: Service) -> ActionAnswer:
    store = service.store

    def change() -> ActionAnswer:
        t = store.merge(case_id, body.into, operator, note=body.note)
        service.dispatcher.wake()
        return _answer(store, t)

    return await run_in_threadpool(change)


def _answer(store: CaseStore, t: Transition) -> ActionAnswer:
    return ActionAnswer(transition=TransitionOut.of(t), case=_case_or_404(store, t.case_id))


@router.get(
    "/v1/subscriptions",
    response_model=SubscriptionList,
    summary="Subscriptions: state and deliveries by status",
)
async def list_subscriptions(service: Service) -> SubscriptionList:
    configured = {s.name for s in service.settings.subscriptions}
    rows = await run_in_threadpool(subscription_rows, service.engine, configured)
    return SubscriptionList(subscriptions=rows)


@router.get(
    "/v1/subscriptions/{name}/deliveries",
    response_model=DeliveryLog,
    summary="A subscription's delivery attempts, newest first",
)
async def deliveries(
    name: str, service: Service, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100
) -> DeliveryLog:
    def read() -> DeliveryLog:
        if not subscription_known(service.engine, name):
            raise NotFound("no_such_subscription", f"no subscription {name!r}")
        rows = service.dispatcher.delivery_log(name, limit)
        return DeliveryLog(subscription=name, attempts=[DeliveryAttempt.of(r) for r in rows])

    return await run_in_threadpool(read)


@router.post(
    "/v1/subscriptions/{name}/replay",
    response_model=ReplayAnswer,
    summary="Send a subscription every event since a time again (and enable it)",
)
async def replay(name: str, body: ReplayRequest, _op: Operator, service: Service) -> ReplayAnswer:
    def run() -> int:
        try:
            return service.dispatcher.replay(name, body.since_ms)
        except KeyError as e:
            raise NotFound("no_such_subscription", f"no subscription {name!r} is configured") from e

    n = await run_in_threadpool(run)
    return ReplayAnswer(subscription=name, since=body.since, replayed=n)
