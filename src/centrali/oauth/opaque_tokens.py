"""Opaque one-time values: authorization codes, refresh tokens, sign-in cookies.

Each is 256 random bits (RFC 6749 §10.10, RFC 9700 §4.14) and is stored only as its SHA-256:
a copy of the store does not hold a usable code, refresh token or session. Unlike passwords,
these need no slow hash; a lookup by digest is one indexed probe.
"""

from __future__ import annotations

import hashlib
import secrets

_MAX_LEN = 256  # ours are ~46 characters; a longer value is not ours


def new_opaque_token(prefix: str = "") -> str:
    """A fresh value: ``prefix`` + 43 base64url characters."""
    return prefix + secrets.token_urlsafe(32)


def token_digest(value: str) -> str:
    """The SHA-256 (hex) under which a value is stored and looked up."""
    return hashlib.sha256(value[:_MAX_LEN].encode("utf-8", "surrogatepass")).hexdigest()


def plausible_token(value: str | None) -> bool:
    """Worth a lookup at all: printable ASCII of a sane length (no control characters)."""
    return (
        value is not None
        and 0 < len(value) <= _MAX_LEN
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )
