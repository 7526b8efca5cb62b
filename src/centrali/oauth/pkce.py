"""Proof Key for Code Exchange (RFC 7636), ``S256`` only.

``plain`` is refused: it protects nothing once the authorization request leaks
(RFC 9700 §2.1.1). A missing ``code_challenge_method`` would mean ``plain`` (RFC 7636 §4.3),
so it is refused too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

S256 = "S256"
METHODS = (S256,)
# §4.1: 43-128 unreserved characters.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# §4.2: BASE64URL(SHA256(verifier)) without padding is exactly 43 characters.
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


def s256_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier`` (§4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_valid_challenge(challenge: str) -> bool:
    return _CHALLENGE.fullmatch(challenge) is not None


def is_valid_verifier(verifier: str) -> bool:
    return _VERIFIER.fullmatch(verifier) is not None


def verify_code_verifier(verifier: str | None, challenge: str) -> bool:
    """Whether ``verifier`` is well formed and hashes to ``challenge`` (§4.6)."""
    if verifier is None or not is_valid_verifier(verifier):
        return False
    return hmac.compare_digest(s256_challenge(verifier), challenge)
