"""The front door (issue 17): users and their tokens, an owner on every job, and webhook deliveries.

Tokens are stored as the sha256 of the secret only (the secret is shown once, when it is made).
A job's ``owner`` is the user who submitted it through ``automl server`` (NULL: submitted to the
embedded store, seen only by admins through the server). ``notified`` marks a finished job whose
webhooks were queued as ``automl_deliveries`` rows; jobs that had finished before this migration
count as notified, so no webhook fires for old news.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automl_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "automl_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("user_name", sa.String(64), sa.ForeignKey("automl_users.name", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=True),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        sa.Column("last_used_at", sa.DateTime, nullable=True),
    )
    op.add_column("automl_jobs", sa.Column("owner", sa.String(64), nullable=True))
    op.create_index("ix_automl_jobs_owner_created", "automl_jobs", ["owner", "created_at"])
    op.add_column("automl_jobs", sa.Column("notified", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute("UPDATE automl_jobs SET notified = true WHERE state IN ('succeeded', 'failed', 'cancelled')")
    # The notifiers' once-a-second look for finished jobs not yet notified reads this index, not every job.
    op.create_index(
        "ix_automl_jobs_unnotified",
        "automl_jobs",
        ["state"],
        postgresql_where=sa.text("notified = false"),
        sqlite_where=sa.text("notified = 0"),
    )
    op.create_table(
        "automl_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("automl_jobs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("next_at", sa.DateTime, nullable=True, index=True),
        sa.Column("delivered_at", sa.DateTime, nullable=True),
        sa.Column("gave_up_at", sa.DateTime, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("automl_deliveries")
    op.drop_index("ix_automl_jobs_unnotified", table_name="automl_jobs")
    op.drop_index("ix_automl_jobs_owner_created", table_name="automl_jobs")
    with op.batch_alter_table("automl_jobs") as batch:
        batch.drop_column("notified")
        batch.drop_column("owner")
    op.drop_table("automl_tokens")
    op.drop_table("automl_users")
