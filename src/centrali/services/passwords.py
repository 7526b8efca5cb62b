"""User passwords: argon2id (RFC 9106) through argon2-cffi.

Passwords are low-entropy, unlike client secrets (256 random bits, stored as SHA-256): a
slow, memory-hard hash is what makes a stolen hash expensive to guess. The parameters are
OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): ~50 ms per check on a small server,
so callers run checks in a worker thread, never on the event loop. The parameters live in
each hash, so raising them later rehashes a password at its next sign-in.

An unknown email, or a user without a password, is checked against a fixed dummy hash of the
same parameters: the same work, the same answer and about the same time as a wrong password.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from centrali.services.errors import InvalidBodyError

MIN_LENGTH = 8
MAX_LENGTH = 1024  # characters; a longer "password" is refused before any hashing

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def check_new_password(password: str) -> str:
    """A password fit to set: 8 to 1024 characters, not only whitespace."""
    if len(password) < MIN_LENGTH or not password.strip():
        raise InvalidBodyError(
            f"password must be at least {MIN_LENGTH} characters", field="password"
        )
    if len(password) > MAX_LENGTH:
        raise InvalidBodyError(
            f"password must be at most {MAX_LENGTH} characters", field="password"
        )
    return password


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of a new password."""
    return _HASHER.hash(check_new_password(password))


def rehash_password(password: str) -> str:
    """A fresh hash of a password already accepted (no policy check: it is the user's)."""
    return _HASHER.hash(password)


@functools.cache
def dummy_hash() -> str:
    """A hash nobody knows the password of, made once per process with our parameters."""
    return _HASHER.hash(secrets.token_urlsafe(24))


def verify_password(password: str, stored_hash: str | None) -> bool:
    """Whether ``password`` matches ``stored_hash``; with no hash, the same work, then False."""
    target = stored_hash if stored_hash else dummy_hash()
    try:
        matched = _HASHER.verify(target, password[:MAX_LENGTH])
    except (VerificationError, InvalidHashError):
        return False
    return matched and stored_hash is not None and len(password) <= MAX_LENGTH


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
