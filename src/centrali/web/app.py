"""The application factory: one app serving the auth server and the workspace API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from centrali import __version__
from centrali.config import Settings
from centrali.oauth.keys import SIGNING_ALG
from centrali.services.keys import ensure_signing_key, load_key_set
from centrali.store.db import Database
from centrali.store.migrate import upgrade
from centrali.web.body_limit import BodyLimitMiddleware
from centrali.web.errors import register_error_handlers
from centrali.web.routes import oidc, records, service_accounts, structures
from centrali.web.runtime import Runtime
from centrali.web.token_asgi import (
    OAUTH_ERROR_SCHEMA,
    TOKEN_PATH,
    TokenDispatcher,
    token_openapi,
)


def prepare_store(db: Database, alg: str = SIGNING_ALG) -> None:
    """Schema at head and a signing key for ``alg`` present; idempotent, safe to race."""
    upgrade(db.engine)
    ensure_signing_key(db, alg)


def create_app(settings: Settings, *, db: Database | None = None) -> TokenDispatcher:
    """Build the ASGI app: the token endpoint in front, the FastAPI app (``.app``) behind.
    The store is prepared and the keys loaded when it starts (ASGI lifespan)."""
    database = db or Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_store(database, settings.signing_alg)
        keys = load_key_set(database, settings.signing_alg)
        app.state.runtime = Runtime(settings=settings, db=database, keys=keys)
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
    _document_token_endpoint(app)
    # Outermost: the token endpoint skips the framework's whole stack.
    return TokenDispatcher(
        app, runtime=lambda: app.state.runtime, max_body_bytes=settings.max_body_bytes
    )


def _document_token_endpoint(app: FastAPI) -> None:
    """Put the dispatcher's token endpoint into the generated OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"][TOKEN_PATH] = token_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {})["OAuthError"] = (
                OAUTH_ERROR_SCHEMA
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> TokenDispatcher:
    """Entry point for uvicorn workers: settings from ``CENTRALI_*``."""
    return create_app(Settings())
