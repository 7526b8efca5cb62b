"""keys (private_key_jwt) and federated credentials per service account; used assertion ids

Two credential tables beside ``service_account_secrets``, and their token-endpoint copies
on ``service_accounts`` (``public_keys``, ``federated``: empty for every existing account);
``client_assertion_jtis`` keeps the ``jti`` of each ``private_key_jwt`` assertion until it
expires (store.replay).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from centrali.store.tables import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _credential_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
    ]


def _indexes(table: str) -> None:
    for column in ("service_account_id", "expires_at"):
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def _owner(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["service_account_id"],
        ["service_accounts.id"],
        name=op.f(f"fk_{table}_service_account_id_service_accounts"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "service_account_keys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("service_account_id", _ID, nullable=False),
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("kty", sa.String(length=8), nullable=False),
        sa.Column("alg", sa.String(length=8), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        *_credential_columns(),
        _owner("service_account_keys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_account_keys")),
        sa.UniqueConstraint(
            "service_account_id",
            "kid",
            name=op.f("uq_service_account_keys_service_account_id"),
        ),
        sqlite_autoincrement=True,
    )
    _indexes("service_account_keys")
    op.create_table(
        "service_account_federated_credentials",
        sa.Column("id", _ID, nullable=False),
        sa.Column("service_account_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("audience", sa.String(length=512), nullable=False),
        *_credential_columns(),
        _owner("service_account_federated_credentials"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_account_federated_credentials")),
        sqlite_autoincrement=True,
    )
    _indexes("service_account_federated_credentials")
    op.create_table(
        "client_assertion_jtis",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_client_assertion_jtis")),
    )
    op.create_index(
        op.f("ix_client_assertion_jtis_expires_at"),
        "client_assertion_jtis",
        ["expires_at"],
        unique=False,
    )
    # Plain ALTER TABLE, never batch mode's copy of the table: dropping the old copy would
    # cascade (foreign keys are on) to the account's groups and credentials on SQLite.
    op.add_column("service_accounts", sa.Column("public_keys", sa.JSON(), nullable=True))
    op.add_column("service_accounts", sa.Column("federated", sa.JSON(), nullable=True))
    op.execute("UPDATE service_accounts SET public_keys = '[]', federated = '[]'")


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite since 3.35; neither column is indexed or constrained).
    for name in ("federated", "public_keys"):
        op.execute(f"ALTER TABLE service_accounts DROP COLUMN {name}")
    op.drop_index(op.f("ix_client_assertion_jtis_expires_at"), table_name="client_assertion_jtis")
    op.drop_table("client_assertion_jtis")
    for table in ("service_account_federated_credentials", "service_account_keys"):
        for column in ("expires_at", "service_account_id"):
            op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
        op.drop_table(table)
