"""Jobs and their events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automl_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("spec_yaml", sa.Text, nullable=False),
        sa.Column("base_dir", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("runner_id", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("study_name", sa.String(128), nullable=False),
        sa.Column("experiment_id", sa.String(64), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("trials_total", sa.Integer, nullable=False),
        sa.Column("trials_finished", sa.Integer, nullable=False, server_default="0"),
        sa.Column("best_value", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_automl_jobs_state", "automl_jobs", ["state"])
    op.create_index("ix_automl_jobs_state_created", "automl_jobs", ["state", "created_at"])
    op.create_table(
        "automl_job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("automl_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("runner_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_automl_job_events_job_id", "automl_job_events", ["job_id"])


def downgrade() -> None:
    op.drop_table("automl_job_events")
    op.drop_table("automl_jobs")
