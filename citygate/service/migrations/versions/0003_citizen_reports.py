"""citizen reports (Open311), their authors' personal data apart, and the indexes the public reads use

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "citizen_reports",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("case_id", _ID, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("service_code", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("attached", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("address_id", sa.String(length=100), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("media_url", sa.String(length=2000), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_citizen_reports_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizen_reports")),
        sa.UniqueConstraint("token", name=op.f("uq_citizen_reports_token")),
    )
    with op.batch_alter_table("citizen_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_citizen_reports_case_id"), ["case_id"], unique=False)

    op.create_table(
        "reporters",
        sa.Column("report_id", _ID, nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("device_id", sa.String(length=200), nullable=True),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["citizen_reports.id"], name=op.f("fk_reporters_report_id_citizen_reports")
        ),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_reporters")),
    )
    with op.batch_alter_table("reporters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reporters_expires_ms"), ["expires_ms"], unique=False)

    # Plain CREATE INDEX (no batch): on SQLite a batch would copy these tables, which are large.
    op.create_index("ix_cases_opened_ms", "cases", ["opened_ms"], unique=False)
    op.create_index("ix_cases_rule_latitude", "cases", ["rule_id", "latitude"], unique=False)
    op.create_index("ix_case_history_at_ms", "case_history", ["at_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_case_history_at_ms", table_name="case_history")
    op.drop_index("ix_cases_rule_latitude", table_name="cases")
    op.drop_index("ix_cases_opened_ms", table_name="cases")
    with op.batch_alter_table("reporters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reporters_expires_ms"))
    op.drop_table("reporters")
    with op.batch_alter_table("citizen_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_citizen_reports_case_id"))
    op.drop_table("citizen_reports")
