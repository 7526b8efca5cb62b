"""The signing keys in the store: made on first start, shared by every process."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from centrali.oauth.keys import SIGNING_ALG, KeySet, generate_private_key_pem, load_signing_key
from centrali.services.context import utcnow
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import SigningKeyRow


def _has_key(rows: Sequence[SigningKeyRow], alg: str) -> bool:
    return any(r.alg == alg for r in rows)


def ensure_signing_key(db: Database, alg: str = SIGNING_ALG) -> None:
    """Create a key for ``alg`` unless one exists; safe when several servers start at once."""
    with db.read() as session:
        if _has_key(repo.live_signing_keys(session), alg):
            return
    add_signing_key(db, alg, only_if_none=True)


def add_signing_key(
    db: Database, alg: str = SIGNING_ALG, *, only_if_none: bool = False
) -> str | None:
    """Store a new key one generation above the newest; returns its kid (None when
    ``only_if_none`` and another process stored a key for ``alg`` first)."""
    pem = generate_private_key_pem(alg)  # slow for RSA: outside the transaction
    key = load_signing_key(pem, alg)
    try:
        with db.write() as session:
            # Racing writers are serialized (BEGIN IMMEDIATE on SQLite, an advisory lock on
            # PostgreSQL), so the second sees the first's key here; the unique generation
            # is the backstop.
            repo.lock_signing_keys(session)
            if only_if_none and _has_key(repo.live_signing_keys(session), alg):
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


def load_key_set(db: Database, alg: str = SIGNING_ALG) -> KeySet:
    """The newest live key of ``alg`` signs; every live key verifies."""
    with db.read() as session:
        rows = repo.live_signing_keys(session)
        signing = next((r for r in rows if r.alg == alg), None)
        if signing is None:
            raise RuntimeError(f"no {alg} signing key in the store")
        keys = [load_signing_key(r.private_pem, r.alg) for r in rows]
    return KeySet.of(keys[rows.index(signing)], keys)
