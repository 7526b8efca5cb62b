"""``centrali serve``: the whole system on one port."""

from __future__ import annotations

import os

import click
import uvicorn

from centrali.cli.base import cli, open_store, with_settings
from centrali.config import Settings
from centrali.services.issuer import publish_issuer


@cli.command()
@click.option("--host", help="CENTRALI_HOST (default 127.0.0.1)")
@click.option("--port", type=int, help="CENTRALI_PORT (default 8000)")
@click.option("--workers", type=int, help="CENTRALI_WORKERS (default 1)")
@click.option("--log-level", help="CENTRALI_LOG_LEVEL (default info)")
@with_settings
def serve(settings: Settings) -> None:
    """Serve the auth server and the workspace API (migrates the store first)."""
    db = open_store(settings)
    publish_issuer(db, settings)
    db.dispose()
    # Workers build their own Settings from the environment: hand them the resolved values.
    for name, value in settings.model_dump().items():
        os.environ[f"CENTRALI_{name.upper()}"] = str(value)
    click.echo(
        f"centrali: serving on http://{settings.host}:{settings.port} "
        f"(issuer {settings.issuer}, {settings.workers} worker(s))",
        err=True,
    )
    uvicorn.run(
        "centrali.web.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        # A worker imports the whole app before it answers; on a busy 2-core machine that
        # can take longer than uvicorn's 5 s default, which would kill and respawn it.
        timeout_worker_healthcheck=60,
        timeout_graceful_shutdown=10,
    )
