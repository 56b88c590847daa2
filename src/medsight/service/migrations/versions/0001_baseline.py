"""Baseline: the tables as medsight created them before migrations (users ... feedback).

A database made by an older medsight has these tables but no ``alembic_version``; the store
stamps it at this revision instead of creating them (see ``medsight.service.migrations``).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the five baseline tables."""
    op.create_table(
        "studies",
        sa.Column("uid", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("modalities", sa.String(64), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("n_files", sa.Integer, nullable=False),
        sa.Column("received", sa.DateTime, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("study_uid", sa.String(64), sa.ForeignKey("studies.uid"), nullable=False),
        sa.Column("packages_key", sa.Text, nullable=False),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("started", sa.DateTime, nullable=True),
        sa.Column("finished", sa.DateTime, nullable=True),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("suspicion", sa.Double, nullable=False),
        sa.Column("flag_urgency", sa.String(16), nullable=False),
        sa.Column("flag_reason", sa.Text, nullable=False),
        sa.Column("unknown_significance", sa.Boolean, nullable=False),
        sa.Column("impression", sa.Text, nullable=False),
        sa.Column("delivery", sa.Text, nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("heartbeat", sa.DateTime, nullable=True),
        sa.UniqueConstraint("study_uid", "packages_key", "content_digest"),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=True),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("finding_index", sa.Integer, nullable=False),
        sa.Column("finding_code", sa.String(128), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("ai_positive", sa.Boolean, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.UniqueConstraint("job_id", "finding_index", "username"),
    )


def downgrade() -> None:
    """Drop the baseline tables."""
    for table in ("feedback", "tokens", "jobs", "users", "studies"):
        op.drop_table(table)
