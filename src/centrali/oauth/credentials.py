"""Client identifiers and secrets: generation, one-way hashing, constant-time checks.

A client secret is 256 random bits, so a single SHA-256 is already preimage-resistant;
a slow password hash (bcrypt, PBKDF2) would add nothing but latency on every token request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Sequence

from centrali.oauth.ports import StoredSecret

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


def secret_hint(secret: str) -> str:
    """What may be shown of a secret after its creation: "…" + its last 4 characters."""
    return "\u2026" + secret[-4:]


# Compared against when the client is unknown, so that case costs the same work.
_DUMMY_HASH = hash_secret(generate_client_secret())
# Hashes compared per check whatever the client holds (5 live secrets, plus the ones a
# rotation with a grace period keeps alive a while): an account with one secret, one with
# five and an unknown id cost the same.
SECRET_SLOTS = 8
# What fills a client's stored list up to SECRET_SLOTS (the store keeps it padded, so a
# record costs the same to read however many secrets it holds): id 0, long expired, and a
# hash no secret has.
PADDING_HASH = _HASH_SCHEME + "0" * 64
PADDING = StoredSecret(0, PADDING_HASH, 0)


def match_secret(secret: str, stored: Sequence[StoredSecret], now: float) -> StoredSecret | None:
    """The live stored secret that ``secret`` is, or None; one hash, then a constant-time
    comparison with every stored hash (at least SECRET_SLOTS of them, dummies filling in), and
    no early exit: the work does not depend on which secret matched, how many the client
    holds (up to SECRET_SLOTS) or whether any is live."""
    candidate = hash_secret(secret).encode()
    found: StoredSecret | None = None
    for i in range(max(SECRET_SLOTS, len(stored))):
        entry = stored[i] if i < len(stored) else None
        target = entry.hash if entry is not None else _DUMMY_HASH
        if hmac.compare_digest(candidate, target.encode()) and entry is not None:
            found = entry
    if found is None or not found.live(now):
        return None
    return found
