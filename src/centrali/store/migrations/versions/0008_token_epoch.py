"""service accounts' token epoch: tokens carry it (claim accountEpoch) and die when a revoke
moves it on, whatever the clocks of the instances say

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE (no batch mode: its table copy would cascade on SQLite, see 0006).
    op.add_column(
        "service_accounts",
        sa.Column("tokens_epoch", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    # Tokens issued since carry a claim the older code ignores; their time cut-off still holds.
    op.execute("ALTER TABLE service_accounts DROP COLUMN tokens_epoch")
