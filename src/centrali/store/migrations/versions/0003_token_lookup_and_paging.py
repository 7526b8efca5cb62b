"""token lookup without joins on groups; paging that does not grow with the account count

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 06:20:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_names", sa.JSON(), nullable=True))
        batch_op.create_index(
            "ix_service_accounts_live",
            ["workspace_id", "id"],
            unique=False,
            sqlite_where=sa.text("status <> 'deleted'"),
            postgresql_where=sa.text("status <> 'deleted'"),
        )
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("service_account_count", sa.Integer(), nullable=False, server_default="0")
        )
    conn = op.get_bind()
    names: dict[int, list[str]] = {}
    rows = conn.execute(
        sa.text(
            "SELECT sag.service_account_id, g.name FROM service_account_groups sag "
            "JOIN groups g ON g.id = sag.group_id ORDER BY g.name"
        )
    )
    for account_id, name in rows:
        names.setdefault(account_id, []).append(name)
    for (account_id,) in conn.execute(sa.text("SELECT id FROM service_accounts")).all():
        conn.execute(
            sa.text("UPDATE service_accounts SET group_names = :names WHERE id = :id"),
            {"names": json.dumps(names.get(account_id, [])), "id": account_id},
        )
    conn.execute(
        sa.text(
            "UPDATE workspaces SET service_account_count = (SELECT count(*) FROM "
            "service_accounts sa WHERE sa.workspace_id = workspaces.id AND sa.status <> 'deleted')"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("service_account_count")
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_service_accounts_live")
        batch_op.drop_column("group_names")
