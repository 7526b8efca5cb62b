"""key activation time, revoked token ids, failed-token counters, audit filter indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from centrali.store.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_AUDIT_INDEXES = {
    "ix_audit_events_workspace_id_action_id": ["workspace_id", "action", "id"],
    "ix_audit_events_workspace_id_actor_id": ["workspace_id", "actor", "id"],
    "ix_audit_events_workspace_id_target_id": ["workspace_id", "target", "id"],
    "ix_audit_events_workspace_id_created_at": ["workspace_id", "created_at"],
}


def upgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activates_at", UtcDateTime(), nullable=True))
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_revoked_tokens_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_tokens")),
    )
    op.create_index(
        op.f("ix_revoked_tokens_expires_at"), "revoked_tokens", ["expires_at"], unique=False
    )
    op.create_table(
        "token_failure_counts",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("window_start", UtcDateTime(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_token_failure_counts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "client_id", "reason", "window_start", name=op.f("pk_token_failure_counts")
        ),
    )
    op.create_index(
        op.f("ix_token_failure_counts_workspace_id"),
        "token_failure_counts",
        ["workspace_id"],
        unique=False,
    )
    for name, columns in _AUDIT_INDEXES.items():
        op.create_index(name, "audit_events", columns, unique=False)


def downgrade() -> None:
    for name in _AUDIT_INDEXES:
        op.drop_index(name, table_name="audit_events")
    op.drop_index(op.f("ix_token_failure_counts_workspace_id"), table_name="token_failure_counts")
    op.drop_table("token_failure_counts")
    op.drop_index(op.f("ix_revoked_tokens_expires_at"), table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("activates_at")
