"""Persistence: SQLAlchemy 2 tables, engine and repositories, Alembic migrations."""
