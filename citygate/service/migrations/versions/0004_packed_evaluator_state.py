"""the evaluator's state compressed (evaluator_state.packed); the JSON column kept for old rows

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
import zlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot drop a NOT NULL in place (the table is copied); PostgreSQL alters.
    with op.batch_alter_table("evaluator_state") as t:
        t.add_column(sa.Column("packed", sa.LargeBinary(), nullable=True))
        t.alter_column("snapshot", existing_type=sa.JSON(), nullable=True)


def downgrade() -> None:
    # The packed states back into the JSON column, as the code before 0004 reads them.
    state = sa.table(
        "evaluator_state",
        sa.column("name", sa.String()),
        sa.column("snapshot", sa.JSON()),
        sa.column("packed", sa.LargeBinary()),
    )
    conn = op.get_bind()
    packed = sa.select(state.c.name, state.c.packed).where(state.c.packed.is_not(None))
    packed_rows = conn.execute(packed).all()
    for name, data in packed_rows:
        conn.execute(
            state.update().where(state.c.name == name).values(snapshot=json.loads(zlib.decompress(data)))
        )
    with op.batch_alter_table("evaluator_state") as t:
        t.alter_column("snapshot", existing_type=sa.JSON(), nullable=False)
        t.drop_column("packed")
