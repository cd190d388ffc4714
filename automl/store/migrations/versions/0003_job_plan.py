"""The plan each job was checked into at submit (automl.engine.plan.plan_to_json), so a runner
runs it without checking the spec again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing jobs keep NULL: a runner plans them from their spec, as before.
    op.add_column("automl_jobs", sa.Column("plan_json", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automl_jobs") as batch:
        batch.drop_column("plan_json")
