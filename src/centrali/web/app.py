"""The application factory: one app serving the auth server and the workspace API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from centrali import __version__
from centrali.config import Settings
from centrali.services.keys import ensure_signing_key, load_key_set
from centrali.store.db import Database
from centrali.store.migrate import upgrade
from centrali.web.body_limit import BodyLimitMiddleware
from centrali.web.errors import register_error_handlers
from centrali.web.routes import oidc, records, service_accounts, structures
from centrali.web.runtime import Runtime


def prepare_store(db: Database) -> None:
    """Schema at head and a signing key present; idempotent, safe to race."""
    upgrade(db.engine)
    ensure_signing_key(db)


def create_app(settings: Settings, *, db: Database | None = None) -> FastAPI:
    """Build the app; the store is prepared and the keys loaded when it starts."""
    database = db or Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_store(database)
        app.state.runtime = Runtime(settings=settings, db=database, keys=load_key_set(database))
        try:
            yield
        finally:
            if db is None:
                database.dispose()

    app = FastAPI(
        title="Centrali auth",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    register_error_handlers(app)
    app.include_router(oidc.router)
    app.include_router(service_accounts.router)
    app.include_router(structures.router)
    app.include_router(records.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for uvicorn workers: settings from ``CENTRALI_*``."""
    return create_app(Settings())
