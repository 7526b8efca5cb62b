"""``centrali doctor``: check a configuration without serving.

One line per check (``ok``, ``warn`` or ``FAIL``, the check's name, what was found); exit 1
when any check fails. Nothing is created or changed: no store, no schema, no key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from centrali.cli.base import with_settings

if TYPE_CHECKING:
    from centrali.config import Settings
    from centrali.store.db import Database


class _Failed(Exception):
    """A check failed: its message is the line's text."""


class _Warned(Exception):
    """A check passed with a warning."""


class _Report:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, name: str, run: Callable[[], str]) -> bool:
        try:
            text, status = run(), "ok"
        except _Warned as warned:
            text, status = str(warned), "warn"
        except _Failed as failed:
            text, status = str(failed), "FAIL"
        except Exception as exc:  # an unexpected failure is still one line
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            text, status = f"{type(exc).__name__}: {reason}", "FAIL"
        if status == "FAIL":
            self.failed += 1
        click.echo(f"{status:<4}  {name}: {text}")
        return status != "FAIL"


@click.command()
@with_settings
def doctor(settings: Settings) -> None:
    """Check a configuration without serving: the database URL, the store (reachable,
    migrated), the signing keys (present, decryptable with CENTRALI_MASTER_KEY), the issuer
    and proxy settings, Redis when set. One line per check; exit 1 if any fails."""
    report = _Report()
    state: dict[str, Database] = {}
    try:
        _run(settings, report, state)
    finally:
        if "db" in state:
            state["db"].dispose()
    if report.failed:
        raise SystemExit(1)


def _run(settings: Settings, report: _Report, state: dict[str, Database]) -> None:
    from centrali.cli.base import store_name

    def database_url() -> str:
        from centrali.cli.base import checked_database_url

        try:
            checked_database_url(settings)
        except click.ClickException as exc:
            raise _Failed(exc.message.removeprefix("invalid setting database_url: ")) from None
        return store_name(settings.database_url)

    if not report.check("database url", database_url):
        return

    def store() -> str:
        from sqlalchemy import text

        from centrali.store.db import Database, StoreMissingError, require_existing_store

        try:
            require_existing_store(settings.database_url)
        except StoreMissingError as exc:
            raise _Failed(str(exc)) from None
        db = Database(settings.database_url, create=False)
        state["db"] = db
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            reason = str(exc.__cause__ or exc).strip().splitlines()[0][:200]
            raise _Failed(f"cannot reach {store_name(settings.database_url)}: {reason}") from None
        return f"reachable ({db.engine.dialect.name})"

    if not report.check("store", store):
        return
    db = state["db"]

    def schema() -> str:
        from centrali.store.migrate import schema_problem, stored_revision

        problem = schema_problem(db.engine)
        if problem is not None:
            raise _Failed(problem)
        return f"migrated (revision {stored_revision(db.engine)})"

    migrated = report.check("schema", schema)

    def keys() -> str:
        from centrali.oauth.keywrap import MasterKeyError
        from centrali.services.keys import KeyPolicy, list_signing_keys, load_key_set

        try:
            policy = KeyPolicy.from_settings(settings)
        except MasterKeyError as exc:
            raise _Failed(f"CENTRALI_MASTER_KEY: {exc}") from None
        views = [v for v in list_signing_keys(db, policy) if v.state != "retired"]
        if not views:
            raise _Failed("no signing key in the store (`centrali serve` makes one)")
        try:
            key_set = load_key_set(db, settings.signing_alg, policy)
            _open_ticket_key(db, policy.master_key)
        except MasterKeyError as exc:
            raise _Failed(str(exc)) from None
        except RuntimeError as exc:  # no active key of the configured algorithm
            raise _Failed(f"{exc} (CENTRALI_SIGNING_ALG={settings.signing_alg})") from None
        plain = sum(1 for v in views if not v.encrypted)
        found = (
            f"{len(views)} key(s), {settings.signing_alg} key {key_set.signing.kid} signs, "
            "all decryptable"
        )
        if plain and policy.master_key is not None:
            raise _Warned(f"{found}; {plain} stored unencrypted: run `centrali keys encrypt`")
        if plain:
            raise _Warned(f"{found}; stored unencrypted (no CENTRALI_MASTER_KEY)")
        return found

    if migrated:
        report.check("keys", keys)

    def issuer() -> str:
        from centrali.cli.serve import (
            plain_http_warning,
            proxy_address_refusal,
            proxy_check_off_warning,
        )
        from centrali.services.issuer import served_issuer

        problem = _issuer_problem(settings.issuer)
        if problem:
            raise _Failed(problem)
        refusal = proxy_address_refusal(settings)
        if refusal:
            raise _Failed(refusal)
        warnings = [
            w for w in (plain_http_warning(settings), proxy_check_off_warning(settings)) if w
        ]
        recorded = served_issuer(db, settings)[0] if migrated else settings.issuer
        found = f"{settings.issuer} (audience {settings.audience})"
        if not settings.issuer_configured and recorded != settings.issuer:
            found = f"{recorded} (recorded in the store; this port's default is {settings.issuer})"
        elif settings.issuer_configured and migrated and recorded != settings.issuer:
            warnings.append(f"the store records {recorded}; `centrali serve` will record this one")
        if warnings:
            raise _Warned(f"{found}; {' '.join(warnings)}")
        return found

    report.check("issuer", issuer)

    def redis() -> str:
        if not settings.redis_url:
            return "not set (abuse limits and assertion ids per process)"
        import redis as redis_lib

        client = redis_lib.Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=2
        )
        try:
            client.ping()
        except redis_lib.RedisError as exc:
            raise _Failed(f"cannot reach {_hide_password(settings.redis_url)}: {exc}") from None
        finally:
            client.close()
        return f"reachable ({_hide_password(settings.redis_url)})"

    report.check("redis", redis)


def _open_ticket_key(db: Database, master_key: bytes | None) -> None:
    """Decrypt the login-ticket key if the store has one (never make one here)."""
    from centrali.services.ticket_key import SETTING, load_ticket_key
    from centrali.store.tables import ServerSetting

    with db.read() as session:
        present = session.get(ServerSetting, SETTING) is not None
    if present:
        load_ticket_key(db, master_key)


def _issuer_problem(issuer: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"CENTRALI_ISSUER {issuer!r} is not an http(s) URL with a host"
    if parts.query or parts.fragment:
        return f"CENTRALI_ISSUER {issuer!r} has a query or fragment (OpenID Connect forbids it)"
    return None


def _hide_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
