"""centrali.oauth.pkce: S256 only (RFC 7636 §4.2, §4.6; RFC 9700 §2.1.1)."""

from __future__ import annotations

import pytest

from centrali.oauth.pkce import (
    METHODS,
    is_valid_challenge,
    is_valid_verifier,
    s256_challenge,
    verify_code_verifier,
)

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_s256_matches_the_rfc_example() -> None:
    assert s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE


def test_only_s256_is_offered() -> None:
    assert METHODS == ("S256",)


def test_the_right_verifier_passes() -> None:
    assert verify_code_verifier(RFC_VERIFIER, RFC_CHALLENGE)


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        RFC_VERIFIER[:-1] + "j",
        RFC_CHALLENGE,  # the challenge itself: what "plain" would accept
        "a" * 42,
        "a" * 129,
        RFC_VERIFIER[:-1] + "+",
        RFC_VERIFIER[:-1] + "é",
    ],
    ids=[
        "missing",
        "empty",
        "other",
        "the-challenge",
        "too-short",
        "too-long",
        "bad-char",
        "non-ascii",
    ],
)
def test_a_wrong_or_malformed_verifier_fails(verifier: str | None) -> None:
    assert not verify_code_verifier(verifier, RFC_CHALLENGE)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a" * 43, True), ("a" * 128, True), ("a" * 42, False), ("a~b.c-d_" * 6, True)],
    ids=["min", "max", "short", "unreserved"],
)
def test_verifier_format(value: str, ok: bool) -> None:
    assert is_valid_verifier(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [(RFC_CHALLENGE, True), (RFC_CHALLENGE + "=", False), ("a" * 42, False), ("a" * 44, False)],
    ids=["rfc", "padded", "short", "long"],
)
def test_challenge_format(value: str, ok: bool) -> None:
    assert is_valid_challenge(value) is ok
