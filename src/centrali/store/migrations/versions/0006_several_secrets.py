"""several secrets per service account, their last use, a revocation cut-off in milliseconds

Each account's single ``secret_hash`` moves into ``service_account_secrets`` (its hint is
unknown: only the hash was ever kept), and ``service_accounts.secrets`` gets the token
endpoint's copy of it. ``tokens_valid_after`` (epoch second: iat below it is dead) becomes
``tokens_cutoff_ms`` (epoch millisecond: iat at or below it is dead): the same tokens die.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from centrali.store.tables import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# A hash no secret has (a migration keeps its own copy of oauth.credentials.PADDING_HASH).
_PADDING_HASH = "sha256$" + "0" * 64


def _drop_columns(*names: str) -> None:
    """ALTER TABLE … DROP COLUMN, which SQLite has had since 3.35 (none of these columns
    is indexed or constrained)."""
    for name in names:
        op.execute(f"ALTER TABLE service_accounts DROP COLUMN {name}")


def upgrade() -> None:
    op.create_table(
        "service_account_secrets",
        sa.Column("id", _ID, nullable=False),
        sa.Column("service_account_id", _ID, nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["service_account_id"],
            ["service_accounts.id"],
            name=op.f("fk_service_account_secrets_service_account_id_service_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_account_secrets")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_service_account_secrets_service_account_id"),
        "service_account_secrets",
        ["service_account_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_service_account_secrets_expires_at"),
        "service_account_secrets",
        ["expires_at"],
        unique=False,
    )
    # Plain ALTER TABLE, never batch mode's copy of the table: dropping the old copy would
    # cascade (foreign keys are on) to the account's groups and secrets on SQLite.
    op.add_column("service_accounts", sa.Column("secrets", sa.JSON(), nullable=True))
    op.add_column(
        "service_accounts",
        sa.Column("tokens_cutoff_ms", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("service_accounts", sa.Column("last_used_at", UtcDateTime(), nullable=True))
    # The secret's age is unknown; the account's last change is the latest it can be.
    op.execute(
        "INSERT INTO service_account_secrets (service_account_id, secret_hash, hint,"
        " created_at, created_by) SELECT id, secret_hash, NULL, updated_at, created_by"
        " FROM service_accounts WHERE secret_hash IS NOT NULL AND status <> 'deleted'"
        " ORDER BY id"
    )
    # The copy is padded to 8 entries (oauth.credentials.PADDING): every row costs the same.
    array = "json_build_array" if op.get_bind().dialect.name == "postgresql" else "json_array"
    padding = f"{array}(0, '{_PADDING_HASH}', 0)"
    op.execute(
        f"UPDATE service_accounts SET secrets = (SELECT {array}({array}(s.id, s.secret_hash,"
        f" NULL), {', '.join([padding] * 7)}) FROM service_account_secrets s"
        " WHERE s.service_account_id = service_accounts.id)"
        " WHERE secret_hash IS NOT NULL AND status <> 'deleted'"
    )
    op.execute(
        f"UPDATE service_accounts SET secrets = {array}({', '.join([padding] * 8)})"
        " WHERE secrets IS NULL"
    )
    # iat < s  <=>  iat * 1000 <= s * 1000 - 1 (iat was always a whole second).
    op.execute(
        "UPDATE service_accounts SET tokens_cutoff_ms = tokens_valid_after * 1000 - 1"
        " WHERE tokens_valid_after > 0"
    )
    _drop_columns("secret_hash", "tokens_valid_after")


def downgrade() -> None:
    op.add_column(
        "service_accounts", sa.Column("secret_hash", sa.String(length=128), nullable=True)
    )
    op.add_column(
        "service_accounts",
        sa.Column("tokens_valid_after", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # One secret per account before 0006: the newest one keeps working.
    op.execute(
        "UPDATE service_accounts SET secret_hash = (SELECT s.secret_hash"
        " FROM service_account_secrets s WHERE s.service_account_id = service_accounts.id"
        " ORDER BY s.id DESC LIMIT 1)"
    )
    # A cut-off inside a second kills that whole second (iat < its next second).
    op.execute(
        "UPDATE service_accounts SET tokens_valid_after = tokens_cutoff_ms / 1000 + 1"
        " WHERE tokens_cutoff_ms > 0"
    )
    _drop_columns("last_used_at", "tokens_cutoff_ms", "secrets")
    op.drop_index(
        op.f("ix_service_account_secrets_expires_at"), table_name="service_account_secrets"
    )
    op.drop_index(
        op.f("ix_service_account_secrets_service_account_id"),
        table_name="service_account_secrets",
    )
    op.drop_table("service_account_secrets")
