"""The store's issuer: one stable property of a store, so that admin-CLI tokens match it.

The first ``serve`` of a store records its issuer and audience; a server with a derived
issuer (``http://127.0.0.1:<port>``) at another address later never replaces them: it serves
under its own address for that run and says so (``serve``). A configured ``CENTRALI_ISSUER``
is recorded: it is the deliberate, stable name. ``centrali user token`` signs for the
recorded issuer unless it is given one (``--issuer`` / ``CENTRALI_ISSUER``).
"""

from __future__ import annotations

from dataclasses import dataclass

from centrali.config import Settings
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import ServerSetting


@dataclass(frozen=True, slots=True)
class Published:
    """What ``serve`` did with the store's issuer."""

    issuer: str  # the store's issuer after this start
    audience: str
    recorded: bool  # this server's issuer is the store's


def publish_issuer(db: Database, settings: Settings) -> Published:
    """Record a configured issuer; record a derived one only when the store has none."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    with db.write() as session:
        if settings.issuer_configured:
            repo.put_server_setting(session, name="issuer", value=settings.issuer)
            repo.put_server_setting(session, name="audience", value=settings.audience)
        else:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            for name, value in (("issuer", settings.issuer), ("audience", settings.audience)):
                stmt = insert(ServerSetting).values(name=name, value=value)
                session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        issuer = repo.get_server_setting(session, name="issuer") or settings.issuer
        audience = repo.get_server_setting(session, name="audience") or settings.audience
    return Published(issuer, audience, issuer == settings.issuer)


def other_address_notice(settings: Settings, published: Published) -> str | None:
    """The one line a server with a derived issuer says when the store's is another."""
    if published.recorded:
        return None
    return (
        f"this server's issuer is {settings.issuer} (its own address, this run only); the "
        f"store's issuer stays {published.issuer}, which `centrali user token` signs for "
        f"(--issuer {settings.issuer} for this server; CENTRALI_ISSUER sets one for good)"
    )


def served_issuer(db: Database, settings: Settings) -> tuple[str, str]:
    """(issuer, audience) for tokens minted outside the server: the configured one, else the
    store's, else the default address."""
    issuer, audience, _source = token_issuer(db, settings)
    return issuer, audience


def token_issuer(db: Database, settings: Settings) -> tuple[str, str, str]:
    """``served_issuer`` and where it comes from, in words."""
    if settings.issuer_configured:
        return settings.issuer, settings.audience, "given"
    with db.read() as session:
        issuer = repo.get_server_setting(session, name="issuer")
        audience = repo.get_server_setting(session, name="audience")
    if issuer is None or audience is None:
        return settings.issuer, settings.audience, "the default: no server has recorded one"
    return issuer, audience, "the store's"
