"""The signing keys in the store: made on first start, shared by every process."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from centrali.oauth.keys import KeySet, generate_private_key_pem, load_signing_key
from centrali.services.context import utcnow
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import SigningKeyRow


def ensure_signing_key(db: Database) -> None:
    """Create the first key unless one exists; safe when several servers start at once."""
    with db.read() as session:
        if repo.live_signing_keys(session):
            return
    add_signing_key(db, only_if_none=True)


def add_signing_key(db: Database, *, only_if_none: bool = False) -> str | None:
    """Store a new RSA key one generation above the newest; returns its kid (None when
    ``only_if_none`` and another process stored a key first)."""
    pem = generate_private_key_pem()  # slow: outside the transaction
    key = load_signing_key(pem)
    try:
        with db.write() as session:
            # Racing writers: SQLite serializes them (BEGIN IMMEDIATE), so the second sees
            # the first's key here; on PostgreSQL both may pass this check, and the unique
            # generation makes the second insert fail.
            if only_if_none and repo.live_signing_keys(session):
                return None
            session.add(
                SigningKeyRow(
                    generation=repo.max_key_generation(session) + 1,
                    kid=key.kid,
                    alg=key.alg,
                    private_pem=pem,
                    public_jwk=dict(key.public_jwk),
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        # Another process stored the same generation first: its key wins, ours is dropped.
        return None
    return key.kid


def load_key_set(db: Database) -> KeySet:
    """The newest live key signs; every live key verifies."""
    with db.read() as session:
        rows = repo.live_signing_keys(session)
        if not rows:
            raise RuntimeError("no signing key in the store")
        keys = [load_signing_key(r.private_pem, r.alg) for r in rows]
    return KeySet.of(keys[0], keys[1:])
