"""The issuer and audience a server publishes, so that admin-CLI tokens match them.

``serve`` records what it signs with; ``centrali user token`` uses that unless an issuer
is configured for the CLI itself (a server on another port would refuse its tokens).
"""

from __future__ import annotations

from centrali.config import Settings
from centrali.store import repositories as repo
from centrali.store.db import Database


def publish_issuer(db: Database, settings: Settings) -> None:
    with db.write() as session:
        repo.put_server_setting(session, name="issuer", value=settings.issuer)
        repo.put_server_setting(session, name="audience", value=settings.audience)


def served_issuer(db: Database, settings: Settings) -> tuple[str, str]:
    """(issuer, audience) for tokens minted outside the server."""
    if settings.issuer_configured:
        return settings.issuer, settings.audience
    with db.read() as session:
        issuer = repo.get_server_setting(session, name="issuer")
        audience = repo.get_server_setting(session, name="audience")
    if issuer is None or audience is None:
        return settings.issuer, settings.audience
    return issuer, audience
