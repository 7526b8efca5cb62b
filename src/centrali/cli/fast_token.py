"""``centrali user token`` on a SQLite store without SQLAlchemy: the quick path.

Scripts call ``user token`` in loops, and importing SQLAlchemy, the tables and the services
costs more than the rest of the command together. On a SQLite store at the schema this
version reads, the few rows it needs are read with the standard library's ``sqlite3``
(opened read-write, never created) and the token is minted by the same protocol code
(``oauth.tokens``) as everywhere else. Anything out of the ordinary (another backend, an
older schema, an unknown user, no key of the algorithm) returns None and the command takes
the full path, which has the full error messages. tests/cli/test_fast_token.py checks that
both paths give the same token.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from centrali.config import Settings
    from centrali.oauth.keys import KeySet

# services.users.CLI_CLIENT_ID and services.keys.CLOCK_SKEW_SECONDS (the parity test compares).
CLI_CLIENT_ID = "centrali-cli"
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class Minted:
    token: str
    issuer: str
    audience: str
    source: str


def sqlite_path(url: str) -> Path | None:
    """The file of a plain SQLite URL (``sqlite:///PATH``, pysqlite), else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("sqlite", "sqlite+pysqlite") or parts.query or parts.netloc:
        return None
    path = unquote(parts.path)
    if not path.startswith("/") or path in ("/", "/:memory:"):
        return None
    # sqlite:///relative/x.db has the path "/relative/x.db"; sqlite:////abs/x.db "//abs/x.db".
    return Path(path[1:]).resolve()


def mint(settings: Settings, email: str, workspace_slug: str, now: float) -> Minted | None:
    """The token, or None when the full path must answer."""
    from centrali.services.validation import normalize_email
    from centrali.store.migrate import known_revisions

    path = sqlite_path(settings.database_url)
    if path is None or not path.is_file():
        return None
    try:
        email = normalize_email(email)
    except Exception:
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        rows = _read(conn, email, workspace_slug, known_revisions()[1])
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if rows is None:
        return None
    subject, groups, recorded, keys = rows
    key_set = _key_set(settings, keys, now)
    if key_set is None:
        return None
    if settings.issuer_configured:
        issuer, audience, source = settings.issuer, settings.audience, "given"
    elif "issuer" in recorded and "audience" in recorded:
        issuer, audience, source = recorded["issuer"], recorded["audience"], "the store's"
    else:
        issuer, audience = settings.issuer, settings.audience
        source = "the default: no server has recorded one"
    from centrali.oauth.tokens import TokenSubject, issue_access_token

    who = TokenSubject(
        subject=subject,
        client_id=CLI_CLIENT_ID,
        workspace=workspace_slug,
        is_service_account=False,
        groups=groups,
        scope="openid",
    )
    issued = issue_access_token(
        who, keys=key_set, issuer=issuer, audience=audience, ttl=settings.token_ttl, now=now
    )
    return Minted(issued.token, issuer, audience, source)


_KeyRow = tuple[str, str, int, str, str, str | None, str | None]


def _read(
    conn: sqlite3.Connection, email: str, slug: str, head: str | None
) -> tuple[str, tuple[str, ...], dict[str, str], list[_KeyRow]] | None:
    conn.execute("BEGIN")  # one snapshot for every read below
    version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    if head is None or version != [(head,)]:
        return None
    workspace = conn.execute("SELECT id FROM workspaces WHERE slug = ?", (slug,)).fetchone()
    user = conn.execute("SELECT id, subject FROM users WHERE email = ?", (email,)).fetchone()
    if workspace is None or user is None:
        return None
    membership = conn.execute(
        "SELECT id FROM memberships WHERE workspace_id = ? AND user_id = ?",
        (workspace[0], user[0]),
    ).fetchone()
    if membership is None:
        return None
    groups = tuple(
        name
        for (name,) in conn.execute(
            "SELECT g.name FROM groups g JOIN membership_groups mg ON mg.group_id = g.id "
            "WHERE mg.membership_id = ? ORDER BY g.name",
            (membership[0],),
        )
    )
    recorded = dict(
        conn.execute(
            "SELECT name, value FROM server_settings WHERE name IN ('issuer', 'audience')"
        ).fetchall()
    )
    keys: list[_KeyRow] = conn.execute(
        "SELECT kid, alg, generation, private_pem, created_at, activates_at, retired_at "
        "FROM signing_keys ORDER BY generation DESC"
    ).fetchall()
    return user[1], groups, recorded, keys


def _epoch(stored: str | None) -> float | None:
    if stored is None:
        return None
    at = datetime.fromisoformat(stored)
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at).timestamp()


def _key_set(settings: Settings, rows: list[_KeyRow], now: float) -> KeySet | None:
    from centrali.oauth.keys import KeyEntry, KeySet, key_states, load_signing_key
    from centrali.oauth.keywrap import parse_master_key, unwrap_private_key

    entries = {
        row[0]: KeyEntry(
            kid=row[0],
            alg=row[1],
            generation=row[2],
            created_at=_epoch(row[4]) or 0.0,
            activates_at=_epoch(row[5]),
            retired_at=_epoch(row[6]),
        )
        for row in rows
    }
    keep = settings.token_ttl + settings.key_refresh_seconds + CLOCK_SKEW_SECONDS
    statuses = key_states(entries.values(), now=now, keep_seconds=keep)
    active = next(
        (s for s in statuses if s.entry.alg == settings.signing_alg and s.state == "active"), None
    )
    if active is None:
        return None
    row = next(r for r in rows if r[0] == active.entry.kid)
    # A master key that does not open the key raises MasterKeyError: a setting error (exit 2).
    master_key = parse_master_key(settings.master_key.get_secret_value())
    pem = unwrap_private_key(row[3], master_key=master_key, kid=row[0])
    key = load_signing_key(pem, row[1])
    if key.kid != row[0]:
        return None
    return KeySet.of(key)
