"""Client identifiers and secrets: generation, one-way hashing, constant-time checks.

A client secret is 256 random bits, so a single SHA-256 is already preimage-resistant;
a slow password hash (bcrypt, PBKDF2) would add nothing but latency on every token request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

CLIENT_ID_PREFIX = "ci_"
CLIENT_SECRET_PREFIX = "sk_"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_HASH_SCHEME = "sha256$"


def generate_client_id() -> str:
    """``ci_`` + 20 lowercase alphanumerics (~103 bits)."""
    return CLIENT_ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


def generate_client_secret() -> str:
    """``sk_`` + 64 hex digits (256 bits)."""
    return CLIENT_SECRET_PREFIX + secrets.token_hex(32)


def hash_secret(secret: str) -> str:
    """The stored form of a secret; the secret itself is never stored."""
    return _HASH_SCHEME + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


# Compared against when the client is unknown, so that case costs the same work.
_DUMMY_HASH = hash_secret(generate_client_secret())


def verify_secret(secret: str, stored_hash: str | None) -> bool:
    """Constant-time comparison; a missing hash does the same work and fails."""
    candidate = hash_secret(secret)
    target = stored_hash if stored_hash is not None else _DUMMY_HASH
    matched = hmac.compare_digest(candidate.encode(), target.encode())
    return matched and stored_hash is not None
