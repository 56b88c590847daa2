"""Clinician edits of segmentations (``seg_edits``, medsight.service.whatif.segedit).

Revision ID: 0003_seg_edits
Revises: 0002_workers
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_seg_edits"
down_revision = "0002_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the ``seg_edits`` table."""
    op.create_table(
        "seg_edits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("package_id", sa.String(160), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("parent_version", sa.Integer, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("operations", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("changed_voxels", sa.Integer, nullable=False),
        sa.Column("measurements", sa.Text, nullable=False),
        sa.Column("mask_file", sa.Text, nullable=False),
        sa.Column("seg_file", sa.Text, nullable=False),
        sa.Column("seg_series_uid", sa.String(64), nullable=False),
        sa.Column("seg_sop_uid", sa.String(64), nullable=False),
        sa.Column("series_number", sa.Integer, nullable=True),
        sa.UniqueConstraint("job_id", "package_id", "version"),
    )
    op.create_index("ix_seg_edits_job_id", "seg_edits", ["job_id"])


def downgrade() -> None:
    """Drop the ``seg_edits`` table."""
    op.drop_index("ix_seg_edits_job_id", table_name="seg_edits")
    op.drop_table("seg_edits")
