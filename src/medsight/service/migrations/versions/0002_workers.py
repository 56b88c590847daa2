"""Worker heartbeats: one row per live worker process, renewed even when it is idle.

``/api/ready`` counts the rows with a fresh heartbeat.

Revision ID: 0002_workers
Revises: 0001_baseline
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_workers"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the ``workers`` table."""
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("heartbeat", sa.DateTime, nullable=False),
    )
    op.create_index("ix_workers_heartbeat", "workers", ["heartbeat"])


def downgrade() -> None:
    """Drop the ``workers`` table."""
    op.drop_index("ix_workers_heartbeat", table_name="workers")
    op.drop_table("workers")
