"""Several key types side by side: each key verifies only its own algorithm."""

from __future__ import annotations

import time

import jwt
import pytest

from centrali.oauth.keys import KeySet, generate_private_key_pem, load_signing_key, thumbprint
from centrali.oauth.reuse import TokenReuseCache
from centrali.oauth.tokens import (
    InvalidTokenError,
    IssuedToken,
    TokenSubject,
    issue_access_token,
    verify_access_token,
)

WHO = TokenSubject("ci_x", "ci_x", "acme-corp", True, ("api-users",), "openid")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_round_trip_per_algorithm(alg: str) -> None:
    key = load_signing_key(generate_private_key_pem(alg), alg)
    assert key.kid == thumbprint(key.public_jwk)
    keys = KeySet.of(key)
    now = time.time()
    issued = issue_access_token(WHO, keys=keys, issuer="i", audience="a", ttl=60, now=now)
    assert jwt.get_unverified_header(issued.token)["alg"] == alg
    verified = verify_access_token(issued.token, keys=keys, issuer="i", audience="a", now=now)
    assert verified.subject == "ci_x"


def test_header_alg_must_match_the_key_it_names() -> None:
    ec_key = load_signing_key(generate_private_key_pem("ES256"), "ES256")
    ed_key = load_signing_key(generate_private_key_pem("EdDSA"), "EdDSA")
    keys = KeySet.of(ec_key, [ed_key])
    # signed by the Ed25519 key, but naming the EC key's kid
    forged = jwt.encode(
        {
            "sub": "x",
            "iss": "i",
            "aud": "a",
            "iat": 1,
            "exp": 2**31,
            "workspace": "w",
            "isServiceAccount": "true",
        },
        ed_key.private_key,
        algorithm="EdDSA",
        headers={"kid": ec_key.kid, "typ": "at+jwt"},
    )
    with pytest.raises(InvalidTokenError):
        verify_access_token(forged, keys=keys, issuer="i", audience="a", now=time.time())


def test_load_refuses_a_key_of_another_algorithm() -> None:
    with pytest.raises(ValueError, match="does not match"):
        load_signing_key(generate_private_key_pem("ES256"), "RS256")


def test_reuse_cache_window_and_bound() -> None:
    cache = TokenReuseCache(window=10, max_entries=2)
    held = IssuedToken(token="t", expires_in=100, jti="j", issued_at=1000)
    key = ("ci", "openid", "h", 0, "w", ())
    cache.put(key, held)
    assert cache.get(key, 1009.5) is held
    assert cache.get(key, 1010) is None  # window over
    long_window = TokenReuseCache(window=1000)
    long_window.put(key, held)
    assert long_window.get(key, 1098) is held
    assert long_window.get(key, 1099.5) is None  # less than a second left
    for i in range(3):
        cache.put(("ci", str(i), "h", 0, "w", ()), held)
    assert cache.get(("ci", "0", "h", 0, "w", ()), 1001) is None  # evicted, bound is 2
    assert cache.get(("ci", "2", "h", 0, "w", ()), 1001) is held
