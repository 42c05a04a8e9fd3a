"""One SensorThings request resolved into its answer: path, options, entities, expansions, links.

:class:`View` is the model as one caller sees it (the profiles ``[cloud.opendata]`` lets
them see); an entity they may not see is answered as one that does not exist (404), and is
never a related entity or a member of a set. Inventory entities are filtered, ordered and
paged in memory; Observations are read from InfluxDB (:mod:`.observations`), every query's
cost counted against the request's budget before it is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from citygate.opendata.sta import ids
from citygate.opendata.sta import observations as obs
from citygate.opendata.sta.entities import ENTITY_SETS, NAVIGATION, Entity, Kind, Model, Stream
from citygate.opendata.sta.errors import BadQueryError, EntityNotFoundError, ObservationsUnavailableError
from citygate.opendata.sta.filters import Compiler
from citygate.opendata.sta.paths import ResourcePath, parse_path
from citygate.opendata.sta.query import Options, parse_options
from citygate.opendata.sta.render import Links, render
from citygate.opendata.sta.settings import StaSettings

_SPEC: Final = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
# Only what is implemented in full (docs/SENSORTHINGS.md): read-only (no create-update-delete),
# no MultiDatastreams, no batch, no MQTT, no dataArray; $filter is a subset (so not
# request-data/filter, nor request-data as a whole).
CONFORMANCE: Final = tuple(
    _SPEC + c
    for c in (
        "datamodel",
        "resource-path/resource-path-to-entities",
        "request-data/status-code",
        "request-data/query-status-code",
        "request-data/order",
        "request-data/expand",
        "request-data/select",
        "request-data/orderby",
        "request-data/top",
        "request-data/skip",
        "request-data/count",
    )
)


class View:
    """The model restricted to the profiles one caller may see."""

    def __init__(self, model: Model, allowed: frozenset[str]) -> None:
        self.model = model
        self.allowed = allowed

    def get(self, kind: Kind, entity_id: int) -> Entity | None:
        e = self.model.get(kind, entity_id)
        return e if e is not None and e.profile in self.allowed else None

    def all(self, kind: Kind) -> list[Entity]:
        return [e for e in self.model.all(kind) if e.profile in self.allowed]

    def related(self, entity: Entity, nav: str) -> list[Entity]:
        target = NAVIGATION[entity.kind][nav].target
        if target is Kind.OBSERVATION:
            raise BadQueryError(f"Observations of a {entity.kind.value} are read from its Observations path")
        return [e for i in entity.links.get(nav, ()) if (e := self.get(target, i)) is not None]

    def stream(self, datastream_id: int) -> Stream | None:
        s = self.model.streams.get(datastream_id)
        return s if s is not None and s.profile in self.allowed else None

    def streams_of(self, entity: Entity | None) -> list[Stream]:
        """The Datastreams whose Observations a path names (all of them from the set itself)."""
        if entity is None:
            return [s for s in self.model.streams.values() if s.profile in self.allowed]
        if entity.kind is Kind.DATASTREAM:
            s = self.stream(entity.id)
            return [s] if s is not None else []
        return [s for i in self.model.foi_streams.get(entity.id, ()) if (s := self.stream(i)) is not None]


@dataclass(slots=True)
class Answer:
    body: Any = field(repr=False)  # a JSON document, or text for $value (megabytes: kept out of reprs)
    media_type: str = "application/json"


@dataclass(slots=True)
class Context:
    """One request: who sees what, how to read Observations, and what it has spent."""

    settings: StaSettings
    view: View
    links: Links
    run: obs.Runner | None  # None: the store has no InfluxQL
    now_ns: int
    rows: int = 0  # points the database may send, planned so far
    long_streams: int = 0  # Datastreams read over no (or a too long) time range, so far
    entities: int = 0
    compiler: Compiler = field(init=False)

    def __post_init__(self) -> None:
        self.compiler = Compiler(self.view)

    def runner(self) -> obs.Runner:
        if self.run is None:
            raise ObservationsUnavailableError(
                "this deployment's store has no InfluxQL, so Observations cannot be read "
                "(the other entities are served; docs/CLOUD.md)"
            )
        return self.run

    def top(self, opts: Options) -> int:
        return min(opts.top if opts.top is not None else self.settings.default_top, self.settings.max_top)

    def spend_rows(self, streams: int, f: obs.ObsFilter, page: obs.Page, rows: int) -> None:
        """Counts a read against the request's budget (over all its expansions), or refuses it."""
        length = f.window.length_s(self.now_ns)
        long = length is None or length > self.settings.max_time_range_s
        total = self.long_streams + streams if long else streams
        obs.check_cost(self.settings, total, f, page, self.now_ns, self.rows + rows)
        self.rows += rows
        if long:
            self.long_streams = total

    def spend_entities(self, n: int) -> None:
        self.entities += n
        if self.entities > self.settings.max_entities:
            raise BadQueryError(
                f"this answer would hold more than {self.settings.max_entities} entities "
                "([cloud.sta] max_entities): lower $top, or the $top of what is expanded"
            )


@dataclass(slots=True)
class Members:
    """The set a path ends at: inventory entities, or the Observations of some Datastreams."""

    kind: Kind
    url: str
    entities: list[Entity] | None = None
    streams: list[Stream] | None = None


def root(links: Links) -> dict[str, Any]:
    return {
        "value": [{"name": name, "url": links.set(kind)} for name, kind in ENTITY_SETS.items()],
        "serverSettings": {"conformance": list(CONFORMANCE)},
    }


async def _observation(ctx: Context, obs_id: int, within: Sequence[Stream] | None) -> Entity:
    split = ids.split_observation_id(obs_id)
    stream = ctx.view.stream(split[0]) if split is not None else None
    if within is not None and stream is not None and stream not in within:
        stream = None
    if split is None or stream is None:
        raise EntityNotFoundError(f"no Observation {obs_id}")
    found = await obs.lookup(ctx.runner(), stream, split[1])
    if found is None:
        raise EntityNotFoundError(f"no Observation {obs_id}")
    return found


async def resolve(ctx: Context, path: ResourcePath) -> Entity | Members:
    view = ctx.view
    first = path.steps[0]
    url = ctx.links.set(first.kind)
    current: Entity | Members
    if first.key is None:
        if first.kind is Kind.OBSERVATION:
            current = Members(first.kind, url, streams=view.streams_of(None))
        else:
            current = Members(first.kind, url, entities=view.all(first.kind))
    elif first.kind is Kind.OBSERVATION:
        current = await _observation(ctx, first.key, None)
    else:
        found = view.get(first.kind, first.key)
        if found is None:
            raise EntityNotFoundError(f"no {first.kind.value} {first.key}")
        current = found
    for step in path.steps[1:]:
        assert isinstance(current, Entity)  # the path parser puts a key before every further step
        parent = current
        url = ctx.links.nav(parent.kind, parent.id, step.name)
        if step.kind is Kind.OBSERVATION:
            streams = view.streams_of(parent)
            if step.key is None:
                current = Members(step.kind, url, streams=streams)
            else:
                current = await _observation(ctx, step.key, streams)
            continue
        if parent.kind is Kind.OBSERVATION or not step.many:
            related = [
                e for i in parent.links.get(step.name, ()) if (e := view.get(step.kind, i)) is not None
            ]
            if not related:
                raise EntityNotFoundError(f"{parent.kind.value} {parent.id} has no {step.name}")
            current = related[0]
            continue
        members = view.related(parent, step.name)
        if step.key is None:
            current = Members(step.kind, url, entities=members)
        else:
            hit = [e for e in members if e.id == step.key]
            if not hit:
                raise EntityNotFoundError(
                    f"no {step.kind.value} {step.key} at {parent.kind.value} {parent.id}"
                )
            current = hit[0]
    return current


@dataclass(slots=True)
class Collected:
    entities: list[Entity]
    more: bool
    count: int | None
    token: str | None = None  # Observations: the next page's $skiptoken
    next_skip: int | None = None  # ... or its $skip


def _collected(listed: obs.Listed, top: int) -> Collected:
    return Collected(listed.entities, listed.more and top > 0, listed.count, listed.token, listed.next_skip)


async def _inventory_page(ctx: Context, kind: Kind, entities: list[Entity], opts: Options) -> Collected:
    top = ctx.top(opts)
    chosen = entities
    if opts.filter is not None:
        predicate = ctx.compiler.predicate(opts.filter, kind)
        chosen = [e for e in chosen if predicate(e)]
    if opts.orderby:
        chosen = sorted(chosen, key=ctx.compiler.sort_key(opts.orderby, kind))
    page = chosen[opts.skip : opts.skip + top]
    return Collected(page, len(chosen) > opts.skip + top and top > 0, len(chosen) if opts.count else None)


def _plan(ctx: Context, streams: list[Stream], opts: Options) -> tuple[list[Stream], obs.ObsFilter]:
    f = obs.split_filter(opts.filter, ctx.compiler)
    if f.streams is not None:
        keep = f.streams
        streams = [s for s in streams if keep(obs.probe(s))]
    if f.only_stream is not None:
        streams = [s for s in streams if s.datastream_id == f.only_stream]
    return streams, f


async def _observation_page(ctx: Context, streams: list[Stream], opts: Options) -> Collected:
    run = ctx.runner()
    streams, f = _plan(ctx, streams, opts)
    descending = obs.page_order(opts.orderby, len(streams) > 1)
    page = obs.Page(ctx.top(opts), opts.skip, descending, opts.count, opts.skiptoken)
    ctx.spend_rows(len(streams), f, page, obs.merged_rows(streams, page) if not f.false else 0)
    return _collected(await obs.read_merged(run, streams, f, page), page.top)


def _rendered_page(
    ctx: Context, got: Collected, opts: Options, url: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The page rendered (its expansions are the caller's: one batch per level), and its
    @iot.count / @iot.nextLink annotations."""
    ctx.spend_entities(len(got.entities))
    rendered = [render(e, ctx.links, opts.select) for e in got.entities]
    notes: dict[str, Any] = {}
    if got.count is not None:
        notes["@iot.count"] = got.count
    if got.more:
        top = ctx.top(opts)
        skip = got.next_skip if got.next_skip is not None else opts.skip + top
        notes["@iot.nextLink"] = ctx.links.with_options(url, opts.raw, top=top, skip=skip, token=got.token)
    return rendered, notes


async def collection(ctx: Context, members: Members, opts: Options) -> dict[str, Any]:
    if members.streams is not None:
        got = await _observation_page(ctx, members.streams, opts)
    else:
        got = await _inventory_page(ctx, members.kind, members.entities or [], opts)
    rendered, notes = _rendered_page(ctx, got, opts, members.url)
    await expand(ctx, got.entities, rendered, members.kind, opts.expand)
    out: dict[str, Any] = {}
    if "@iot.count" in notes:
        out["@iot.count"] = notes["@iot.count"]
    out["value"] = rendered
    if "@iot.nextLink" in notes:
        out["@iot.nextLink"] = notes["@iot.nextLink"]
    return out


async def _expand_observations(
    ctx: Context, parents: list[Entity], outs: list[dict[str, Any]], nav: str, opts: Options
) -> None:
    run = ctx.runner()
    top = ctx.top(opts)
    if parents and parents[0].kind is Kind.DATASTREAM:
        streams = [s for p in parents if (s := ctx.view.stream(p.id)) is not None]
        kept, f = _plan(ctx, streams, opts)
        page = obs.Page(top, opts.skip, obs.page_order(opts.orderby, False), opts.count)
        ctx.spend_rows(len(kept), f, page, obs.each_rows(kept, page) if not f.false else 0)
        got = await obs.read_each(run, kept, f, page)
        empty = obs.Listed([], False, 0 if opts.count else None)
        per_parent = [got.get(p.id, empty) for p in parents]
    else:  # a FeatureOfInterest: the Observations of the device's Datastreams together
        per_parent = []
        for p in parents:
            kept, f = _plan(ctx, ctx.view.streams_of(p), opts)
            page = obs.Page(top, opts.skip, obs.page_order(opts.orderby, len(kept) > 1), opts.count)
            ctx.spend_rows(len(kept), f, page, obs.merged_rows(kept, page) if not f.false else 0)
            per_parent.append(await obs.read_merged(run, kept, f, page))
    children: list[Entity] = []
    child_outs: list[dict[str, Any]] = []
    for p, out, listed in zip(parents, outs, per_parent, strict=True):
        got_page = _collected(listed, top)
        rendered, notes = _rendered_page(ctx, got_page, opts, ctx.links.nav(p.kind, p.id, nav))
        _attach(out, nav, rendered, notes)
        children += got_page.entities
        child_outs += rendered
    await expand(ctx, children, child_outs, Kind.OBSERVATION, opts.expand)


def _attach(out: dict[str, Any], nav: str, rendered: Any, notes: dict[str, Any]) -> None:
    out.pop(f"{nav}@iot.navigationLink", None)
    if "@iot.count" in notes:
        out[f"{nav}@iot.count"] = notes["@iot.count"]
    out[nav] = rendered
    if "@iot.nextLink" in notes:
        out[f"{nav}@iot.nextLink"] = notes["@iot.nextLink"]


async def expand(
    ctx: Context, parents: list[Entity], outs: list[dict[str, Any]], kind: Kind, tree: dict[str, Options]
) -> None:
    """Each ``$expand`` item for all ``parents`` at once (Observations: one query per field)."""
    if not parents:
        return
    for nav, opts in tree.items():
        info = NAVIGATION[kind][nav]
        if info.target is Kind.OBSERVATION:
            await _expand_observations(ctx, parents, outs, nav, opts)
        elif info.many and kind is not Kind.OBSERVATION:
            children: list[Entity] = []
            child_outs: list[dict[str, Any]] = []
            for p, out in zip(parents, outs, strict=True):
                got = await _inventory_page(ctx, info.target, ctx.view.related(p, nav), opts)
                rendered, notes = _rendered_page(ctx, got, opts, ctx.links.nav(p.kind, p.id, nav))
                _attach(out, nav, rendered, notes)
                children += got.entities
                child_outs += rendered
            await expand(ctx, children, child_outs, info.target, opts.expand)
        else:
            children, child_outs = [], []
            for p, out in zip(parents, outs, strict=True):
                ids_ = p.links.get(nav, ())
                child = ctx.view.get(info.target, ids_[0]) if ids_ else None
                if child is None:
                    continue
                ctx.spend_entities(1)
                rendered_child = render(child, ctx.links, opts.select)
                out.pop(f"{nav}@iot.navigationLink", None)
                out[nav] = rendered_child
                children.append(child)
                child_outs.append(rendered_child)
            await expand(ctx, children, child_outs, info.target, opts.expand)


async def respond(ctx: Context, path_text: str, items: Sequence[tuple[str, str]]) -> Answer:
    """The answer to ``GET /sta/v1.1/<path_text>?<items>`` (raises StaError subclasses)."""
    if path_text.strip("/") == "":
        return Answer(root(ctx.links))
    path = parse_path(path_text)
    opts = parse_options(path.kind, items, ctx.settings.max_expand_depth)
    if path.ref:
        opts.select, opts.expand = ("selfLink",), {}
    target = await resolve(ctx, path)
    if isinstance(target, Members):
        return Answer(await collection(ctx, target, opts))
    if path.prop is not None:
        value = target.id if path.prop == "id" else target.props.get(path.prop)
        if value is None:
            raise EntityNotFoundError(f"{target.kind.value} {target.id} has no {path.prop}")
        if path.value:
            return Answer(value if isinstance(value, str) else _json_text(value), "text/plain; charset=utf-8")
        return Answer({"@iot.id" if path.prop == "id" else path.prop: value})
    ctx.spend_entities(1)
    out = render(target, ctx.links, opts.select)
    await expand(ctx, [target], [out], target.kind, opts.expand)
    return Answer(out)


def _json_text(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()
