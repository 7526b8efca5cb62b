"""``centrali serve``: the whole system on one port."""

from __future__ import annotations

import os

import click
import uvicorn

from centrali.cli.base import cli, open_store, with_settings
from centrali.config import Settings
from centrali.services.issuer import publish_issuer
from centrali.web.supervisor import APP, serve_workers, uvicorn_options


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
    if settings.workers > 1:
        serve_workers(settings.host, settings.port, settings.workers, settings.log_level)
    else:
        uvicorn.run(
            APP, host=settings.host, port=settings.port, **uvicorn_options(settings.log_level)
        )
