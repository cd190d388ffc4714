"""What travels with a job: its code package and data file, stored by content hash (issue 16).

The ``automl_blobs`` table holds each package or data file once, named by its sha256; a job
names its code package and data file by that hash, so a rerun needs nothing new.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automl_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    # Existing jobs keep NULL: they ship nothing, as before.
    op.add_column("automl_jobs", sa.Column("code_sha256", sa.String(64), nullable=True))
    op.add_column("automl_jobs", sa.Column("data_sha256", sa.String(64), nullable=True))
    op.add_column("automl_jobs", sa.Column("data_source", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automl_jobs") as batch:
        batch.drop_column("data_source")
        batch.drop_column("data_sha256")
        batch.drop_column("code_sha256")
    op.drop_table("automl_blobs")
