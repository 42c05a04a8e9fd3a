"""The service store's tables (SQLAlchemy Core): cases, their history, the event outbox,
subscriptions, deliveries and their attempts, and the evaluator's saved state.

One schema for SQLite (the default) and PostgreSQL (production). The Alembic migrations
in :mod:`citygate.service.migrations` create exactly this (a test compares them), so a
change here comes with a new migration.

Times are integer milliseconds since the epoch, UTC (``*_ms``), or device-time
nanoseconds (``*_ns``, as in the readings): the same in both databases and in JSON.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger autoincrement primary keys are plain INTEGER on SQLite (its rowid) and BIGINT
# identity on PostgreSQL.
_Id = BigInteger().with_variant(Integer(), "sqlite")

cases = Table(
    "cases",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("rule_id", String(200), nullable=False),  # "<profile>.<rule>", or "citizen.<service>"
    Column("subject", String(200), nullable=False),  # device or gateway id (or a report's id)
    Column("source", String(16), nullable=False),  # "sensor" | "citizen" | "system"
    Column("service", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", String(300), nullable=False),
    Column("status", String(16), nullable=False),
    # True until closed or merged; the partial unique index below is what makes "one case
    # per (rule, subject) while it is open" true under any number of writers.
    Column("is_open", Boolean, nullable=False),
    Column("site", String(64)),
    Column("district", String(64)),
    Column("assignee", String(200)),
    Column("opened_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("acknowledged_ms", BigInteger),
    Column("resolved_ms", BigInteger),
    Column("closed_ms", BigInteger),
    Column("condition_ns", BigInteger),  # device time the condition took effect
    Column("cleared_ns", BigInteger),  # device time it cleared (the case stays open for people)
    Column("occurrences", Integer, nullable=False, server_default=text("1")),
    Column("late", Boolean, nullable=False, server_default=text("false")),
    Column("forecast_ns", BigInteger),  # a forecast rule: when the threshold was predicted to be crossed
    Column("forecast_outcome", String(16)),  # "came_true" | "did_not" once known
    Column("escalation", Integer, nullable=False, server_default=text("0")),  # steps escalated so far
    Column("merged_into", ForeignKey("cases.id")),
    Column("detail", Text, nullable=False, server_default=text("''")),
    Column("latitude", Float),
    Column("longitude", Float),
)
Index(
    "uq_cases_open_rule_subject",
    cases.c.rule_id,
    cases.c.subject,
    unique=True,
    sqlite_where=cases.c.is_open,
    postgresql_where=cases.c.is_open,
)
Index("ix_cases_status_service", cases.c.status, cases.c.service)
# The public lists (Open311 GET requests) ask for cases opened in a time range.
Index("ix_cases_opened_ms", cases.c.opened_ms)
# A citizen report looks for an open case of its service around its place: a range of
# latitudes within one rule, not a scan of every open case of that rule. (Not partial: SQLite
# uses a partial index only for a WHERE that repeats its condition word for word.)
Index("ix_cases_rule_latitude", cases.c.rule_id, cases.c.latitude)

case_history = Table(
    "case_history",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("case_id", ForeignKey("cases.id"), nullable=False, index=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),  # "rules", "system", or the operator's identity
    Column("action", String(32), nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("note", Text, nullable=False, server_default=text("''")),
    Column("data", JSON, nullable=False),
    # A condition change applied twice (the evaluator replaying after a restart) finds its
    # key taken and changes nothing: re-delivery of a change is not a second transition.
    Column("change_key", String(400), unique=True),
)
# Open311 servicerequestupdates: the history of a time range.
Index("ix_case_history_at_ms", case_history.c.at_ms)

# The transactional outbox: written in the transaction of the transition it describes.
events = Table(
    "events",
    metadata,
    Column("seq", _Id, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),  # CloudEvents id = webhook-id
    Column("type", String(100), nullable=False),
    Column("case_id", ForeignKey("cases.id"), nullable=False, index=True),
    Column("history_id", ForeignKey("case_history.id"), nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("service", String(64), nullable=False),
    Column("district", String(64)),
    Column("severity", String(16), nullable=False),
    Column("data", JSON, nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("name", String(100), primary_key=True),  # from the configuration; secrets stay there
    Column("url", String(2000), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", Text),
    Column("failing_since_ms", BigInteger),  # first failure since the last delivery
    Column("created_ms", BigInteger, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("subscription", ForeignKey("subscriptions.name"), primary_key=True),
    Column("event_seq", ForeignKey("events.seq"), primary_key=True),
    Column("status", String(16), nullable=False),  # pending | delivered | gone | expired
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_ms", BigInteger, nullable=False),  # not before
    Column("created_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger),
    # A dispatcher's lease: another dispatcher may take the delivery once it has passed.
    Column("claimed_by", String(100)),
    Column("claimed_until_ms", BigInteger),
    Column("last_http_status", Integer),
    Column("last_detail", Text),
)
Index("ix_deliveries_due", deliveries.c.status, deliveries.c.next_ms)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("subscription", String(100), nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("http_status", Integer),
    Column("elapsed_ms", Integer, nullable=False),
    Column("detail", Text, nullable=False, server_default=text("''")),
)
Index("ix_delivery_attempts_sub_at", delivery_attempts.c.subscription, delivery_attempts.c.at_ms)

evaluator_state = Table(
    "evaluator_state",
    metadata,
    Column("name", String(100), primary_key=True),
    # Rows written before migration 0004: the state as JSON. Since: NULL, and ``packed``.
    Column("snapshot", JSON, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
    # The state as zlib-compressed JSON (citygate/service/layer.py, pack_state): a fifth of
    # the bytes the store writes at every checkpoint.
    Column("packed", LargeBinary, nullable=True),
)

# Accepted readings waiting for the rules (written by ingest after the database confirmed
# them; deleted by the evaluator in the transaction that saves its state). Batches, not
# readings: one row per ingest batch keeps the cost off the ingest path.
reading_feed = Table(
    "reading_feed",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # "readings" | "heartbeat"
    Column("received_ms", BigInteger, nullable=False),
    Column("gateway_id", String(200), nullable=False),
    Column("count", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),  # orjson, see citygate.service.feed
)

# Who evaluates the rules: one evaluator per store at a time, by lease (replicas take over
# when the holder stops renewing).
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("until_ms", BigInteger, nullable=False),
)

# Citizen reports (Open311 POST requests): one row per report, with the case it opened or
# joined (a report near an open case of the same service joins it). What the reporter said
# about the place is here and public; who they are is in ``reporters``, apart.
citizen_reports = Table(
    "citizen_reports",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("case_id", ForeignKey("cases.id"), nullable=False, index=True),
    Column("token", String(64), nullable=False, unique=True),  # GET tokens/{token}
    Column("service_code", String(64), nullable=False),
    Column("client", String(100), nullable=False),  # the name of the API key it came with
    Column("received_ms", BigInteger, nullable=False),
    Column("attached", Boolean, nullable=False),  # joined an open case rather than opening one
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("address", String(500)),
    Column("address_id", String(100)),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("media_url", String(2000)),
    Column("attributes", JSON, nullable=False),
)

# Personal data of a report's author (name, e-mail, phone, device and account ids): never in
# a case, an event, a log line or a public answer, and deleted at ``expires_ms`` (set when the
# report is taken, from [cloud.open311] personal_data_retention_s) by the escalation pass.
reporters = Table(
    "reporters",
    metadata,
    Column("report_id", ForeignKey("citizen_reports.id"), primary_key=True),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("email", String(254)),
    Column("phone", String(40)),
    Column("device_id", String(200)),
    Column("account_id", String(200)),
    Column("expires_ms", BigInteger, nullable=False, index=True),
)
