"""Alembic environment: runs on the connection handed in by centrali.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from centrali.store.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via centrali.store.migrate
    raise RuntimeError("run migrations through `centrali db upgrade`")

if connection.dialect.name == "postgresql":
    # Two servers starting on one fresh database: one migrates, the other waits.
    connection.execute(text("SELECT pg_advisory_xact_lock(7261120455)"))

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
