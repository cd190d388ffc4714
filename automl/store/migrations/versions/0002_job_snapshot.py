"""A progress snapshot per job (counts by state, top trials, Pareto front), so status reads one row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing jobs keep NULL: `automl status` reads their Optuna study instead.
    op.add_column("automl_jobs", sa.Column("snapshot", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automl_jobs") as batch:
        batch.drop_column("snapshot")
